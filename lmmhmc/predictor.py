"""The one linear predictor ``X beta + o + sum_k Z_k u_k`` (sparse (index, block) form).

It serves the model's density, the Laplace algebra (`lmmhmc.laplace`), the pointwise
log-likelihood, posterior predictive draws and ``predict``; a module of its own so that
`lmmhmc.laplace` and `lmmhmc.numpyro_model` both import it without a cycle.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .marginal import take_rows

__all__ = ["linear_predictor"]


def linear_predictor(X: jax.Array, beta: jax.Array, offset: jax.Array, index, block,
                     effects: dict) -> jax.Array:
    """``X beta + o + sum_k Z_k u_k`` for one draw, from the sparse (index, block) form.

    Parameters
    ----------
    X : (rows, p) array
    beta : (p,) array
    offset : (rows,) or (1,) array
        The known offset ``o`` of every row (zeros without one), or one value for all rows.
    index, block : sequences
        Per term: each row's level (rows,), valid and non-negative, and its covariate row
        (rows, d), or one covariate row (1, d) for all rows
        (`lmmhmc.assembled.compact_rows`: the ones of an intercept-only term).
    effects : dict
        Term position -> effects (levels, d); only these terms enter.
    """
    mu = X @ beta + offset
    for k, u in effects.items():
        if u.shape[-1] == 1:  # one column: a gather (and, reversed, a scatter) of scalars
            mu = mu + take_rows(u[:, 0], index[k]) * block[k][:, 0]
        else:
            mu = mu + jnp.sum(take_rows(u, index[k]) * block[k], axis=-1)
    return mu
