"""Large matrix products computed a block of rows at a time (an XLA:CPU workaround).

With jax 0.10.2 on CPU, one ``n x n x n`` product in a program that has run a loop before it
came out wrong in its first rows when two threads ran the program at once (n >= 800; never
seen at n <= 700, nor for a product inside a loop of its own, nor for a matrix-vector
product). Parallel chains run the chain program on threads, so every product of that size
inside it goes through `blocked_matmul`: the Laplace start's inverse Hessian
(`lmmhmc.chains.laplace_start`; InstEval's 1,148 sampled dimensions started some chains from
a wrong metric) and the dense rest of a joint marginal kernel (`lmmhmc.marginal`; InstEval
with every term marginalized, 1,142 levels: parallel chains drew other numbers than the same
chains run one after another). ``tests/test_chains.py`` runs both from two threads (the
kernel's case in a test marked slow: it needs a 1,000-level fit).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _x64  # noqa: F401  (float64 before any JAX array)

__all__ = ["BLOCK_ROWS", "DIRECT_ROWS", "blocked_matmul"]

#: Rows of the product per loop iteration.
BLOCK_ROWS = 64
#: Products with at most this many rows or columns are computed directly (the loop's
#: overhead matters for the small kernels, and the miscomputation was never seen below 800).
DIRECT_ROWS = 512


def blocked_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` for matrices, `BLOCK_ROWS` rows of ``a`` at a time in a ``lax.map`` when the
    product has more than `DIRECT_ROWS` rows and columns."""
    n = a.shape[0]
    if min(n, b.shape[1]) <= DIRECT_ROWS:
        return a @ b
    padded = -(-n // BLOCK_ROWS) * BLOCK_ROWS
    blocks = jnp.pad(a, ((0, padded - n), (0, 0))).reshape(-1, BLOCK_ROWS, a.shape[1])
    return jax.lax.map(lambda block: block @ b, blocks).reshape(padded, -1)[:n]
