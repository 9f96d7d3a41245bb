"""Process-level settings for sampling on CPU: compilation cache and BLAS threads."""

from __future__ import annotations

import os
from pathlib import Path

import jax
from threadpoolctl import threadpool_limits

from . import _x64  # noqa: F401  (float64 before any JAX array)


def enable_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache unless the user configured one.

    NumPyro re-traces its sampling loop on every run; with the cache, a repeated fit of the same
    model structure loads the compiled program instead of compiling it again. The folder is
    ``$LMMHMC_CACHE_DIR`` or ``~/.cache/lmmhmc/jax``; ``LMMHMC_CACHE_DIR=off`` disables it.
    """
    if jax.config.jax_compilation_cache_dir is not None:
        return
    path = os.environ.get("LMMHMC_CACHE_DIR", str(Path.home() / ".cache" / "lmmhmc" / "jax"))
    if path.lower() == "off":
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def single_threaded_blas():
    """Context manager limiting BLAS/LAPACK (OpenBLAS) to one thread while it is active.

    JAX's CPU Cholesky and triangular solves call LAPACK from scipy's OpenBLAS, whose worker
    threads stall for milliseconds whenever another process holds a core; the kernels'
    matrices are small, so one thread is faster and its timing does not depend on the load.
    """
    return threadpool_limits(limits=1, user_api="blas")
