"""``fit(posterior_predictive=True)``: replicated responses y_rep ~ N(X beta + Z u, sigma^2 / w).

One weighted sleepstudy fit with the shared small sampler settings (in one test run it reuses
the chain program of the ``sleepstudy_fit`` fixture: weights are data, not structure). Every
check rebuilds the mean from the posterior draws in NumPy, from the data's own columns.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SLEEPSTUDY_FORMULA
from scipy import stats

import lmmhmc


@pytest.fixture(scope="module")
def weighted(fit_settings):
    """The data (with random positive weights ``w`` in [0.25, 4]) and the fit."""
    data = lmmhmc.datasets.load("sleepstudy")
    w = np.exp(np.random.default_rng(3).uniform(np.log(0.25), np.log(4.0), len(data)))
    data = data.assign(w=w)
    res = lmmhmc.fit(SLEEPSTUDY_FORMULA, data, weights="w", posterior_predictive=True, seed=6,
                     **fit_settings)
    return data, res


def _draws(res, name: str) -> np.ndarray:
    """Draws of a posterior variable, chains stacked: (draws, *shape)."""
    values = res.idata.posterior[name].values
    return values.reshape((-1,) + values.shape[2:])


def test_replicates_are_stored_like_the_observations(weighted) -> None:
    data, res = weighted
    pp = res.idata.posterior_predictive
    assert list(pp.data_vars) == ["Reaction"]
    assert pp["Reaction"].dims == ("chain", "draw", "__obs__")
    assert pp["Reaction"].shape == (2, 200, 180)
    np.testing.assert_array_equal(pp["__obs__"].values, np.arange(180))
    obs = res.idata.observed_data["Reaction"]
    assert obs.dims == ("__obs__",)
    np.testing.assert_array_equal(obs.values, data["Reaction"].to_numpy(dtype=float))
    assert res.idata.log_likelihood["Reaction"].dims == ("chain", "draw", "__obs__")
    assert np.all(np.isfinite(pp["Reaction"].values))


def test_replicates_are_the_mean_plus_weighted_normal_noise(weighted) -> None:
    data, res = weighted
    days = data["Days"].to_numpy(dtype=float)
    w = data["w"].to_numpy()
    # the subject of each observation, by its label in the posterior's level coordinate
    levels = list(res.idata.posterior["Subject__factor_dim"].values)
    j = np.array([levels.index(str(s)) for s in data["Subject"]])
    u0, u1 = _draws(res, "1|Subject"), _draws(res, "Days|Subject")
    mu = (_draws(res, "Intercept")[:, None] + _draws(res, "Days")[:, None] * days
          + u0[:, j] + u1[:, j] * days)
    yrep = res.idata.posterior_predictive["Reaction"].values.reshape(400, 180)
    z = (yrep - mu) * np.sqrt(w) / _draws(res, "sigma")[:, None]
    n = z.size  # 72,000 values, independent standard normals if y_rep is right
    # sd of the mean 1 / sqrt(n) = 0.0037 and of the sd 1 / sqrt(2 n) = 0.0026: 5 sds
    assert z.mean() == pytest.approx(0.0, abs=5 / np.sqrt(n))
    assert z.std() == pytest.approx(1.0, abs=5 / np.sqrt(2 * n))
    # KS over all draws x observations: a p-value below 1e-4 has probability 1e-4 under N(0, 1)
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-4
    # the noise sd is sigma / sqrt(w) observation by observation: the quarter of the
    # observations with the largest and the smallest weights alike (18,000 values each,
    # sd of the sd 0.0053); ignoring w would give them sds of about 1.7 and 0.6
    order = np.argsort(w)
    for part in (order[:45], order[-45:]):
        assert z[:, part].std() == pytest.approx(1.0, abs=5 / np.sqrt(2 * z[:, part].size))
    # independent between draws and between observations: lag-one correlations, each with
    # sd about 1 / sqrt(n) = 0.0037
    assert np.corrcoef(z[1:].ravel(), z[:-1].ravel())[0, 1] == pytest.approx(0.0, abs=0.02)
    assert np.corrcoef(z[:, 1:].ravel(), z[:, :-1].ravel())[0, 1] == pytest.approx(0.0, abs=0.02)


def test_replicates_match_predict_in_distribution(weighted) -> None:
    """``predict(kind="response")`` draws from the same law (with the training weights)."""
    data, res = weighted
    yrep = res.idata.posterior_predictive["Reaction"].values.reshape(400, 180)
    mean = res.predict()
    sigma = _draws(res, "sigma")[:, None]
    w = data["w"].to_numpy()
    z_pp = (yrep - mean) * np.sqrt(w) / sigma
    z_predict = (res.predict(kind="response", seed=9) - mean) * np.sqrt(w) / sigma
    # two samples of 72,000: the two-sample KS test at 1e-4
    assert stats.ks_2samp(z_pp.ravel(), z_predict.ravel()).pvalue > 1e-4
    assert not np.allclose(yrep, res.predict(kind="response", seed=9))  # other noise
