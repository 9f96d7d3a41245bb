"""Centered and non-centered levels of sampled terms: the density and the choice."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro.infer.util import log_density
from scipy.stats import multivariate_normal, norm

import lmmhmc
from lmmhmc.assembled import assemble
from lmmhmc.centering import (
    CENTER_BELOW,
    centered,
    choose,
    describe,
    level_ratios,
    log_sigma_sds,
)
from lmmhmc.datasets import load
from lmmhmc.ml import fit_ml
from lmmhmc.plan import make_plan
from lmmhmc.priors import resolve_priors

SLEEP = "Reaction ~ Days + (Days | Subject)"


def _sleepstudy_sampled():
    model = lmmhmc.Model(SLEEP, load("sleepstudy"))
    design = model.design
    return model, assemble(design, make_plan(design, "none"), resolve_priors(design, None))


def test_mixed_levels_have_the_density_of_the_random_effects_by_change_of_variables():
    """log p(theta, v) of the sampler, some levels centered (v_j = beta + u_j: the level's
    whole coefficients, as both of (Days | Subject)'s columns are fixed effects) and the others
    not (v_j = z_j, u_j = Lambda z_j), equals the dense joint density of (theta, u) plus
    log|det Lambda| per non-centered level (the Jacobian of u_j = Lambda z_j)."""
    model, assembled = _sleepstudy_sampled()
    design, layout = model.design, assembled.layout
    term = layout.terms[0]
    mask = np.arange(term.n_levels) % 3 == 0  # levels 0, 3, 6, ... centered
    assembled = centered(assembled, {0: mask})
    priors = assembled.internal_priors()
    loc, unit = assembled.data["units"]["loc"], assembled.data["units"]["unit"]
    rng = np.random.default_rng(3)
    got, want = [], []
    for sd, rho in ((20.0, 0.3), (35.0, -0.5)):  # two values of theta
        ext = {layout.fixed[0]: 250.0, layout.fixed[1]: 10.0, layout.sigma: 25.0,
               term.sds[0]: sd, term.sds[1]: sd / 4}
        chol = np.linalg.cholesky(np.array([[1.0, rho], [rho, 1.0]]))
        lam = np.diag([ext[term.sds[0]], ext[term.sds[1]]]) @ chol
        beta = np.array([250.0, 10.0])
        v = rng.normal(size=(term.n_levels, 2)) * np.where(mask[:, None], [sd, sd / 4], 1.0)
        v += np.where(mask[:, None], beta, 0.0)
        sites = {name: jnp.asarray((value - float(loc[name])) / float(unit[name]))
                 for name, value in ext.items()}
        sites[term.corr] = jnp.asarray(chol)
        sites[term.offset] = jnp.asarray(v)
        got.append(float(log_density(assembled.numpyro_model(), (assembled.data, priors), {},
                                     sites)[0]))
        # the dense reference: y | u ~ N(X beta + Z u, sigma^2), u_j ~ N(0, Lambda Lambda^T)
        u = np.where(mask[:, None], v - beta, v @ lam.T)
        t = design.terms[0]
        mu = design.X @ beta + np.sum(u[t.index] * t.block, axis=1)
        ref = norm.logpdf(design.y, mu, 25.0).sum()
        ref += multivariate_normal(np.zeros(2), lam @ lam.T).logpdf(u).sum()
        ref += np.sum(~mask) * np.log(np.linalg.det(lam))
        # the priors of theta, on the sampler's scale (as the sites carry them)
        ref += sum(float(priors[name].log_prob(sites[name])) for name in ext)
        ref += float(priors[term.corr].log_prob(sites[term.corr]))
        want.append(ref)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_level_ratios_are_posterior_over_prior_variance():
    """r_j = the largest eigenvalue of Lambda^-1 C_j Lambda^-T with C_j = (G^-1 + B_j^T B_j /
    sigma^2)^-1 the conditional posterior covariance of u_j (dense per level), and
    1 / (1 + n_j tau^2 / sigma^2) for a random intercept."""
    model, _ = _sleepstudy_sampled()
    design = model.design
    lam = np.array([[24.0, 0.0], [1.0, 5.5]])
    got = level_ratios(design.terms[0], np.full(design.n_obs, 25.0**-2), lam)
    t = design.terms[0]
    want = []
    for j in range(len(t.levels)):
        b = t.block[t.index == j]
        cov = np.linalg.inv(np.linalg.inv(lam @ lam.T) + b.T @ b / 25.0**2)
        white = np.linalg.solve(lam, np.linalg.solve(lam, cov).T)
        want.append(np.linalg.eigvalsh(white).max())
    np.testing.assert_allclose(got, want, rtol=1e-10)
    intercept = lmmhmc.Model("Reaction ~ Days + (1 | Subject)", load("sleepstudy")).design
    n_j = np.bincount(intercept.terms[0].index)
    np.testing.assert_allclose(level_ratios(intercept.terms[0], np.full(design.n_obs, 25.0**-2),
                                            np.array([[7.0]])),
                               1 / (1 + n_j * 49.0 / 625.0), rtol=1e-12)


def test_log_sigma_sds_recover_the_simulated_ones():
    """The moment estimate of log sigma's sds from the homoscedastic ML fit's residuals, on
    300 subjects x 120 rows with log sigma_i = -0.5 + 0.2 c_i + v_j0 + v_j1 c_i, sds 0.4 and
    0.2: within 15 % (the estimate's spread over 300 levels is about 5 %)."""
    rng = np.random.default_rng(11)
    n_subj, per = 300, 120
    subj = np.repeat(np.arange(n_subj), per)
    c = np.tile([-1.0, 1.0], n_subj * per // 2)
    v = rng.normal(size=(n_subj, 2)) * [0.4, 0.2]
    u = rng.normal(size=n_subj) * 0.3
    log_sd = -0.5 + 0.2 * c + v[subj, 0] + v[subj, 1] * c
    y = 1.0 + 0.1 * c + u[subj] + np.exp(log_sd) * rng.normal(size=subj.size)
    data = pd.DataFrame({"y": y, "c": c, "subj": [f"s{j}" for j in subj]})
    design = lmmhmc.Model(["y ~ c + (1 | subj)", "sigma ~ c + (1 + c | subj)"], data).design
    assembled = assemble(design, make_plan(design, "auto"), resolve_priors(design, None))
    ml = fit_ml(design, starts=1, kernel=assembled.ml_kernel)  # the fit's homoscedastic start
    (sds,) = log_sigma_sds(assembled, ml)
    np.testing.assert_allclose(sds, [0.4, 0.2], rtol=0.15)
    # information 2 per row against these sds: every subject's data dominate its prior
    assert choose(assembled, ml, "auto")["sigma"][0].all()


@pytest.fixture(scope="module")
def unbalanced() -> pd.DataFrame:
    """A random intercept with 60 observations in half the levels and 2 in the others."""
    rng = np.random.default_rng(7)
    sizes = np.array([60] * 8 + [2] * 8)
    g = np.repeat(np.arange(sizes.size), sizes)
    y = 1.0 + rng.normal(0.0, 1.0, sizes.size)[g] + rng.normal(0.0, 1.0, g.size)
    return pd.DataFrame({"y": y, "g": [f"g{j:02d}" for j in g]})


def test_auto_centers_the_levels_whose_data_dominate(unbalanced: pd.DataFrame):
    model = lmmhmc.Model("y ~ 1 + (1 | g)", unbalanced)
    design = model.design
    assembled = assemble(design, make_plan(design, "none"), resolve_priors(design, None))
    ml = model.fit_ml()
    ratios = level_ratios(design.terms[0], np.full(design.n_obs, ml.sigma**-2), ml.factors[0])
    levels = choose(assembled, ml, "auto")[0]
    np.testing.assert_array_equal(levels, ratios < CENTER_BELOW)
    # 60 observations: r ~ 1 / (1 + 60 tau^2 / sigma^2) < 1/2; 2 observations: r > 1/2 here
    sizes = np.bincount(design.terms[0].index)
    np.testing.assert_array_equal(levels, sizes == 60)
    assert choose(assembled, ml, "none")[0].sum() == 0
    assert choose(assembled, ml, "all")[0].all()
    assert choose(assembled, None, "auto")[0].sum() == 0  # no ML fit (init="prior")


@pytest.mark.filterwarnings("ignore::lmmhmc.errors.ConvergenceWarning")
def test_a_fit_reports_and_keeps_its_centered_levels(unbalanced: pd.DataFrame, tmp_path,
                                                     crossed_fit):
    res = lmmhmc.fit("y ~ 1 + (1 | g)", unbalanced, marginalize="none", chains=2, draws=150,
                     warmup=150, seed=1, progress=False)
    assert "Sampled terms: (1 | g): 8 of 16 levels centered" in res.header()
    assert res.settings["centering"] == "auto"
    path = tmp_path / "fit.nc"
    res.save(path)
    assert "Sampled terms: (1 | g): 8 of 16 levels centered" in lmmhmc.load(path).header()
    # every term marginalized (the shared fit of conftest.py): no line about sampled terms
    assert crossed_fit.plan.sampled == ()
    assert "Sampled terms" not in crossed_fit.header()


@pytest.mark.slow
def test_centered_and_non_centered_sample_the_same_posterior(unbalanced: pd.DataFrame):
    """Posterior means of the sd and of every random effect agree between all-centered and
    all-non-centered sampling within 4 combined Monte-Carlo standard errors."""
    kw = dict(marginalize="none", chains=4, draws=1000, warmup=1000, seed=2, progress=False)
    runs = [lmmhmc.fit("y ~ 1 + (1 | g)", unbalanced, centering=c, **kw)
            for c in ("all", "none")]
    import arviz as az

    names = ["1|g_sigma", "1|g"]
    a, b = (az.summary(r.idata, var_names=names, kind="all") for r in runs)
    gap = np.abs(a["mean"] - b["mean"]) / np.hypot(a["mcse_mean"], b["mcse_mean"])
    assert gap.max() < 4, gap.sort_values().tail()


@pytest.fixture(scope="module")
def nested() -> pd.DataFrame:
    """12 classes (``g``) nested in 4 schools (``h``), 10 pupils each, and a crossed ``k``."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(12), 10)
    h = g // 3
    y = 2.0 + rng.normal(0.0, 0.5, 4)[h] + rng.normal(0.0, 1.0, 12)[g] + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "g": [f"g{j:02d}" for j in g], "h": [f"h{j}" for j in h],
                         "k": [f"k{j % 5}" for j in range(g.size)]})


def test_a_nested_term_finds_its_parent_and_auto_never_splits_them(nested: pd.DataFrame):
    """``Design.parents``: the school of each class for ``(1 | g)``, none for the coarser or
    crossed terms, none for a child with other columns; the plan leaves a parent sampled when
    its child is (InstEval: ``(1 | dept)`` with ``(1 | d)``)."""
    design = lmmhmc.Model("y ~ 1 + (1 | g) + (1 | h) + (1 | k)", nested).design
    parents = design.parents()
    assert parents[0][0] == 1 and parents[1] is None and parents[2] is None
    np.testing.assert_array_equal(parents[0][1], np.arange(12) // 3)
    slopes = nested.assign(x=np.linspace(-1.0, 1.0, len(nested)))
    assert lmmhmc.Model("y ~ x + (1 + x | g) + (1 | h)", slopes).design.parents() == [None, None]
    inst = lmmhmc.Model("y ~ service + (1 | s) + (1 | d) + (1 | dept)", load("InstEval")).design
    plan = make_plan(inst, "auto")
    assert [plan.labels[k] for k in plan.marginalized] == ["1 | s"]
    layout = assemble(inst, plan, resolve_priors(inst, None)).layout
    assert layout.terms[1].parent == 2 and layout.terms[2].parent is None


def test_levels_centered_around_a_sampled_parent_have_the_density_of_the_effects(
        nested: pd.DataFrame):
    """log p(theta, v) with the classes' sites centered around their school's effect
    (``v_j = u_p(j) + u_j``), some levels of both terms centered and the others not, equals
    the dense joint density of (theta, u) plus log sd per non-centered level (the Jacobian of
    u_j = sd z_j; that of v_j = u_p(j) + u_j is 1)."""
    design = lmmhmc.Model("y ~ 1 + (1 | g) + (1 | h)", nested).design
    assembled = assemble(design, make_plan(design, "none"), resolve_priors(design, None))
    layout = assembled.layout
    child, parent = layout.terms
    assert child.parent == 1
    masks = {0: np.arange(12) % 2 == 0, 1: np.array([True, False, True, False])}
    assembled = centered(assembled, masks)
    assert describe(assembled).startswith("(1 | g) around (1 | h): 6 of 12 levels centered")
    priors = assembled.internal_priors()
    loc, unit = assembled.data["units"]["loc"], assembled.data["units"]["unit"]
    rng = np.random.default_rng(8)
    ext = {"Intercept": 1.5, layout.sigma: 0.9, child.sds[0]: 1.2, parent.sds[0]: 0.4}
    sites = {name: jnp.asarray((value - float(loc[name])) / float(unit[name]))
             for name, value in ext.items()}
    v_h, v_g = rng.normal(size=(4, 1)), rng.normal(size=(12, 1))
    sites[parent.offset], sites[child.offset] = jnp.asarray(v_h), jnp.asarray(v_g)
    got = float(log_density(assembled.numpyro_model(), (assembled.data, priors), {}, sites)[0])
    # the intercept is inside the schools' sites (the root of the hierarchy) and so inside the
    # classes' (Design.level_means)
    u_h = np.where(masks[1][:, None], v_h - 1.5, 0.4 * v_h)
    u_g = np.where(masks[0][:, None], v_g - 1.5 - u_h[np.arange(12) // 3], 1.2 * v_g)
    g, h = (t.index for t in design.terms)
    want = norm.logpdf(design.y, 1.5 + u_g[g, 0] + u_h[h, 0], 0.9).sum()
    want += norm.logpdf(u_g, 0.0, 1.2).sum() + norm.logpdf(u_h, 0.0, 0.4).sum()
    want += np.sum(~masks[0]) * np.log(1.2) + np.sum(~masks[1]) * np.log(0.4)
    want += sum(float(priors[name].log_prob(sites[name])) for name in ext)
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.slow
def test_levels_centered_around_their_parent_sample_the_exact_posterior():
    """Both nested terms sampled, the levels centered by ``"auto"`` (the classes around their
    school), against both marginalized and recovered exactly: posterior means of the sds, the
    intercept and every random effect agree within 4 combined Monte-Carlo standard errors."""
    import arviz as az

    rng = np.random.default_rng(6)  # 8 schools (sd 2) of 4 classes (sd 1) of 30 pupils
    g = np.repeat(np.arange(32), 30)
    y = 1.0 + rng.normal(0.0, 2.0, 8)[g // 4] + rng.normal(size=32)[g] + rng.normal(size=g.size)
    data = pd.DataFrame({"y": y, "g": [f"g{j:02d}" for j in g], "h": [f"h{j}" for j in g // 4]})
    kw = dict(chains=4, draws=1000, warmup=1000, seed=3, progress=False)
    formula = "y ~ 1 + (1 | g) + (1 | h)"
    sampled = lmmhmc.fit(formula, data, marginalize="none", **kw)
    assert "(1 | g) around (1 | h): 32 of 32 levels centered" in sampled.header()
    assert sampled.n_divergences == 0
    exact = lmmhmc.fit(formula, data, marginalize="all", **kw)
    names = ["Intercept", "1|g_sigma", "1|h_sigma", "1|g", "1|h"]
    a, b = (az.summary(r.idata, var_names=names, kind="all") for r in (sampled, exact))
    gap = np.abs(a["mean"] - b["mean"]) / np.hypot(a["mcse_mean"], b["mcse_mean"])
    assert gap.max() < 4, gap.sort_values().tail()
