"""fit(): the marginalized sampler against ML values and against the non-marginalized model."""

from __future__ import annotations

import arviz as az
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest

import lmmhmc
from lmmhmc.datasets import load
from lmmhmc.errors import LmmhmcError

SLEEP = "Reaction ~ Days + (Days | Subject)"
# ../shared/data/lme4/SOURCES.md: ML estimates for sleepstudy
ML_BETA = {"Intercept": 251.40510484848454, "Days": 10.467285959596126}


@pytest.fixture(scope="module")
def sleep_fit():
    return lmmhmc.fit(SLEEP, load("sleepstudy"), progress=False)


def test_sleepstudy_defaults_converge_and_match_ml(sleep_fit):
    res = sleep_fit
    assert res.n_divergences == 0
    # unrounded (summary() rounds to 2 decimals, where 1.005 would read as 1.01)
    summ = az.summary(res.idata, var_names=res.parameter_names(True), kind="diagnostics",
                      round_to="none")
    assert summ["r_hat"].max() < 1.01
    post = res.idata.posterior
    for name, ml in ML_BETA.items():
        mean, sd = float(post[name].mean()), float(post[name].std())
        assert abs(mean - ml) < 0.5 * sd, (name, mean, ml, sd)


def test_posterior_layout_is_bambi_like(sleep_fit):
    post = sleep_fit.idata.posterior
    for name in ["Intercept", "Days", "sigma", "1|Subject_sigma", "Days|Subject_sigma",
                 "1|Subject", "Days|Subject", "Subject_corr"]:
        assert name in post, name
    assert post["1|Subject"].dims == ("chain", "draw", "Subject__factor_dim")
    assert list(post["Subject__factor_dim"].values[:2]) == ["308", "309"]
    assert post["Subject_corr"].shape == (4, 1000, 1)
    stats = sleep_fit.idata.sample_stats
    for name in ["diverging", "tree_depth", "step_size", "n_steps", "energy", "lp"]:
        assert name in stats, name
    ll = sleep_fit.idata.log_likelihood["Reaction"]
    assert ll.shape == (4, 1000, 180)


def test_log_likelihood_is_pointwise_conditional_normal(sleep_fit):
    """log_likelihood equals log N(y | X beta + Z u, sigma^2), recomputed by hand for one draw."""
    post = sleep_fit.idata.posterior.isel(chain=1, draw=17)
    des = sleep_fit.design
    t = des.terms[0]
    u = np.column_stack([post["1|Subject"].values, post["Days|Subject"].values])
    mu = des.X @ np.array([post["Intercept"], post["Days"]]) + np.sum(u[t.index] * t.block, 1)
    sigma = float(post["sigma"])
    ref = -0.5 * np.log(2 * np.pi * sigma**2) - 0.5 * ((des.y - mu) / sigma) ** 2
    got = sleep_fit.idata.log_likelihood["Reaction"].isel(chain=1, draw=17).values
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_same_seed_same_result_bit_for_bit():
    data = load("sleepstudy")
    kw = dict(chains=2, draws=100, warmup=100, progress=False, seed=3)
    a = lmmhmc.fit(SLEEP, data, **kw)
    b = lmmhmc.fit(SLEEP, data, **kw)
    for name in a.idata.posterior.data_vars:
        pa, pb = a.idata.posterior[name].values, b.idata.posterior[name].values
        np.testing.assert_array_equal(pa, pb)
    c = lmmhmc.fit(SLEEP, data, **(kw | {"seed": 4}))
    assert not np.array_equal(a.idata.posterior["Days"].values, c.idata.posterior["Days"].values)


@pytest.mark.parametrize("bad", [dict(chains=0), dict(draws=-1), dict(target_accept=1.5),
                                 dict(init="zeros")])
def test_bad_sampler_settings(bad):
    with pytest.raises(LmmhmcError):
        lmmhmc.fit(SLEEP, load("sleepstudy"), **bad)


# --------------------------------------------------------------------------- agreement (slow)


