"""JAX's process-wide settings, made in one place: double precision and synchronous CPU dispatch.

The marginal-likelihood kernels need float64 (their Cholesky factors and log-determinants lose
too much in float32). Every lmmhmc module that imports ``jax`` or ``numpyro`` imports this
module too (``tests/test_architecture.py`` checks it), so the switch happens before lmmhmc
creates any JAX array, whichever of its modules is imported first. ``import lmmhmc`` alone does
not import JAX (the command line's ``--help``, ``datasets`` and ``describe`` do not need it);
it imports this module only when JAX is already loaded, so that a session which imported JAX
first gets float64 at once, as before.

Parallel chains (``chain_method="parallel"``, see `lmmhmc.chains`) call one compiled program
from several threads; JAX's CPU client runs such calls side by side only when it dispatches
synchronously (each call runs on its calling thread), which must be chosen before JAX creates
its CPU client, i.e. before its first operation. This module chooses it when that is still
possible (`lmmhmc.runtime.parallel_chains_possible` tells later whether it was).

It also turns off XLA:CPU's YNNPACK library fusions (``XLA_FLAGS``, read when JAX creates its
CPU client, unless the user's own ``XLA_FLAGS`` set them): they take over the reductions of
the per-level ``d x d`` products (`lmmhmc.marginal.small_matmul`) and run them several times
slower than XLA's own loop fusions, in float64 over thousands of tiny blocks. On
df_stroop_complete's 3,337 subjects one value and gradient of the log density took 1.2 ms
with them and 0.35 ms without (docs/troubleshooting.md has the numbers).
"""

from __future__ import annotations

import os

import jax

#: The XLA flag that selects XLA:CPU's YNNPACK fusions; empty: none.
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"

jax.config.update("jax_enable_x64", True)


def _backends_started() -> bool:
    try:
        from jax._src.xla_bridge import backends_are_initialized
    except ImportError:  # a JAX without it: assume started, leave the setting alone
        return True
    return backends_are_initialized()


if not _backends_started():
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    if YNN_FLAG not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {YNN_FLAG}=".strip()
