"""Vectorized R-hat and ESS against ArviZ's own estimators, column by column."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest

from lmmhmc.convergence import rhat_and_ess


def _ar1(rng: np.random.Generator, shape: tuple[int, int, int], phi: float) -> np.ndarray:
    """AR(1) chains with coefficient `phi`, plus a column with ties, a constant column and a
    column whose last chain is shifted (R-hat far above 1)."""
    e = rng.normal(size=shape)
    x = np.zeros(shape)
    for t in range(shape[1]):
        x[:, t] = phi * (x[:, t - 1] if t else 0.0) + e[:, t]
    x[..., 0] = np.round(x[..., 0])
    x[..., 1] = 3.0
    x[-1, :, 2] += 2.0
    return x


@pytest.mark.parametrize(("shape", "phi"), [
    ((4, 1000, 40), 0.9), ((4, 1000, 40), -0.5), ((2, 11, 30), 0.3), ((3, 10, 30), 0.95),
    ((1, 100, 5), 0.5), ((4, 7, 20), 0.0), ((2, 3, 4), 0.0),
    ((2, 5, 6), 0.3), ((3, 4, 6), 0.0),  # half chains of 2 draws: no autocorrelation pair
    ((4, 60, 600), 0.5),  # several blocks of columns (`convergence._BLOCK`), on threads
])
def test_matches_arviz(shape: tuple[int, int, int], phi: float) -> None:
    x = _ar1(np.random.default_rng(sum(shape)), shape, phi)
    x[0, 0, 3] = np.nan
    data = az.convert_to_dataset({"v": x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [np.asarray(az.rhat(data)["v"]),
                    np.asarray(az.ess(data, method="bulk")["v"]),
                    np.asarray(az.ess(data, method="tail")["v"])]
    for got, want in zip(rhat_and_ess(x), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)


def test_no_columns_give_empty_results() -> None:
    assert [v.shape for v in rhat_and_ess(np.zeros((4, 100, 0)))] == [(0,), (0,), (0,)]
