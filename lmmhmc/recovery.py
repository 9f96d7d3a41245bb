"""Recovery: every random effect of every draw, the pointwise log-likelihood and replicated data.

The marginalized effects are drawn from their exact conditional given each posterior draw
([`lmmhmc.numpyro_model.recover()`][lmmhmc.numpyro_model.recover]), so the output is a draw from the
full posterior, as the non-marginalized model would give.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import jax
import numpy as np
from numpyro.infer.util import constrain_fn

from . import _x64  # noqa: F401  (float64 before any JAX array)
from . import numpyro_model as nm
from .assembled import AssembledModel

__all__ = ["lower_recovery", "posterior_predictive", "recover_all"]

#: Draws per batch of the posterior predictive map.
PREDICTIVE_BATCH = 64


def lower_recovery(assembled: AssembledModel, priors: dict, start: dict, keys: jax.Array,
                   with_loglik: bool) -> jax.stages.Lowered:
    """The recovery of a batch of ``len(keys)`` draws, lowered from the shapes of a start
    (`recover_all()`'s ``lowered``)."""
    model = assembled.numpyro_model()
    data = assembled.data
    draw = jax.eval_shape(lambda z: constrain_fn(model, (data, priors), {}, z), start)
    flat = jax.tree.map(lambda a: jax.ShapeDtypeStruct((keys.shape[0],) + a.shape, a.dtype), draw)
    return _recover_all.lower(assembled.structure, data, flat, keys, with_loglik)


def recover_all(lowered: jax.stages.Lowered, assembled: AssembledModel, flat: dict,
                keys: jax.Array, batch: int, workers: int) -> tuple[list, np.ndarray | None]:
    """Random effects of every draw (a list per term, ``(draws, levels, d)``: the mean's
    terms, then a distributional model's terms of log sigma) and the pointwise
    log-likelihood (``(draws, N)`` or None).

    ``flat`` holds the constrained draws with all chains stacked on the leading axis;
    ``lowered`` (`lower_recovery()`'s) recovers them in batches of ``batch`` draws (a
    chain's), on ``workers`` threads. Each thread calls its own compiled object (from JAX's
    cache once it was compiled ahead): concurrent calls of one object wait for each other.
    Each draw is recovered from its own key, so the result does not depend on the batches.
    """
    starts = list(range(0, keys.shape[0], batch))
    workers = max(1, min(workers, len(starts)))

    def worker(w: int) -> list:
        program = lowered.compile()
        return [jax.block_until_ready(program(
            assembled.data, jax.tree.map(lambda a, i=i: a[i:i + batch], flat),
            keys[i:i + batch])) for i in starts[w::workers]]

    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(worker, range(workers)))
    parts = [done[j % workers][j // workers] for j in range(len(starts))]
    return jax.tree.map(lambda *a: np.concatenate(a), *parts)  # jnp's: 0.6 s more on stroop


@partial(jax.jit, static_argnums=(0, 4))
def _recover_all(structure: nm.Structure, data: dict, flat: dict, keys: jax.Array,
                 with_loglik: bool):
    """One draw at a time (``lax.map``): a vmapped batch of the kernels' small factorizations
    compiles several times slower and runs no faster on CPU."""

    def one(args):
        params, key = args
        effects = nm.recover(structure, data, params, key)
        ll = nm.pointwise_log_likelihood(structure, data, params, effects) if with_loglik else None
        mean_part = [effects[k] for k in range(len(structure.layout.terms))]
        return mean_part + nm.sigma_effects(structure.layout, data, params), ll

    return jax.lax.map(one, (flat, keys))


def posterior_predictive(assembled: AssembledModel, flat: dict, effects: list,
                         key: jax.Array) -> jax.Array:
    """Replicated responses, one vector per draw: ``(draws, N)``."""
    return _posterior_predictive(assembled.structure, assembled.data, flat, effects, key)


@partial(jax.jit, static_argnums=0)
def _posterior_predictive(structure: nm.Structure, data: dict, flat: dict, effects: list,
                          key: jax.Array) -> jax.Array:
    def one(args):
        params, eff, kk = args
        mean_part = dict(enumerate(eff[:len(structure.layout.terms)]))
        return nm.posterior_predictive(structure, data, params, mean_part, kk)

    keys = jax.random.split(key, jax.tree.leaves(flat)[0].shape[0])
    return jax.lax.map(one, (flat, list(effects), keys), batch_size=PREDICTIVE_BATCH)

