"""How fast a device runs the joint kernel's dense work: timings measured once per device.

The dense part of the marginal kernel (`lmmhmc.marginal`) is a Cholesky factor of a symmetric
positive definite ``n x n`` matrix ``S``, its triangular solves and their reverse pass. Its
calibration is the time of one value and gradient of

    f(S, b) = log det S + b^T S^{-1} b = 2 sum_i log L_ii + |L^{-1} b|^2,   S = L L^T,

on a device at a few sizes ``n`` (the shortest of `REPEATS` calls, after one call that
compiles). `lmmhmc.plan.device_budget` turns the times into the planner's budget. They
are stored in ``calibration.json`` in JAX's compilation cache folder (see
`lmmhmc.runtime.enable_compilation_cache`), one entry per device kind and JAX version, so that
a machine measures once and plans the same way afterwards; with the cache off, every call
measures again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .runtime import cache_folder, single_threaded_blas, write_whole

#: Timed calls per size; the shortest counts.
REPEATS = 5
#: The stored timings' file in JAX's compilation cache folder.
FILE = "calibration.json"


def _dense(s: jax.Array, b: jax.Array) -> jax.Array:
    """``log det S + b^T S^{-1} b`` through the Cholesky factor of ``S``."""
    factor = jnp.linalg.cholesky(s)
    z = solve_triangular(factor, b, lower=True)
    return 2.0 * jnp.sum(jnp.log(jnp.diag(factor))) + z @ z


def dense_seconds(sizes: Sequence[int], device: jax.Device,
                  limit: float | None = None) -> dict[int, float]:
    """Seconds of one value and gradient of the dense kernel (module docstring) on ``device``
    at each size in ``sizes`` (ascending); with a ``limit``, none after the first size that
    takes longer."""
    step = jax.jit(jax.value_and_grad(_dense))
    rng = np.random.default_rng(0)
    seconds = {}
    with single_threaded_blas():
        for n in sizes:
            a = rng.standard_normal((n, n)) / np.sqrt(n)
            s = jax.device_put(a @ a.T + np.eye(n), device)
            b = jax.device_put(rng.standard_normal(n), device)
            jax.block_until_ready(step(s, b))
            times = []
            for _ in range(REPEATS):
                start = time.perf_counter()
                jax.block_until_ready(step(s, b))
                times.append(time.perf_counter() - start)
            seconds[n] = min(times)
            if limit is not None and seconds[n] > limit:
                break
    return seconds


def remembered(device: jax.Device, what: str, measure: Callable[[], dict]) -> dict:
    """The stored calibration ``what`` of ``device`` (its kind and the JAX version), or
    ``measure()``'s, stored when the compilation cache is on (through JSON: its keys come back
    as strings)."""
    path = _path()
    key = f"{device.platform}:{device.device_kind}:jax {jax.__version__}:{what}"
    entries = _read(path) if path else {}
    if key in entries:
        return entries[key]
    entries[key] = json.loads(json.dumps(measure()))
    if path is not None:
        write_whole(path, json.dumps(entries, indent=1).encode())
    return entries[key]


def _path() -> Path | None:
    """The stored calibration's file, or None when JAX's compilation cache is off or remote."""
    cache = cache_folder()
    return None if cache is None else cache / FILE


def _read(path: Path) -> dict:
    """The stored entries; empty when the file is missing or unreadable."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}