def simulate_crossed(seed: int = 1, n_subj: int = 12, n_item: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    x = rng.choice([-0.5, 0.5], size=subj.size)
    u_s = rng.multivariate_normal([0, 0], [[0.6**2, 0.1], [0.1, 0.4**2]], n_subj)
    u_i = rng.normal(0, 0.5, n_item)
    y = 1.0 + 0.8 * x + u_s[subj, 0] + u_s[subj, 1] * x + u_i[item] + rng.normal(0, 0.5, subj.size)
    return pd.DataFrame({"y": y, "x": x, "subj": [f"s{k}" for k in subj],
                         "item": [f"i{k}" for k in item]})


def assert_posteriors_agree(a, b):
    """Every scalar (random effects included): means within 4 combined MCSEs, sds within 10%."""
    import arviz as az

    # unrounded: summary() rounds to 2 decimals, and an MCSE of 0.004 would read as 0
    sa, sb = (az.summary(r.idata, kind="all", round_to="none") for r in (a, b))
    assert list(sa.index) == list(sb.index)
    se = np.sqrt(sa["mcse_mean"] ** 2 + sb["mcse_mean"] ** 2)
    z = (sa["mean"] - sb["mean"]).abs() / se
    assert z.max() < 4.0, z.sort_values().tail()
    ratio = sa["sd"] / sb["sd"]
    assert ratio.between(0.9, 1.1).all(), ratio[~ratio.between(0.9, 1.1)]


AGREEMENT_CASES = [
    (SLEEP, "sleepstudy", ["auto"]),
    ("np.log(TICKS + 1) ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", "grouseticks",
     ["auto", ["BROOD"], ["LOCATION"]]),
    ("y ~ x + (1 + x | subj) + (1 | item)", None, ["auto", ["subj"], ["item"]]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("formula", "name", "plans"), AGREEMENT_CASES)
def test_marginalized_posterior_agrees_with_non_marginalized(formula, name, plans):
    data = simulate_crossed() if name is None else load(name)
    kw = dict(chains=4, draws=2000, warmup=1000, progress=False, seed=11)
    reference = lmmhmc.fit(formula, data, marginalize="none", **kw)
    for plan in plans:
        assert_posteriors_agree(lmmhmc.fit(formula, data, marginalize=plan, **kw), reference)


@pytest.mark.slow
def test_simulation_based_calibration():
    """SBC (Talts et al. 2018): ranks of sigma, one sd and one random effect are uniform.

    For each of 60 replications the parameters are drawn from the prior, data simulated, the
    marginalized model fitted (thinned to 99 draws) and the rank of the true value recorded; a
    chi-square test on 10 bins must not reject at the 0.1% level.
    """
    from scipy import stats

    base = simulate_crossed(seed=0, n_subj=6, n_item=5)
    formula = "y ~ 1 + (1 | subj) + (1 | item)"
    priors = {"Intercept": dist.Normal(0.0, 1.0), "sigma": dist.HalfNormal(1.0),
              "1|subj_sigma": dist.HalfNormal(1.0), "1|item_sigma": dist.HalfNormal(1.0)}
    rng = np.random.default_rng(5)
    ranks = {"sigma": [], "1|subj_sigma": [], "u": []}
    subj = base["subj"].astype("category").cat.codes.to_numpy()
    item = base["item"].astype("category").cat.codes.to_numpy()
    for rep in range(60):
        b0 = rng.normal()
        sigma, s_subj, s_item = np.abs(rng.normal(size=3))
        u_subj, u_item = rng.normal(0, s_subj, 6), rng.normal(0, s_item, 5)
        y = b0 + u_subj[subj] + u_item[item] + rng.normal(0, sigma, len(base))
        res = lmmhmc.fit(formula, base.assign(y=y), priors=priors, chains=1, draws=990,
                         warmup=500, progress=False, seed=rep)
        post = res.idata.posterior.isel(chain=0, draw=slice(None, None, 10))
        ranks["sigma"].append(int((post["sigma"].values < sigma).sum()))
        ranks["1|subj_sigma"].append(int((post["1|subj_sigma"].values < s_subj).sum()))
        ranks["u"].append(int((post["1|subj"].values[:, 0] < u_subj[0]).sum()))
    for name, r in ranks.items():
        counts = np.histogram(r, bins=10, range=(0, 100))[0]
        assert stats.chisquare(counts).pvalue > 1e-3, (name, counts)


def test_formula_without_random_effects_is_rejected():
    model = lmmhmc.Model("Reaction ~ Days", load("sleepstudy"))
    with pytest.raises(LmmhmcError, match="no random-effect terms"):
        model.fit()
    with pytest.raises(LmmhmcError, match="no random-effect terms"):
        model.fit_ml()
