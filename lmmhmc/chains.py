"""NUTS chains from compiled programs shared by every chain and every fit of a structure.

A chain runs its warm-up and sampling iterations in segments of equal length, each one call
of one program; the first call also starts the chain (the Laplace starting metric and
NumPyro's functional NUTS initialisation, `numpyro.infer.hmc.hmc()`, in a `lax.cond`
branch that the later calls skip), so that a chain is one program, traced and compiled once.
The program is jitted with the model's static
[`Structure`][lmmhmc.numpyro_model.Structure] and the `Settings` as static arguments; the
data and the priors are arguments, so JAX compiles it once per structure and settings and
reuses it for every chain and every later fit of the same shapes. The chains run one after
another (``"sequential"``), side by side on CPU
threads calling the same compiled executable (``"parallel"``: with JAX's synchronous CPU
dispatch, which `lmmhmc._x64` selects, each call runs on its calling thread, so the chains
use as many cores; each chain calls it through its own compiled object, since concurrent first
calls of one object wait for each other), or as one batch in a ``vmap``-ed program
(``"vectorized"``, for a GPU).
Between segments, `ChainRunner` reports the chains' progress (bars in a terminal, lines in a
log: `lmmhmc.progress`): the program has no host callbacks.

The priors enter as leaves in a canonical order (`PriorSpec`): NumPyro orders a
distribution's fields by a set, so the plain pytree, and with it the compiled program and its
key in JAX's persistent cache, would differ between processes.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc import hmc
from numpyro.infer.util import ParamInfo, constrain_fn, potential_energy

from . import (
    _x64,  # noqa: F401  (float64 before any JAX array)
    program_store,
)
from .blocked import blocked_matmul
from .numpyro_model import Structure, make_model
from .progress import ChainProgress, Progress

#: Per-draw sampler statistics recorded by every chain.
STATS = ("diverging", "num_steps", "accept_prob", "energy", "potential_energy", "step_size")
#: Also returned per chain: the number of gradient evaluations (leapfrog steps) of warm-up.
WARMUP_STEPS = "warmup_steps"
#: Number of progress updates (segments) per chain when progress is shown.
PROGRESS_UPDATES = 40
#: Largest sampled dimension for which warm-up starts from a Laplace-approximation mass matrix
#: (``2 n`` gradients and an ``n x n`` eigendecomposition per chain: 2.2 s at n = 3000 on
#: the project's 2-core machine). Starting from the identity instead, VerbAgg's first 100
#: warm-up iterations took 150 (auto, 349 dimensions) and 270 (none) leapfrog steps each,
#: against 21 and 100 from the Laplace matrix; InstEval's 500 warm-up iterations took 151k
#: gradients (4 chains, ``auto``, 1134 dimensions) against 49k with the Laplace start's 9k
#: included, and 284k against 54k (24k) with ``(1 | d)`` and ``(1 | dept)`` marginalized
#: (2978 dimensions).
LAPLACE_MAX_DIM = 3000


@dataclass(frozen=True)
class Settings:
    """Static NUTS settings of a run (part of the compiled programs' cache key)."""

    warmup: int
    draws: int
    target_accept: float
    #: True: dense; False: diagonal; site names: a dense block over them, diagonal elsewhere.
    dense_mass: bool | tuple[str, ...]
    max_tree_depth: int
    progress: bool

    @property
    def total(self) -> int:
        """Iterations per chain."""
        return self.warmup + self.draws

    @property
    def segment(self) -> int:
        """Iterations per program call."""
        return -(-self.total // PROGRESS_UPDATES) if self.progress else self.total


@dataclass(frozen=True)
class PriorSpec:
    """How the priors pytree is rebuilt from its leaves in a canonical order (sorted by path).

    Hashable (a static argument of the programs); the leaves' order, and so the programs'
    parameters, does not depend on Python's string-hash order. Neither does ``description``
    (`store_key()`), which the treedef's pickle does.
    """

    treedef: Any
    order: tuple[int, ...]  # position of each treedef leaf among the canonical leaves
    description: tuple = field(compare=False)  # `_describe()` of the priors

    def store_key(self) -> tuple:
        """What `lmmhmc.program_store` keys this spec by: the priors' types, fields and
        shapes, the same in every process."""
        return self.description

    @classmethod
    def of(cls, priors: dict) -> tuple[PriorSpec, list]:
        """The spec of ``priors`` and its leaves in canonical order."""
        leaves, treedef = jax.tree.flatten(priors)
        keys = list(_leaf_keys(priors, ""))
        canonical = sorted(range(len(keys)), key=keys.__getitem__)
        order = [0] * len(keys)
        for position, k in enumerate(canonical):
            order[k] = position
        return cls(treedef, tuple(order), _describe(priors)), [leaves[k] for k in canonical]

    def unflatten(self, leaves) -> dict:
        """The priors from their canonical leaves."""
        return self.treedef.unflatten([leaves[k] for k in self.order])


def _describe(node) -> tuple:
    """``node``'s pytree structure with a distribution's fields sorted by name (its type,
    its static fields' values and its array fields' structures) and a dict's keys sorted."""
    if isinstance(node, dist.Distribution):
        data, aux = node.tree_flatten()
        kind = type(node)
        return (f"{kind.__module__}.{kind.__qualname__}",
                tuple(sorted(zip(kind.gather_pytree_data_fields(), map(_describe, data),
                                 strict=True))),
                tuple(sorted(zip(kind.gather_pytree_aux_fields(), map(repr, aux),
                                 strict=True))))
    if isinstance(node, dict):
        return tuple((key, _describe(node[key])) for key in sorted(node))
    return (str(jax.tree.structure(node)),)


def _leaf_keys(node, path: str):
    """A name for every leaf of ``node``, in JAX's flattening order: a distribution's leaves
    are named by its fields (JAX's own paths number them, in the fields' set order)."""
    if isinstance(node, dist.Distribution):
        names = type(node).gather_pytree_data_fields()
        children = node.tree_flatten()[0]
        for name, child in zip(names, children, strict=True):
            yield from _leaf_keys(child, f"{path}.{name}")
    elif isinstance(node, dict):
        for key in sorted(node):  # JAX's order of a dict
            yield from _leaf_keys(node[key], f"{path}[{key!r}]")
    else:
        for sub, _ in jax.tree_util.tree_flatten_with_path(node)[0]:
            yield path + jax.tree_util.keystr(sub)


class ChainRunner:
    """Runs the NUTS chains of one model structure and shows their progress.

    Parameters
    ----------
    structure : Structure
        The model's static part.
    settings : Settings
    method : {"sequential", "parallel", "vectorized"}
        One chain after another; ``workers`` chains at a time on threads; or all chains in
        one batched (``vmap``) program.
    workers : int
        Chains run at the same time by ``"parallel"`` (at most the number of chains).
    progress : Progress, optional
        Where the chains' progress goes; by default bars or lines on stderr when
        ``settings.progress`` (see `lmmhmc.progress.Progress`).
    """

    def __init__(self, structure: Structure, settings: Settings, method: str = "sequential",
                 workers: int = 1, progress: Progress | None = None) -> None:
        self.structure = structure
        self.settings = settings
        self.method = method
        self.workers = max(1, workers) if method == "parallel" else 1
        self.progress = Progress(settings.progress) if progress is None else progress
        self._shown: ChainProgress | None = None
        self._done: list[int] = []  # iterations run so far, per chain (or per batch)

    def compilers(self, data: dict, priors: dict, start: dict, key: jax.Array) -> list:
        """The chain's program traced and lowered for these shapes, to compile ahead: a
        function of no arguments that compiles it.

        ``start`` holds the shapes (or values) of one chain's unconstrained starting point.
        Calling the result (e.g. in a background thread) fills JAX's cache, where `run()`
        finds it. Returns an empty list for the batched program of ``"vectorized"``, which
        compiles when `run()` needs it.
        """
        if self.method == "vectorized":
            return []
        lowered = self._lowered(_chain_jit, data, priors, start, key)[0]
        return [lowered.compile]

    def _lowered(self, program, data, priors, z0, key) -> tuple:
        """``program`` lowered for these arguments (traced on this thread: NumPyro's effect
        handlers are not thread-safe), and the placeholder state of its first call."""
        spec, leaves = PriorSpec.of(priors)
        static = (self.structure, self.settings, spec)
        state = _no_state(static, key, z0, data, leaves, program is _chain_vmap)
        first = jnp.zeros((), jnp.int64)
        args = (*static, state, key, z0, data, leaves, first)
        return program_store.lower(program, args, static=(0, 1, 2)), state

    def _compiled(self, program, data, priors, z0, key) -> tuple:
        """``program`` compiled (from JAX's cache when `compilers()` compiled it ahead), and
        the placeholder state of its first call."""
        lowered, state = self._lowered(program, data, priors, z0, key)
        return lowered.compile(), state

    def run(self, data: dict, priors: dict, init: dict, key: jax.Array) -> tuple[dict, dict]:
        """One chain per leading entry of ``init`` (unconstrained starting points).

        Returns the constrained posterior draws and the sampler statistics (`STATS`),
        each as NumPy arrays of shape ``(chains, draws, ...)``; the statistics also hold
        `WARMUP_STEPS` of shape ``(chains,)``. Every method runs the same iterations from
        the same keys, so the draws agree (bit for bit between ``"sequential"`` and
        ``"parallel"``, which call the same compiled program). A ``KeyboardInterrupt``
        (Ctrl-C) closes the progress bars and is raised again as a one-line
        ``KeyboardInterrupt`` saying how far the chains got, without the traceback inside JAX.
        """
        chains = int(jax.tree.leaves(init)[0].shape[0])
        keys = jax.random.split(key, chains)
        batched = self.method == "vectorized"
        self._shown = self.progress.chains(chains, self.settings.warmup, self.settings.total,
                                           together=batched)
        self._done = [0] * chains
        try:
            if batched:
                program = self._compiled(_chain_vmap, data, priors, init, keys)
                out = self._run(program, keys, init, data, priors, 0)
            else:
                out = self._chains(data, priors, init, keys)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"sampling interrupted by the user after {sum(self._done)} of "
                f"{chains * self.settings.total} iterations (all chains together)") from None
        finally:
            self._shown.close()
        return out["draw"], out["stats"]

    def _chains(self, data, priors, init, keys) -> dict:
        """Chain after chain, or ``workers`` at a time on threads; the draws stacked."""
        chains = keys.shape[0]
        lowered, state = self._lowered(_chain_jit, data, priors,
                                       jax.tree.map(lambda a: a[0], init), keys[0])
        stop = threading.Event()

        def chain(c: int) -> dict:
            # A compiled object per chain (from JAX's cache: `compilers()`' program was compiled
            # ahead, and compiling again returns the same executable): concurrent first calls
            # of one compiled object wait for each other in JAX's C++ dispatch, and a chain is
            # one call when no progress is shown, so sharing it ran the chains one by one.
            return self._run((lowered.compile(), state), keys[c],
                             jax.tree.map(lambda a, c=c: a[c], init), data, priors, c, stop)

        if self.workers == 1 or chains == 1:
            runs = [chain(c) for c in range(chains)]
        else:
            with ThreadPoolExecutor(min(self.workers, chains)) as pool:
                futures = [pool.submit(chain, c) for c in range(chains)]
                try:
                    done = wait(futures, return_when=FIRST_EXCEPTION).done
                finally:  # a chain failed, or Ctrl-C: the others stop after their segment
                    stop.set()
            failed = [f.exception() for f in futures if f in done and f.exception()]
            if failed:
                raise failed[0]
            runs = [future.result() for future in futures]
        return jax.tree.map(lambda *a: np.stack(a), *runs)

    def _run(self, program, key, z0, data, priors, chain, stop=None) -> dict:
        """Run one chain (or the batch) segment by segment, the first one starting it; stack
        the draws."""
        st = self.settings
        leaves = PriorSpec.of(priors)[1]
        width = key.shape[0] if self.method == "vectorized" else 1
        self._shown.begin(chain)
        program, state = program  # the first call's state: a placeholder
        parts, warm, axis = [], 0, 1 if self.method == "vectorized" else 0
        for first in range(0, st.total, st.segment):
            if stop is not None and stop.is_set():
                raise _Stopped
            state, records, steps = program(state, key, z0, data, leaves,
                                            jnp.asarray(first, jnp.int64))
            warm = warm + np.asarray(steps)
            keep = slice(max(st.warmup - first, 0), min(st.total - first, st.segment))
            parts.append(jax.tree.map(
                lambda a, keep=keep, axis=axis: np.asarray(a).take(
                    np.arange(a.shape[axis])[keep], axis=axis), records))
            self._done[chain] += width * (min(first + st.segment, st.total) - first)
            self._shown.advance(chain, min(first + st.segment, st.total))
        out = jax.tree.map(lambda *a: np.concatenate(a, axis=axis), *parts)
        out["stats"][WARMUP_STEPS] = warm
        return out


class _Stopped(Exception):
    """A chain stopped because another one failed or the user pressed Ctrl-C."""


@partial(jax.jit, static_argnums=(0, 1))
def _potential(structure: Structure, spec: PriorSpec, z: dict, data: dict, leaves) -> jax.Array:
    """The potential energy (negative log density) of the unconstrained point ``z``.

    Jitted, so that the model's Python runs once per structure and shapes: the chain program
    calls the potential in the Laplace start and in NUTS's leapfrog, and each call of a jitted
    function reuses its traced program (and its derivative's) instead of tracing the model
    again (tracing df_dillonE1's chain program: a median of 2.1 s against 2.6 s). XLA inlines
    the call: the draws are the same, bit for bit.
    """
    return potential_energy(make_model(structure), (data, spec.unflatten(leaves)), {}, z)


def _potential_of(structure: Structure, spec: PriorSpec):
    """NumPyro's ``potential_fn_gen``: the model arguments ``(data, leaves)`` to the potential
    of ``z`` (`_potential`)."""
    return lambda data, leaves: partial(_potential, structure, spec, data=data, leaves=leaves)


def _nuts(structure: Structure, settings: Settings, spec: PriorSpec, start, inverse_mass,
          data, leaves, key):
    """NumPyro's functional NUTS for the structure's model, set up at ``start``.

    Returns the initial HMC state and the sample kernel, whose model arguments are
    ``(data, leaves)``. (NumPyro's sample kernel reads the settings its init kernel stored, so
    a program that only samples sets it up too; XLA drops the unused initial state.)
    """
    init_kernel, sample_kernel = hmc(potential_fn_gen=_potential_of(structure, spec),
                                     algo="NUTS")
    state = init_kernel(
        start,
        settings.warmup,
        inverse_mass_matrix=inverse_mass,
        # NumPyro's structured mass matrix: a list of dense blocks, diagonal elsewhere
        dense_mass=([settings.dense_mass] if isinstance(settings.dense_mass, tuple)
                    else settings.dense_mass),
        target_accept_prob=settings.target_accept,
        max_tree_depth=settings.max_tree_depth,
        model_args=(data, leaves),
        rng_key=key,
    )
    return state, sample_kernel


def _start(structure: Structure, settings: Settings, spec: PriorSpec, key, z0, data, leaves):
    """The HMC state of a chain at ``z0``, ready for warm-up."""
    start, inverse_mass = z0, None
    if ravel_pytree(z0)[0].size <= LAPLACE_MAX_DIM:
        # the Laplace step also evaluates the potential and its gradient at z0, which NUTS
        # then need not compute again
        potential = _potential_of(structure, spec)(data, leaves)
        start, inverse_mass = laplace_start(potential, z0, settings.dense_mass)
    return _nuts(structure, settings, spec, start, inverse_mass, data, leaves, key)[0]


def _chain(structure: Structure, settings: Settings, spec: PriorSpec, state, key, z0, data,
           leaves, first):
    """Iterations ``first .. first + settings.segment - 1`` of a chain (those past the end are
    skipped), from ``state``, or from a new start at ``z0`` when ``first`` is 0 (``state`` is
    then a placeholder: `_no_state`): the new state, each iteration's constrained draw and
    statistics, and the warm-up's gradient evaluations."""
    state = jax.lax.cond(first == 0, lambda: _start(structure, settings, spec, key, z0, data,
                                                     leaves), lambda: state)
    here = ParamInfo(state.z, state.potential_energy, state.z_grad)
    sample_kernel = _nuts(structure, settings, spec, here, None, data, leaves,
                          state.rng_key)[1]

    def record(state) -> dict:
        stats = {name: getattr(state, name) for name in STATS if name != "step_size"}
        stats["step_size"] = state.adapt_state.step_size
        return {"draw": state.z, "stats": stats}

    def advance(state):
        return sample_kernel(state, model_args=(data, leaves))

    def step(state, i):
        if settings.total % settings.segment:  # the last segment runs past the end
            new = jax.lax.cond(i < settings.total, advance, lambda s: s, state)
        else:
            new = advance(state)
        warm = jnp.where(i < settings.warmup, new.num_steps, 0)
        return new, (record(new), warm)

    state, (records, warm) = jax.lax.scan(step, state, first + jnp.arange(settings.segment))
    # constrained after the loop, all iterations at once (vectorized)
    args = (data, spec.unflatten(leaves))
    records["draw"] = jax.vmap(lambda z: constrain_fn(make_model(structure), args, {}, z))(
        records["draw"])
    return state, records, jnp.sum(warm)


def _chain_all(structure: Structure, settings: Settings, spec: PriorSpec, state, keys, z0,
               data, leaves, first):
    """`_chain` of every chain at once (leading axis of ``state``, ``keys`` and ``z0``)."""
    one = partial(_chain, structure, settings, spec)
    return jax.vmap(one, in_axes=(0, 0, 0, None, None, None))(state, keys, z0, data, leaves,
                                                               first)


_chain_jit = jax.jit(_chain, static_argnums=(0, 1, 2))
_chain_vmap = jax.jit(_chain_all, static_argnums=(0, 1, 2))


def _no_state(static: tuple, key, z0, data, leaves, batched: bool):
    """A placeholder (zeros) for the state argument of a chain's first call, which starts the
    chain instead; one per chain when ``batched`` (leading axis of ``key`` and ``z0``).

    The shapes come from NumPyro's initialisation at a given point, which evaluates nothing
    (tracing `_start` itself would trace the model's gradient, about a second of Python).
    """
    structure, settings, spec = static

    def initial(key, z0):
        here = ParamInfo(z0, jnp.zeros(()), z0)
        return _nuts(structure, settings, spec, here, None, data, leaves, key)[0]

    if batched:
        initial = jax.vmap(initial)
    return jax.tree.map(_zeros, jax.eval_shape(initial, key, z0))


def _zeros(shape: jax.ShapeDtypeStruct) -> jax.Array:
    """Zeros of ``shape``'s shape and type (also a PRNG key type)."""
    if jax.dtypes.issubdtype(shape.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(
            jnp.zeros(shape.shape + jax.random.key_data(jax.random.key(0)).shape, jnp.uint32))
    return jnp.zeros(shape.shape, shape.dtype)


def laplace_start(potential, z0, dense: bool | tuple[str, ...]) -> tuple[ParamInfo, object]:
    """The starting point with its potential and gradient, and a Laplace inverse mass matrix.

    The inverse mass matrix is the inverse Hessian of the potential at ``z0``, from central
    differences of the gradient (``2 n`` gradients, evaluated in one ``lax.map`` together with
    the gradient at ``z0`` itself); its eigenvalues enter by absolute value with a floor of
    ``1e-6`` times the largest, and a non-finite Hessian falls back to the identity. Warm-up
    then adapts the matrix as usual; starting from the local curvature saves the long
    trajectories of its first iterations. Returns ``(ParamInfo(z0, potential, gradient),
    matrix)``, the matrix dense or its diagonal (``dense=False``); for a dense block over the
    sites ``dense`` (a tuple), NumPyro's structured form ``{dense: its block, rest: the
    diagonal of the other sites}`` (the blocks of the inverse Hessian).

    With ``H = V diag(l) V'``, the diagonal is ``sum_j V_ij^2 / l_j`` and a block
    ``V_B diag(1 / l) V_B'`` (`_scaled_gram`): only the entries asked for are computed.
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
    usable = jnp.all(jnp.isfinite(vecs)) & jnp.all(jnp.isfinite(vals)) & (jnp.max(vals) > 0)
    # a Hessian that cannot be used: the identity
    vecs, vals = jnp.where(usable, vecs, jnp.eye(n)), jnp.where(usable, vals, 1.0)
    start = ParamInfo(z0, values[0], unravel(grads[0]))
    diagonal = jnp.sum(vecs**2 / vals, axis=1)
    if dense is False:
        return start, diagonal
    if dense is True:
        return start, _scaled_gram(vecs, vals)
    # ravelled in sorted site order; NumPyro ravels a block in its tuple's order
    sizes = {name: int(np.size(z0[name])) for name in sorted(z0)}
    ends = dict(zip(sizes, np.cumsum(list(sizes.values())), strict=True))
    positions = {name: np.arange(ends[name] - size, ends[name]) for name, size in sizes.items()}
    rest = tuple(sorted(set(z0) - set(dense)))
    block = np.concatenate([positions[name] for name in dense])
    matrix = {dense: _scaled_gram(vecs[block], vals)}
    if rest:
        matrix[rest] = diagonal[np.concatenate([positions[name] for name in rest])]
    return start, matrix


def _scaled_gram(rows: jax.Array, vals: jax.Array) -> jax.Array:
    """``rows diag(1 / vals) rows'``, a block of rows at a time (`lmmhmc.blocked`: after the
    gradients' ``lax.map``, one such product was miscomputed when two threads ran it)."""
    return blocked_matmul(rows / vals, rows.T)
