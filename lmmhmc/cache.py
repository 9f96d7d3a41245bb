"""JAX's persistent compilation cache, switched on for lmmhmc's fits."""

from __future__ import annotations

import os
from pathlib import Path

import jax


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
