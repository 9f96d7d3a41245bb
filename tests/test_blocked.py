"""`lmmhmc.blocked.blocked_matmul` against NumPy's product."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from lmmhmc.blocked import BLOCK_ROWS, DIRECT_ROWS, blocked_matmul


@pytest.mark.parametrize(("rows", "inner", "cols", "looped"), [
    (300, 400, 200, False),                   # small: one product
    (DIRECT_ROWS + 188, 50, 900, True),       # large: rows a block at a time, the last padded
    (4 * BLOCK_ROWS + DIRECT_ROWS, 30, DIRECT_ROWS + 1, True),
    (2000, 40, 30, False),                    # thin: one product
])
def test_is_the_product(rows: int, inner: int, cols: int, looped: bool) -> None:
    rng = np.random.default_rng(rows + cols)
    a, b = rng.normal(size=(rows, inner)), rng.normal(size=(inner, cols))
    got = np.asarray(jax.jit(blocked_matmul)(a, b))
    np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12 * inner)
    # only products with many rows and columns go through the loop (the workaround)
    assert ("scan" in str(jax.make_jaxpr(blocked_matmul)(a, b))) == looped
