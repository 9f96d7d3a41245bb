"""NUTS chains from one compiled program per model structure.

A chain (initialisation, warm-up with step-size and mass-matrix adaptation, sampling) runs as
one jitted JAX program built on NumPyro's functional NUTS (:func:`numpyro.infer.hmc.hmc`). The
data and the priors are arguments of the program, so it is compiled once per model structure and
settings and then reused for every chain (one after another on one device, side by side with
``pmap`` on several) and for every later fit of the same structure on data of the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc import hmc
from numpyro.infer.util import ParamInfo, constrain_fn, potential_energy
from tqdm.auto import tqdm

from . import numpyro_model as nm

#: Per-draw sampler statistics recorded by every chain.
STATS = ("diverging", "num_steps", "accept_prob", "energy", "potential_energy", "step_size")
#: Also returned per chain: the number of gradient evaluations (leapfrog steps) of warm-up.
WARMUP_STEPS = "warmup_steps"
#: Number of progress-bar updates per chain.
PROGRESS_UPDATES = 40
#: Largest sampled dimension for which warm-up starts from a Laplace-approximation mass matrix.
LAPLACE_MAX_DIM = 200


@dataclass(frozen=True)
class Settings:
    """Static NUTS settings of a run (part of the compiled program's cache key)."""

    warmup: int
    draws: int
    target_accept: float
    dense_mass: bool
    max_tree_depth: int
    progress: bool


_PROGRAMS: dict = {}  # (structure, settings, parallel) -> compiled chain program
_BARS: dict[int, tqdm] = {}  # progress bars of the run in progress, by chain
_WARMUP: list[int] = [0]  # warm-up length of the run in progress


def run_chains(
    structure: nm.Structure,
    settings: Settings,
    data: dict,
    priors: dict,
    init: dict,
    key: jax.Array,
    *,
    parallel: bool,
) -> tuple[dict, dict]:
    """Run one NUTS chain per leading entry of ``init`` (unconstrained starting points).

    Returns the constrained posterior draws and the sampler statistics (:data:`STATS`), each as
    NumPy arrays of shape ``(chains, draws, ...)``, and :data:`WARMUP_STEPS` of shape
    ``(chains,)``. With ``parallel`` the chains run side by side on ``chains`` JAX devices,
    otherwise one after another on the default device.
    """
    chains = int(jax.tree.leaves(init)[0].shape[0])
    program = _program(structure, settings, parallel)
    keys = jax.random.split(key, chains)
    ids = jnp.arange(chains)
    _open_bars(settings, chains)
    try:
        if parallel:
            out = program(keys, init, data, priors, ids)
            out = jax.tree.map(np.asarray, out)
        else:
            runs = []
            for c in range(chains):
                z0 = jax.tree.map(lambda a, c=c: a[c], init)
                runs.append(jax.tree.map(np.asarray, program(keys[c], z0, data, priors, ids[c])))
            out = jax.tree.map(lambda *a: np.stack(a), *runs)
    finally:
        _close_bars()
    return out


def lower_program(
    structure: nm.Structure,
    settings: Settings,
    data: dict,
    priors: dict,
    start: dict,
    key: jax.Array,
    *,
    parallel: bool,
):
    """The chain program of :func:`run_chains`, traced and lowered for these shapes.

    ``start`` holds the shapes (or values) of one chain's unconstrained starting point; the
    values in ``data`` and ``priors`` do not matter, only their shapes. Compiling the result
    (``.compile()``, e.g. in a background thread) puts the program in JAX's cache, where
    :func:`run_chains` finds it. Returns None for side-by-side (``parallel``) programs, which
    compile on their first call.
    """
    if parallel:
        return None
    program = _program(structure, settings, parallel)
    return program.lower(jax.random.split(key, 1)[0], start, data, priors, jnp.arange(1)[0])


def _program(structure: nm.Structure, settings: Settings, parallel: bool):
    """The compiled chain program for ``structure`` and ``settings`` (built once, cached)."""
    cache_key = (structure, settings, parallel)
    if cache_key not in _PROGRAMS:
        chain = partial(_chain, nm.make_model(structure), settings)
        _PROGRAMS[cache_key] = (
            jax.pmap(chain, in_axes=(0, 0, None, None, 0)) if parallel else jax.jit(chain)
        )
    return _PROGRAMS[cache_key]


def _chain(model, settings: Settings, key, z0, data, priors, chain_id):
    """Warm-up and sampling of one chain; returns (constrained draws, statistics)."""
    args = (data, priors)

    def potential_of(*model_args):  # the potential energy for the model's arguments
        return partial(potential_energy, model, model_args, {})

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_of, algo="NUTS")
    start, inverse_mass = z0, None
    if ravel_pytree(z0)[0].size <= LAPLACE_MAX_DIM:
        # the Laplace step also evaluates the potential and its gradient at z0, which NUTS
        # then need not compute again (one copy of the gradient less to compile)
        start, inverse_mass = _laplace_start(potential_of(*args), z0, settings.dense_mass)
    state = init_kernel(
        start,
        settings.warmup,
        inverse_mass_matrix=inverse_mass,
        dense_mass=settings.dense_mass,
        target_accept_prob=settings.target_accept,
        max_tree_depth=settings.max_tree_depth,
        model_args=args,
        rng_key=key,
    )
    total = settings.warmup + settings.draws
    first = _record(state)
    trace = jax.tree.map(lambda v: jnp.zeros((settings.draws,) + v.shape, v.dtype), first)
    every = max(total // PROGRESS_UPDATES, 1)

    def step(i, carry):
        state, trace, warm_steps = carry
        state = sample_kernel(state, model_args=args)
        warm_steps = warm_steps + jnp.where(i < settings.warmup, state.num_steps, 0)
        slot = jnp.maximum(i - settings.warmup, 0)  # warm-up draws are overwritten
        trace = jax.tree.map(lambda buf, v: buf.at[slot].set(v), trace, _record(state))
        if settings.progress:
            jax.lax.cond(
                (i + 1) % every == 0,
                lambda: jax.debug.callback(_advance, chain_id, i + 1),
                lambda: None,
            )
        return state, trace, warm_steps

    carry = (state, trace, jnp.zeros((), jnp.int64))
    _, trace, warm_steps = jax.lax.fori_loop(0, total, step, carry)
    z = trace.pop("z")
    trace[WARMUP_STEPS] = warm_steps
    draws = jax.vmap(lambda zz: constrain_fn(model, args, {}, zz))(z)
    return draws, trace


def _laplace_start(potential, z0, dense: bool) -> tuple[ParamInfo, jax.Array]:
    """The starting point with its potential and gradient, and a Laplace inverse mass matrix.

    The inverse mass matrix is the inverse Hessian of the potential at ``z0``, from central
    differences of the gradient (``2 n`` gradients, evaluated in one ``lax.map`` together with
    the gradient at ``z0`` itself); its eigenvalues enter by absolute value with a floor of
    ``1e-6`` times the largest, and a non-finite Hessian falls back to the identity. Warm-up
    then adapts the matrix as usual; starting from the local curvature saves the long
    trajectories of its first iterations. Returns ``(ParamInfo(z0, potential, gradient),
    matrix)``, the matrix dense or its diagonal (``dense=False``).
    """
    flat, unravel = ravel_pytree(z0)
    n = flat.size
    value_and_grad = jax.value_and_grad(lambda x: potential(unravel(x)))
    steps = 1e-5 * (1.0 + jnp.abs(flat))
    shifts = jnp.concatenate([jnp.zeros((1, n)), jnp.diag(steps), -jnp.diag(steps)])
    values, grads = jax.lax.map(lambda shift: value_and_grad(flat + shift), shifts)
    hess = (grads[1 : n + 1] - grads[n + 1 :]) / (2.0 * steps[:, None])
    vals, vecs = jnp.linalg.eigh(0.5 * (hess + hess.T))
    vals = jnp.abs(vals)
    vals = jnp.maximum(vals, 1e-6 * jnp.max(vals))
    cov = (vecs / vals) @ vecs.T
    cov = jnp.where(jnp.all(jnp.isfinite(cov)) & (jnp.max(vals) > 0), cov, jnp.eye(n))
    return ParamInfo(z0, values[0], unravel(grads[0])), cov if dense else jnp.diagonal(cov)


def _record(state) -> dict:
    """The unconstrained draw and the :data:`STATS` of an HMC state."""
    out = {"z": state.z, "step_size": state.adapt_state.step_size}
    out.update({name: getattr(state, name) for name in STATS if name != "step_size"})
    return out


def _open_bars(settings: Settings, chains: int) -> None:
    _WARMUP[0] = settings.warmup
    if settings.progress:
        for c in range(chains):
            _BARS[c] = tqdm(total=settings.warmup + settings.draws, position=c,
                            desc=f"chain {c + 1} warm-up", leave=True)


def _advance(chain_id, done) -> None:
    bar = _BARS.get(int(chain_id))
    if bar is None:
        return
    if int(done) > bar.n:
        bar.update(int(done) - bar.n)
        phase = "warm-up" if bar.n <= _WARMUP[0] else "sampling"
        bar.set_description(f"chain {int(chain_id) + 1} {phase}")


def _close_bars() -> None:
    for bar in _BARS.values():
        bar.update(bar.total - bar.n)
        bar.close()
    _BARS.clear()
