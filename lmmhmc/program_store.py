"""Traced programs kept on disk, so that a new process does not trace them again.

JAX's persistent compilation cache saves the compiling, not the tracing: every new process
runs the model's Python again (NumPyro's sampler, the kernel and its gradient) before it can
even ask the cache. For the chains' program that took about 2 s of every warm fit (sleepstudy
and df_dillonE1 alike). `lower()` exports a program once (`jax.export`: its StableHLO, with the
output's pytree structure) into the folder `lmmhmc-programs` inside JAX's cache folder, and
later processes load it in milliseconds; what they compile is the same module, so the
compilation cache answers them too, and the draws are bit for bit the same.

A stored program is found only by a key that holds everything its tracing read: the static
arguments (pickled), the structure, shapes and types of the others, the versions of Python,
JAX, jaxlib, NumPyro and NumPy, JAX's settings that change a trace, the backend (CPU or GPU)
and a digest of lmmhmc's own source. Anything that cannot go into the key (an argument that
pickle cannot write) is traced as before, and so is everything when JAX's compilation cache
is off (``LMMHMC_CACHE_DIR=off``, see `lmmhmc.runtime.enable_compilation_cache`), and a
program that `jax.export` refuses. An unreadable file is traced again and replaced.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import platform
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path

import jax

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .runtime import cache_folder, write_whole

#: The folder, inside JAX's compilation cache, that holds the stored programs.
FOLDER = "lmmhmc-programs"

#: JAX's settings that change what a function traces to.
TRACE_SETTINGS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_numpy_rank_promotion",
                  "jax_numpy_dtype_promotion", "jax_default_prng_impl",
                  "jax_threefry_partitionable", "jax_enable_checks")


@dataclass(frozen=True, eq=False)
class _Stored:
    """An exported program and its output's pytree structure, equal by key (a static
    argument of `_call`, so that one process lowers it once)."""

    key: str
    exported: jax.export.Exported
    out_tree: object

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Stored) and other.key == self.key


def lower(program: Callable, args: tuple, static: tuple[int, ...]) -> jax.stages.Lowered:
    """``program.lower(*args)``, traced only if no process has stored it before.

    Parameters
    ----------
    program : jitted function
        Jitted with ``static_argnums=static``.
    args : tuple
        Its arguments, arrays or ``jax.ShapeDtypeStruct`` at the positions not in ``static``.
    static : tuple of int
        The positions of the static arguments.

    Returns
    -------
    jax.stages.Lowered
        Called (once compiled) with the non-static arguments, in their order, and returning
        what ``program`` returns.
    """
    folder = _folder()
    key = None if folder is None else _key(program, args, static)
    if key is None:
        return program.lower(*args)
    dynamic = tuple(a for i, a in enumerate(args) if i not in static)
    path = folder / f"{key}.bin"
    stored = _load(path, key) or _store(path, key, program, args, static)
    if stored is None:
        return program.lower(*args)
    return _call.lower(stored, *dynamic)


@partial(jax.jit, static_argnums=0)
def _call(stored: _Stored, *dynamic):
    """The stored program called on the non-static arguments."""
    out = stored.exported.call(*jax.tree.leaves(dynamic))
    return jax.tree.unflatten(stored.out_tree, out)


def _folder() -> Path | None:
    """The stored programs' folder, or None when JAX's compilation cache is off or remote."""
    cache = cache_folder()
    return None if cache is None else cache / FOLDER


def _key(program: Callable, args: tuple, static: tuple[int, ...]) -> str | None:
    """The digest of everything the trace of ``program(*args)`` reads; None if an argument
    cannot be written into it."""
    dynamic = [a for i, a in enumerate(args) if i not in static]
    leaves, tree = jax.tree.flatten(dynamic)
    types = [str(jax.typeof(a)) for a in leaves]
    parts = io.BytesIO()
    try:
        _KeyPickler(parts).dump((f"{program.__module__}.{program.__qualname__}", static,
                                 [args[i] for i in static], tree, types, _environment()))
    except (pickle.PicklingError, TypeError, AttributeError):
        return None
    return hashlib.sha256(parts.getvalue()).hexdigest()


class _KeyPickler(pickle.Pickler):
    """Pickles an object that has a ``store_key()`` method as what it returns: for objects
    whose own pickle differs between processes (`lmmhmc.chains.PriorSpec`)."""

    def reducer_override(self, obj):
        store_key = getattr(type(obj), "store_key", None)
        if store_key is None:
            return NotImplemented
        return _keyed, (f"{type(obj).__module__}.{type(obj).__qualname__}", store_key(obj))


def _keyed(kind: str, key: object) -> tuple:
    """What a key's pickle names for an object written by its ``store_key()``."""
    return kind, key


def _environment() -> tuple:
    """Versions, JAX's trace settings, the backend (an exported program names its platform)
    and a digest of lmmhmc's source files."""
    source = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        source.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    versions = tuple(version(name) for name in ("jax", "jaxlib", "numpyro", "numpy"))
    settings = tuple(str(getattr(jax.config, name, None)) for name in TRACE_SETTINGS)
    return (platform.python_version(), versions, settings, jax.default_backend(),
            source.hexdigest())


def _load(path: Path, key: str) -> _Stored | None:
    """The stored program at ``path``, or None if there is none or it cannot be read."""
    try:
        serialized, out_tree = pickle.loads(path.read_bytes())
        return _Stored(key, jax.export.deserialize(serialized), out_tree)
    except Exception:  # noqa: BLE001  (missing, truncated or foreign: traced again)
        return None


def _store(path: Path, key: str, program: Callable, args: tuple,
           static: tuple[int, ...]) -> _Stored | None:
    """Trace and export ``program`` on the flattened non-static arguments and write it to
    ``path`` (atomically; a folder that cannot be written is left alone); None if JAX cannot
    export it."""
    positions = [i for i in range(len(args)) if i not in static]
    leaves, tree = jax.tree.flatten([args[i] for i in positions])
    out_tree = []

    def flat(*leaves):
        full = list(args)
        for i, a in zip(positions, jax.tree.unflatten(tree, leaves), strict=True):
            full[i] = a
        out, structure = jax.tree.flatten(program(*full))
        out_tree.append(structure)
        return out

    try:
        exported = jax.export.export(jax.jit(flat))(*leaves)
    except Exception:  # noqa: BLE001  (e.g. a custom call that export refuses: traced as before;
        return None    # an error of the program itself is raised again by that trace)
    stored = _Stored(key, exported, out_tree[0])
    write_whole(path, pickle.dumps((exported.serialize(), stored.out_tree)))
    return stored
