"""Distributional models, ``[mean formula, "sigma ~ ..."]`` (DESIGN.md §7): the mean's random
effects marginalized with per-observation residual sds, log sigma's sampled."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
from numpyro.infer.util import log_density
from scipy.stats import multivariate_normal, norm

import lmmhmc
from lmmhmc.assembled import assemble
from lmmhmc.centering import centered
from lmmhmc.cli import main
from lmmhmc.errors import FormulaError, LmmhmcError
from lmmhmc.numpyro_model import (
    factors,
    residual,
    sampled_effects,
    sigma_effects,
    with_residual_sd,
)
from lmmhmc.plan import make_plan
from lmmhmc.priors import resolve_priors

MEAN = "y ~ c + (1 + c | subj) + (1 | item)"
SIGMA = "sigma ~ c + (1 + c | subj)"


def simulated(n_subj: int = 12, n_item: int = 8, seed: int = 0) -> pd.DataFrame:
    """Crossed subjects x items, c = +-1, log sigma varying by condition and subject."""
    rng = np.random.default_rng(seed)
    subj, item = np.meshgrid(np.arange(n_subj), np.arange(n_item), indexing="ij")
    subj, item = subj.ravel(), item.ravel()
    c = np.where(rng.random(subj.size) < 0.5, -1.0, 1.0)
    u = rng.normal(size=(n_subj, 2)) * [0.5, 0.2]
    v = rng.normal(size=(n_subj, 2)) * [0.3, 0.1]
    w = rng.normal(size=n_item) * 0.3
    log_sd = -0.5 + 0.2 * c + v[subj, 0] + v[subj, 1] * c
    y = 1.0 + 0.3 * c + u[subj, 0] + u[subj, 1] * c + w[item] + np.exp(log_sd) * rng.normal(
        size=subj.size)
    return pd.DataFrame({"y": y, "c": c, "subj": [f"s{j}" for j in subj],
                         "item": [f"i{j}" for j in item]})


def dense_z(term) -> np.ndarray:
    z = np.zeros((len(term.index), term.n_levels * term.d))
    for j in range(term.d):
        z[np.arange(len(term.index)), term.index * term.d + j] = term.block[:, j]
    return z


@pytest.mark.parametrize("marginalize", ["all", ["1 | item"], "none"])
def test_log_density_is_the_dense_normal(marginalize) -> None:
    """Given the parameters and log sigma's effects, the model's likelihood term is
    ``N(y | X b + Z_s u_s, diag(sigma_i^2) + Z_m G Z_m^T)`` (m: marginalized, s: sampled)."""
    data = simulated()
    design = lmmhmc.Model([MEAN, SIGMA], data).design
    plan = make_plan(design, marginalize)
    assembled = assemble(design, plan, resolve_priors(design, None))
    layout = assembled.layout
    rng = np.random.default_rng(1)
    params = {"Intercept": 0.9, "c": 0.25, "1|subj_sigma": 0.4, "c|subj_sigma": 0.3,
              "subj_corr": jnp.array([[1.0, 0.0], [0.3, np.sqrt(0.91)]]),
              "1|item_sigma": 0.35, "sigma_Intercept": -0.4, "sigma_c": 0.15,
              "sigma_1|subj_sigma": 0.3, "sigma_c|subj_sigma": 0.2,
              "sigma_subj_corr": jnp.array([[1.0, 0.0], [-0.2, np.sqrt(0.96)]])}
    for t in layout.sigma_terms + tuple(layout.terms[k] for k in layout.sampled):
        params[t.offset] = jnp.asarray(rng.normal(size=(t.n_levels, t.d)))
    lams = factors(layout, params)
    effects = sampled_effects(layout, assembled.data, params, lams)
    resid = residual(assembled.structure, assembled.data, params, effects)
    full = with_residual_sd(layout, assembled.data, params)
    if assembled.kernel is None:
        got = jnp.sum(assembled.likelihood.log_prob(resid, 0.0, full, assembled.data["w"]))
    else:
        got = assembled.likelihood.marginal_log_density(
            assembled.kernel, resid, full, [lams[k] for k in layout.marginalized])
    # the dense reference, from the formulas' meaning
    x = data["c"].to_numpy()
    subj = design.terms[0].index
    v = np.asarray(params["sigma_subj_corr"]) * np.array([0.3, 0.2])[:, None]
    v_eff = np.asarray(params["sigma_1 + c | subj_offset"]) @ v.T
    log_sd = -0.4 + 0.15 * x + v_eff[subj, 0] + v_eff[subj, 1] * x
    mean = 0.9 + 0.25 * x
    cov = np.diag(np.exp(2 * log_sd))
    for k, t in enumerate(design.terms):
        z = dense_z(t)
        if k in layout.marginalized:
            g = np.asarray(lams[k] @ lams[k].T)
            cov = cov + z @ np.kron(np.eye(t.n_levels), g) @ z.T
        else:
            mean = mean + z @ np.asarray(effects[k]).reshape(-1)
    ref = multivariate_normal.logpdf(data["y"], mean, cov)
    assert float(got) == pytest.approx(ref, rel=1e-10)


def test_names_priors_and_errors() -> None:
    data = simulated()
    model = lmmhmc.Model([MEAN, SIGMA], data)
    priors = model.priors
    assert "sigma" not in priors
    for name in ("sigma_Intercept", "sigma_c", "sigma_1|subj_sigma", "sigma_c|subj_sigma",
                 "sigma_subj_corr", "1|subj_sigma", "subj_corr"):
        assert name in priors
    assert isinstance(priors["sigma_Intercept"], dist.StudentT)
    assert float(priors["sigma_Intercept"].loc) == pytest.approx(np.log(data["y"].std(ddof=0)))
    # sampled: b (2), the mean's sds and correlation (3 + 1), log sigma's gamma (2), sds and
    # correlation (3) and its 12 x 2 effects; no sigma
    assert make_plan(model.design, "all").sampled_dims == 2 + 4 + 2 + 3 + 24
    with pytest.raises(FormulaError, match="must model the residual sd"):
        lmmhmc.Model([MEAN, "tau ~ c"], data)
    with pytest.raises(FormulaError, match="two formulas"):
        lmmhmc.Model([MEAN, SIGMA, SIGMA], data)
    with pytest.raises(LmmhmcError, match="not available for a distributional model"):
        model.fit_ml()
    data["s"] = 1.0
    with pytest.raises(FormulaError, match="one or the other"):
        lmmhmc.Model(["y | se(s) ~ c + (1 | subj)", SIGMA], data)


def test_missing_values_drop_the_same_rows_of_both_formulas() -> None:
    data = simulated()
    data.loc[3, "c"] = np.nan
    with pytest.warns(lmmhmc.errors.DataWarning, match="1 row"):
        model = lmmhmc.Model(["y ~ 1 + (1 | subj)", "sigma ~ c"], data)
    assert model.design.n_obs == model.design.sigma_part.n_obs == len(data) - 1


@pytest.mark.filterwarnings("ignore::lmmhmc.errors.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto:UserWarning")
def test_fit_and_everything_downstream(tmp_path) -> None:
    """A short fit: names, summaries, ranef of both parts, predict (mean, response, sigma;
    new levels), log-likelihood and LOO, posterior predictive, save/load, priors by name."""
    data = simulated()
    fit = lmmhmc.fit([MEAN, SIGMA], data, chains=2, draws=150, warmup=200, seed=2,
                     progress=False, posterior_predictive=True,
                     priors={"sigma_c": dist.Normal(0.0, 1.0)})
    assert fit.assembled.priors["sigma_c"].scale == 1.0
    post = fit.idata.posterior
    for name in ("sigma_Intercept", "sigma_c", "sigma_1|subj", "sigma_c|subj",
                 "sigma_1|subj_sigma", "sigma_subj_corr", "1|subj", "1|item"):
        assert name in post
    assert "sigma" not in post
    assert post["sigma_1|subj"].dims[-1] == "subj__factor_dim"
    ranef = fit.ranef()
    assert set(ranef["column"]) >= {"sigma_1|subj", "sigma_c|subj", "1|subj"}
    assert "sigma: 1 + c | subj" in set(fit.varcorr()["term"])
    assert "sigma_Intercept" in set(fit.fixef()["term"])
    coef = fit.coef()
    assert "sigma_Intercept" in set(coef["coefficient"])
    sd = fit.predict(kind="sigma", draws=20)
    assert sd.shape == (20, len(data)) and np.all(sd > 0)
    # on the training rows: exp of log sigma's linear predictor, draw by draw
    take = np.round(np.linspace(0, 299, 20)).astype(int)
    flat = {k: post[k].values.reshape(300, *post[k].shape[2:])[take] for k in
            ("sigma_Intercept", "sigma_c", "sigma_1|subj", "sigma_c|subj")}
    subj = fit.design.terms[0].index
    x = data["c"].to_numpy()
    log_sd = (flat["sigma_Intercept"][:, None] + flat["sigma_c"][:, None] * x
              + flat["sigma_1|subj"][:, subj] + flat["sigma_c|subj"][:, subj] * x)
    np.testing.assert_allclose(sd, np.exp(log_sd), rtol=1e-12)
    new = pd.DataFrame({"c": [1.0, -1.0], "subj": ["s0", "new"], "item": ["i0", "i1"]})
    assert fit.predict(new, kind="sigma", draws=10).shape == (10, 2)
    assert fit.predict(new, kind="response", draws=10).shape == (10, 2)
    with pytest.raises(LmmhmcError, match="not seen in training"):
        fit.predict(new, kind="sigma", new_levels="error")
    assert np.isfinite(fit.loo().elpd_loo)
    r2 = fit.bayes_R2(summary=False, draws=20)  # e_s: the mean of sigma_i^2 of the draw
    mu = fit.predict(kind="mean", draws=20)
    explained = mu.var(axis=1, ddof=1)
    np.testing.assert_allclose(r2, explained / (explained + np.mean(sd**2, axis=1)), rtol=1e-10)
    assert fit.idata.posterior_predictive["y"].shape[-1] == len(data)
    path = tmp_path / "fit.nc"
    fit.save(path)
    again = lmmhmc.load(path)
    np.testing.assert_allclose(again.predict(kind="sigma", draws=5),
                               fit.predict(kind="sigma", draws=5))
    titles = [ax.get_title() for ax in fit.plot_forest().axes]
    assert any("Log sigma" in t for t in titles), titles


def test_cli_sigma(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "Reaction ~ Days + (1 | Subject)", "--data", "sleepstudy",
                 "--sigma", "Days + (1 | Subject)"]) == 0
    assert "log sigma: Intercept + Days + (1 | Subject)" in capsys.readouterr().out


def test_centered_levels_of_log_sigma_have_their_prior_density() -> None:
    """Log sigma's levels sampled centered (the site is the level's whole coefficient
    ``gamma + v_j``, both columns of ``(1 + c | subj)`` being fixed effects of log sigma) or
    not (``v_j = Lambda z_j``), by level: the model's joint log density is the dense marginal
    likelihood of ``y`` given the effects ``v``, plus ``log N(v_j | 0, Lambda Lambda^T)`` at
    the centered levels and ``log N(z_j | 0, I)`` at the others, plus the priors of the
    scalars."""
    data = simulated()
    design = lmmhmc.Model([MEAN, SIGMA], data).design
    assembled = assemble(design, make_plan(design, "all"), resolve_priors(design, None))
    layout, (term,) = assembled.layout, assembled.layout.sigma_terms
    mask = np.arange(term.n_levels) % 3 == 0
    assembled = centered(assembled, {"sigma": (mask,)})
    priors = assembled.internal_priors()
    loc, unit = assembled.data["units"]["loc"], assembled.data["units"]["unit"]
    ext = {"Intercept": 0.9, "c": 0.25, "1|subj_sigma": 0.4, "c|subj_sigma": 0.3,
           "1|item_sigma": 0.35, "sigma_Intercept": -0.4, "sigma_c": 0.15,
           "sigma_1|subj_sigma": 0.3, "sigma_c|subj_sigma": 0.2}
    corr = {"subj_corr": np.array([[1.0, 0.0], [0.3, np.sqrt(0.91)]]),
            "sigma_subj_corr": np.array([[1.0, 0.0], [-0.2, np.sqrt(0.96)]])}
    lam = np.diag([0.3, 0.2]) @ corr["sigma_subj_corr"]
    site = np.random.default_rng(2).normal(size=(term.n_levels, 2))
    gamma = np.array([-0.4, 0.15])
    site[mask] = gamma + 0.25 * site[mask]  # centered levels hold gamma + v_j
    sites = {name: jnp.asarray((value - float(loc[name])) / float(unit[name]))
             for name, value in ext.items()}
    sites.update({name: jnp.asarray(c) for name, c in corr.items()})
    sites[term.offset] = jnp.asarray(site)
    got = float(log_density(assembled.numpyro_model(), (assembled.data, priors), {}, sites)[0])
    v = np.where(mask[:, None], site - gamma, site @ lam.T)
    x, subj = data["c"].to_numpy(), design.sigma_part.terms[0].index
    cov = np.diag(np.exp(2 * (-0.4 + 0.15 * x + v[subj, 0] + v[subj, 1] * x)))
    lam_u = np.diag([0.4, 0.3]) @ corr["subj_corr"]
    for t, g in zip(design.terms, [lam_u @ lam_u.T, np.array([[0.35**2]])], strict=True):
        z = dense_z(t)
        cov = cov + z @ np.kron(np.eye(t.n_levels), g) @ z.T
    want = multivariate_normal.logpdf(data["y"], 0.9 + 0.25 * x, cov)
    want += multivariate_normal(np.zeros(2), lam @ lam.T).logpdf(v[mask]).sum()
    want += norm.logpdf(site[~mask]).sum()
    want += sum(float(priors[name].log_prob(sites[name])) for name in (*ext, *corr))
    assert got == pytest.approx(want, rel=1e-10)
    # recovery reports v itself
    effects = sigma_effects(layout, assembled.data,
                            {**{n: jnp.asarray(e) for n, e in ext.items()},
                             **{n: jnp.asarray(c) for n, c in corr.items()},
                             term.offset: jnp.asarray(site)})
    np.testing.assert_allclose(effects[0], v, rtol=1e-12)
