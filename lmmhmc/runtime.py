"""Process-level facts and settings for sampling: compilation cache, BLAS threads, cores and
how the chains run."""

from __future__ import annotations

import os
from pathlib import Path

import jax
from threadpoolctl import threadpool_limits

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .errors import LmmhmcError, SpeedWarning, warn

#: How to get parallel chains when JAX started before lmmhmc could choose synchronous dispatch
#: (lmmhmc imports JAX lazily, at its first fit; see `lmmhmc._x64`).
_HOW_TO_PARALLEL = (
    "run jax.config.update('jax_cpu_enable_async_dispatch', False) right after importing jax, "
    "before any JAX operation")


def enable_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache unless the user configured one.

    NumPyro re-traces its sampling loop on every run; with the cache, a repeated fit of the same
    model structure loads the compiled program instead of compiling it again. The folder is
    ``$LMMHMC_CACHE_DIR`` or ``~/.cache/lmmhmc/jax``; ``LMMHMC_CACHE_DIR=off`` disables it.
    Every program is cached, however short its compilation (JAX's default skips those under a
    second): a fit also compiles about a hundred small programs (data preparation, the ML
    start, recovery), 3.9 s of a warm df_dillonE1 fit's 24 s, and the cache of all of them
    holds about 1 MB.
    """
    if jax.config.jax_compilation_cache_dir is not None:
        return
    path = os.environ.get("LMMHMC_CACHE_DIR", str(Path.home() / ".cache" / "lmmhmc" / "jax"))
    if path.lower() == "off":
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def cache_folder() -> Path | None:
    """JAX's compilation cache folder, beside which lmmhmc keeps its own stored files (the
    chains' programs, the device calibration); None when the cache is off or remote."""
    cache = jax.config.jax_compilation_cache_dir
    if cache is None or "://" in str(cache):
        return None
    return Path(cache)


def write_whole(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` through a file of this process renamed over it, so that
    a reader in another process sees the old or the new file, never a part; a folder that
    cannot be written is left alone (the file is made again next time)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{os.getpid()}.part")
        part.write_bytes(content)
        os.replace(part, path)
    except OSError:
        pass


def single_threaded_blas():
    """Context manager limiting BLAS/LAPACK (OpenBLAS) to one thread while it is active.

    JAX's CPU Cholesky and triangular solves call LAPACK from scipy's OpenBLAS, whose worker
    threads stall for milliseconds whenever another process holds a core; the kernels'
    matrices are small, so one thread is faster and its timing does not depend on the load.
    """
    return threadpool_limits(limits=1, user_api="blas")


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel_chains_possible() -> bool:
    """Whether chains on threads run side by side: not on a CPU client that dispatches
    asynchronously (it runs one call at a time; `lmmhmc._x64` avoids it when it can)."""
    return jax.default_backend() != "cpu" or not jax.config.read("jax_cpu_enable_async_dispatch")


def resolve_chain_method(method: str, chains: int) -> str:
    """The chain method to use for ``chain_method=method`` (`lmmhmc.options.CHAIN_METHODS`).

    ``"auto"``: on CPU ``"parallel"`` when there are several chains and cores (else
    ``"sequential"``, with a `SpeedWarning` when only the dispatch prevents it); on an
    accelerator ``"vectorized"``. ``"parallel"`` on a CPU that cannot run it raises
    `LmmhmcError`.
    """
    possible = parallel_chains_possible()
    if method == "parallel" and not possible:
        raise LmmhmcError(
            "chain_method='parallel' needs JAX's synchronous CPU dispatch, which must be chosen "
            f"before JAX's first operation: {_HOW_TO_PARALLEL}; or use "
            "chain_method='sequential'")
    if method != "auto":
        return method
    if jax.default_backend() != "cpu":
        return "vectorized" if chains > 1 else "sequential"
    if chains == 1 or cores() == 1:
        return "sequential"
    if not possible:
        warn(f"the {chains} chains run one after another on this {cores()}-core machine: JAX "
             "started its CPU client before lmmhmc could choose synchronous dispatch; for "
             f"parallel chains, {_HOW_TO_PARALLEL}", SpeedWarning)
        return "sequential"
    return "parallel"
