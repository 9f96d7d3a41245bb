"""The one linear predictor ``X beta + o + sum_k Z_k u_k`` (sparse (index, block) form).

It serves the model's density, the Laplace algebra (`lmmhmc.laplace`), the pointwise
log-likelihood, posterior predictive draws and ``predict``; a module of its own so that
`lmmhmc.laplace` and `lmmhmc.numpyro_model` both import it without a cycle.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _x64  # noqa: F401  (float64 before any JAX array)

__all__ = ["linear_predictor"]


def linear_predictor(X: jax.Array, beta: jax.Array, offset: jax.Array, index, block,
                     effects: dict) -> jax.Array:
    """``X beta + o + sum_k Z_k u_k`` for one draw, from the sparse (index, block) form.

    Parameters
    ----------
    X : (rows, p) array
    beta : (p,) array
    offset : (rows,) array
        The known offset ``o`` of every row (zeros without one).
    index, block : sequences
        Per term: each row's level (rows,) and covariate row (rows, d).
    effects : dict
        Term position -> effects (levels, d); only these terms enter.
    """
    mu = X @ beta + offset
    for k, u in effects.items():
        mu = mu + jnp.sum(u[index[k]] * block[k], axis=-1)
    return mu
