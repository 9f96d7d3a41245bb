"""Known standard errors, brms's ``y | se(s)`` and ``y | se(s, sigma = TRUE)`` (DESIGN.md §7)."""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

import lmmhmc
from lmmhmc.assembled import assemble
from lmmhmc.errors import FormulaError, LmmhmcError
from lmmhmc.numpyro_model import factors, residual
from lmmhmc.plan import make_plan
from lmmhmc.priors import resolve_priors


def schools(n_schools: int = 10, per_school: int = 1, seed: int = 0) -> pd.DataFrame:
    """Eight-schools style data: one (or a few) estimates per school with known sds."""
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(n_schools), per_school)
    s = rng.uniform(6.0, 16.0, school.size)
    theta = 5.0 + 7.0 * rng.standard_normal(n_schools)
    x = rng.normal(size=school.size)
    y = theta[school] + 2.0 * x + s * rng.standard_normal(school.size)
    return pd.DataFrame({"y": y, "s": s, "x": x, "school": [f"s{j}" for j in school]})


@pytest.mark.parametrize("sigma", [False, True])
@pytest.mark.parametrize("marginalize", ["all", "none"])
def test_log_density_is_the_dense_normal(sigma: bool, marginalize: str) -> None:
    """The model's likelihood term equals ``N(y | X b, diag(s^2 [+ sigma^2]) + Z G Z^T)``,
    marginalized or (integrated here by a dense reference) sampled."""
    data = schools(6, 3)
    formula = f"y | se(s{', sigma = TRUE' if sigma else ''}) ~ 1 + x + (1 + x | school)"
    design = lmmhmc.Model(formula, data).design
    assembled = assemble(design, make_plan(design, "all"), resolve_priors(design, None))
    layout = assembled.layout
    assert (layout.sigma is not None) == sigma
    params = {"Intercept": 1.5, "x": 1.8, "1|school_sigma": 4.0, "x|school_sigma": 2.0,
              "school_corr": jnp.array([[1.0, 0.0], [0.4, np.sqrt(1 - 0.16)]])}
    if sigma:
        params[layout.sigma] = 3.0
    lams = factors(layout, params)
    got = assembled.likelihood.marginal_log_density(
        assembled.kernel, residual(assembled.structure, assembled.data, params, {}), params, lams)
    g = np.asarray(lams[0] @ lams[0].T)
    z = np.zeros((len(data), 12))
    codes = design.terms[0].index
    z[np.arange(len(data)), 2 * codes] = 1.0
    z[np.arange(len(data)), 2 * codes + 1] = data["x"]
    cov = np.diag(data["s"] ** 2 + (9.0 if sigma else 0.0)) + z @ np.kron(np.eye(6), g) @ z.T
    ref = multivariate_normal.logpdf(data["y"], 1.5 + 1.8 * data["x"], cov)
    assert float(got) == pytest.approx(ref, rel=1e-10)
    if marginalize == "none":  # the pointwise likelihood given the effects: N(y_i | mu_i, var_i)
        mu = jnp.asarray(1.5 + 1.8 * data["x"].to_numpy())
        ll = assembled.likelihood.log_prob(jnp.asarray(data["y"].to_numpy()), mu, params,
                                           assembled.data["w"])
        var = data["s"] ** 2 + (9.0 if sigma else 0.0)
        ref = -0.5 * (np.log(2 * np.pi * var) + (data["y"] - mu) ** 2 / var)
        np.testing.assert_allclose(np.asarray(ll), ref, rtol=1e-12)


