"""NUTS fits of non-Gaussian families end to end: the reparameterized (``auto``) and the
non-centered (``none``) samplers, summaries, predictions, log-likelihood, save and load.

The density of the reparameterization is checked exactly in ``test_laplace.py`` (a Gaussian
response gives the marginal density times N(z; 0, I); the Jacobian equals a dense
determinant); here the cheap tests check the plumbing against independent computations
(SciPy's binomial log-pmf, the inverse link), and the slow one that both samplers target the
same posterior.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from conftest import FIT_SETTINGS
from scipy.optimize import minimize_scalar
from scipy.special import expit
from scipy.stats import binom

import lmmhmc
from lmmhmc.datasets import load

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp_fit():
    return lmmhmc.fit(CBPP, load("cbpp"), family="binomial", seed=3, **FIT_SETTINGS)


def test_parameters_have_no_sigma(cbpp_fit):
    post = cbpp_fit.idata.posterior
    assert "sigma" not in post and "1|herd_sigma" in post
    assert post["1|herd"].shape[-1] == 15
    assert "Residual" not in set(cbpp_fit.varcorr()["group"])
    assert cbpp_fit.plan.marginalized == (0,)
    assert list(cbpp_fit.ranef()["group"].unique()) == ["herd"]


def test_random_effects_match_quadrature(cbpp_fit):
    """The recovered herd effects against an independent computation: for each posterior
    draw of (beta, sd), the exact conditional mean and variance of every herd's effect by
    quadrature on a fine grid (herds are independent given the parameters); the posterior
    mean and sd follow by the laws of total expectation and variance. Tolerances: 4 MCSEs of
    the mean, 15 % of the sd (its Monte-Carlo error is ~4 % at these ESS; a sampler that
    double-counted N(z; 0, I) gave sds 25 % too small)."""
    post = cbpp_fit.idata.posterior
    design = cbpp_fit.design
    beta = np.stack([post[name].values.ravel() for name in cbpp_fit.layout.fixed], axis=1)
    sds = post["1|herd_sigma"].values.ravel()
    herd, y, n = design.terms[0].index, design.y, design.trials
    grid = np.linspace(-6.0, 6.0, 2001)
    moments = []
    for b, s in zip(beta, sds, strict=True):
        eta = (design.X @ b)[:, None] + grid[None, :]
        loglik = np.zeros((15, grid.size))
        np.add.at(loglik, herd, y[:, None] * eta - n[:, None] * np.logaddexp(0.0, eta))
        logpost = loglik - 0.5 * (grid / s) ** 2
        w = np.exp(logpost - logpost.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        m = w @ grid
        moments.append((m, w @ grid**2 - m**2))
    means, variances = (np.array(a) for a in zip(*moments, strict=True))
    ref_mean, ref_sd = means.mean(axis=0), np.sqrt(variances.mean(axis=0) + means.var(axis=0))
    u = post["1|herd"].values.reshape(-1, 15)
    ess = az.ess(cbpp_fit.idata, var_names=["1|herd"])["1|herd"].values
    assert np.all(np.abs(u.mean(axis=0) - ref_mean) < 4 * ref_sd / np.sqrt(ess))
    np.testing.assert_allclose(u.std(axis=0), ref_sd, rtol=0.15)


def test_newton_iteration_starts_at_the_ml_modes(cbpp_fit):
    """The reparameterization's Newton steps start at the conditional modes of the herd
    effects at the ML estimate: each herd's mode by a bounded scalar optimization."""
    ml, design = cbpp_fit.ml, cbpp_fit.design
    s = float(ml.factors[0][0, 0])
    eta = design.X @ ml.beta.values
    herd, y, n = design.terms[0].index, design.y, design.trials
    modes = []
    for j in range(15):
        rows = herd == j

        def minus_logpost(u, rows=rows):
            e = eta[rows] + u
            return -np.sum(y[rows] * e - n[rows] * np.logaddexp(0.0, e)) + 0.5 * (u / s) ** 2

        modes.append(minimize_scalar(minus_logpost, bounds=(-8, 8), method="bounded",
                                     options={"xatol": 1e-10}).x)
    start = np.asarray(cbpp_fit.assembled.data["newton_start"][0])[:, 0]
    np.testing.assert_allclose(start, modes, atol=1e-6)


def test_pointwise_log_likelihood_is_the_binomial_pmf(cbpp_fit):
    data = load("cbpp")
    mu = cbpp_fit.predict(kind="link")
    expected = binom.logpmf(data["incidence"].to_numpy(), data["size"].to_numpy(), expit(mu))
    loglik = cbpp_fit.idata.log_likelihood["incidence"].values.reshape(expected.shape)
    np.testing.assert_allclose(loglik, expected, rtol=1e-10, atol=1e-10)
    assert np.isfinite(cbpp_fit.loo().elpd_loo)


def test_predict_scales(cbpp_fit):
    data = load("cbpp")
    link = cbpp_fit.predict(kind="link", draws=50)
    mean = cbpp_fit.predict(kind="mean", draws=50)
    np.testing.assert_allclose(mean, data["size"].to_numpy() * expit(link), rtol=1e-12)
    new = data.iloc[:3]
    prob = cbpp_fit.predict(new, kind="mean", draws=50)  # one trial by default for new rows
    assert np.all((prob > 0) & (prob < 1))
    y = cbpp_fit.predict(kind="response", draws=50)
    assert np.all(y == np.round(y)) and np.all((y >= 0) & (y <= data["size"].to_numpy()))


def test_save_and_load_keep_the_family(cbpp_fit, tmp_path):
    path = tmp_path / "cbpp.nc"
    cbpp_fit.save(path)
    loaded = lmmhmc.load(path)
    assert loaded.model.family == "binomial"
    np.testing.assert_allclose(loaded.predict(kind="mean", draws=10),
                               cbpp_fit.predict(kind="mean", draws=10))


def test_noncentered_bernoulli_fit_runs():
    data = load("VerbAgg").iloc[:1200]
    data = data.assign(r2=(data["r2"] == "Y").astype(float))
    fit = lmmhmc.fit("r2 ~ btype + (1 | id)", data, family="bernoulli", marginalize="none",
                     seed=1, **FIT_SETTINGS)
    assert fit.plan.marginalized == ()
    means = fit.predict(kind="mean", draws=20)
    assert np.all((means > 0) & (means < 1))


@pytest.mark.slow
def test_reparameterized_and_noncentered_posteriors_agree():
    """cbpp: every parameter and random effect, means within 4 combined MCSEs and sds
    within 10 % (4 chains x 1000 draws each)."""
    settings = {"chains": 4, "draws": 1000, "warmup": 1000, "progress": False}
    fits = {m: lmmhmc.fit(CBPP, load("cbpp"), family="binomial", marginalize=m, seed=5,
                          **settings) for m in ("auto", "none")}
    summaries = {m: az.summary(f.idata, var_names=f.parameter_names(True), round_to="none")
                 for m, f in fits.items()}
    a, b = summaries["auto"], summaries["none"]
    mcse = np.hypot(a["mcse_mean"], b["mcse_mean"])
    assert np.all(np.abs(a["mean"] - b["mean"]) <= 4 * mcse), (a["mean"] - b["mean"]) / mcse
    assert np.all(np.abs(a["sd"] / b["sd"] - 1) < 0.10)