def quadrature(data: pd.DataFrame, priors) -> dict:
    """Posterior means and sds of (mu, tau, school effects) of ``y | se(s) ~ 1 + (1 | school)``
    with one estimate per school: the schools integrated analytically
    (``y_j ~ N(mu, s_j^2 + tau^2)``), (mu, tau) on a grid."""
    y, s = data["y"].to_numpy(), data["s"].to_numpy()
    mu = np.linspace(-60, 70, 1301)[:, None, None]
    tau = np.linspace(1e-6, 80, 1600)[None, :, None]
    var = s**2 + tau**2
    logp = (-0.5 * np.sum(np.log(var) + (y - mu) ** 2 / var, axis=-1)
            + np.asarray(priors["Intercept"].log_prob(mu[..., 0]))
            + np.asarray(priors["1|school_sigma"].log_prob(tau[..., 0])))
    p = np.exp(logp - logp.max())
    p /= p.sum()
    shrink = tau**2 / var  # E[u_j | y, mu, tau] = shrink (y_j - mu), Var = shrink s_j^2
    cond_mean = shrink * (y - mu)
    cond_var = shrink * s**2
    out = {}
    for name, value in (("Intercept", mu[..., 0]), ("1|school_sigma", tau[..., 0])):
        m = np.sum(p * value)
        out[name] = (m, np.sqrt(np.sum(p * value**2) - m**2))
    m = np.einsum("ab,abj->j", p, cond_mean)
    second = np.einsum("ab,abj->j", p, cond_var + cond_mean**2)
    out["1|school"] = (m, np.sqrt(second - m**2))
    return out


@pytest.mark.slow
def test_eight_schools_agrees_with_quadrature_and_the_sampled_model() -> None:
    """``auto`` (school effects marginalized) and ``none`` (sampled non-centered) against the
    quadrature posterior: means within 5 MCSEs (MCSE from the fit's ESS), sds within 15 %
    (the sd of an sd estimate with ESS > 150 is below 6 %)."""
    data = schools()
    model = lmmhmc.Model("y | se(s) ~ 1 + (1 | school)", data)
    ref = quadrature(data, model.priors)
    for marginalize in ("auto", "none"):
        fit = model.fit(marginalize=marginalize, chains=2, draws=2000, warmup=1000, seed=3,
                        progress=False, target_accept=0.95)
        assert "sigma" not in fit.idata.posterior
        post = fit.idata.posterior

        for name, (m, sd) in ref.items():
            draws = post[name].values.reshape(-1, *post[name].shape[2:])
            ess = np.asarray(az.ess(post[name]).to_array()).ravel()
            assert np.all(ess > 150), (marginalize, name, ess)
            mcse = np.atleast_1d(sd) / np.sqrt(ess)
            np.testing.assert_array_less(np.abs(draws.mean(0) - m), 5 * mcse + 1e-12)
            np.testing.assert_allclose(draws.std(0), sd, rtol=0.15)


def test_se_with_weights_and_fit_ml_are_refused() -> None:
    data = schools(6, 3)
    with pytest.raises(FormulaError, match="drop weights="):
        lmmhmc.Model("y | se(s) ~ 1 + (1 | school)", data, weights=np.ones(len(data)))
    with pytest.raises(LmmhmcError, match="not available .* known standard errors"):
        lmmhmc.Model("y | se(s) ~ 1 + (1 | school)", data).fit_ml()


def test_se_sigma_fit_runs_downstream() -> None:
    """``se(s, sigma = TRUE)``: sigma is a parameter; summary, predict, loo and the
    posterior predictive work (a short fit)."""
    data = schools(8, 4, seed=2)
    fit = lmmhmc.fit("y | se(s, sigma = TRUE) ~ 1 + x + (1 | school)", data, chains=2,
                     draws=150, warmup=200, seed=1, progress=False, posterior_predictive=True)
    assert "sigma" in fit.idata.posterior and np.all(fit.idata.posterior["sigma"] > 0)
    assert "Residual" in fit.varcorr()["group"].to_numpy()
    yrep = fit.idata.posterior_predictive["y"].values
    assert yrep.shape[-1] == len(data) and np.isfinite(yrep).all()
    assert fit.predict(kind="response", draws=10).shape == (10, len(data))
    with pytest.raises(LmmhmcError, match="weights=1 / s"):
        fit.predict(data.iloc[:3], kind="response")
    new = fit.predict(data.iloc[:3], kind="response", weights=1 / data["s"][:3] ** 2, draws=5)
    assert new.shape == (5, 3)
    assert np.isfinite(fit.loo().elpd_loo)
    assert 0 < float(fit.bayes_R2()["mean"].iloc[0]) < 1
    jax.clear_caches()
