"""FitResult: header, summary, fixef / ranef / varcorr, LOO, WAIC and compare."""

from __future__ import annotations

import copy
import dataclasses
import html
import warnings

import arviz as az
import numpy as np
import pytest
from scipy.special import logsumexp

import lmmhmc
from lmmhmc.errors import LmmhmcError
from lmmhmc.layout import parameter_layout

PARAMETERS = ["Intercept", "Days", "sigma", "1|Subject_sigma", "Days|Subject_sigma",
              "Subject_corr[1|Subject, Days|Subject]"]


def _with_idata(result, edit):
    """A copy of `result` whose InferenceData was changed in place by ``edit(idata)``."""
    idata = copy.deepcopy(result.idata)
    edit(idata)
    return dataclasses.replace(result, idata=idata)


def test_summary_rows_and_values(sleepstudy_fit) -> None:
    table = sleepstudy_fit.summary()
    assert list(table.index) == PARAMETERS
    for column in ["mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "ess_bulk", "ess_tail",
                   "r_hat"]:
        assert column in table.columns
    post = sleepstudy_fit.idata.posterior
    assert table.loc["Days", "mean"] == pytest.approx(float(post["Days"].mean()), abs=1e-3)
    assert table.loc["sigma", "sd"] == pytest.approx(float(post["sigma"].std(ddof=1)), abs=1e-3)
    assert (table["r_hat"] < 1.1).all() and (table["ess_bulk"] > 50).all()
    assert "hdi_5%" in sleepstudy_fit.summary(hdi_prob=0.9).columns

    full = sleepstudy_fit.summary(random_effects=True)
    assert len(full) == len(PARAMETERS) + 2 * 18
    assert "1|Subject[308]" in full.index and "Days|Subject[372]" in full.index


def test_print_summary_starts_with_the_header(sleepstudy_fit, capsys) -> None:
    sleepstudy_fit.print_summary()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Formula: Reaction ~ Days + (Days | Subject)"
    assert lines[1] == "Observations: 180"
    assert lines[2].startswith("Plan: marginalized: (Days | Subject)")
    assert lines[3] == ("Sampler: NUTS, 2 chains x 200 draws (warm-up 200), "
                        "target_accept=0.8, seed=1")
    assert lines[4] == f"Divergences: {sleepstudy_fit.n_divergences}"
    assert lines[5].startswith("Convergence: max R-hat")
    assert lines[7].split()[:2] == ["mean", "sd"]
    assert lines[8].startswith("Intercept")


def test_header_advises_on_divergences_and_tree_depth(sleepstudy_fit) -> None:
    def spoil(idata):
        idata.sample_stats["diverging"].values[0, :3] = True
        idata.sample_stats["tree_depth"].values[1, :2] = 10

    header = _with_idata(sleepstudy_fit, spoil).header()
    assert "Divergences: 3 of 400 draws (0.8%)" in header
    assert "higher target_accept" in header
    assert "Tree depth: 2 draws hit max_tree_depth=10" in header


def test_fixef_equals_posterior_means(sleepstudy_fit) -> None:
    post = sleepstudy_fit.idata.posterior
    table = sleepstudy_fit.fixef()
    assert list(table.columns) == ["term", "mean", "sd", "hdi_lower", "hdi_upper"]
    assert list(table["term"]) == ["Intercept", "Days"]
    for _, row in table.iterrows():
        draws = post[row["term"]]
        assert row["mean"] == pytest.approx(float(draws.mean()), rel=1e-12)
        assert row["sd"] == pytest.approx(float(np.std(draws.values, ddof=1)), rel=1e-12)
        hdi = az.hdi(draws.values.ravel(), hdi_prob=0.94)
        assert [row["hdi_lower"], row["hdi_upper"]] == pytest.approx(list(hdi), rel=1e-12)
    assert table.attrs["hdi_prob"] == 0.94
    # the same numbers as the summary, up to its rounding
    summary = sleepstudy_fit.summary()
    np.testing.assert_allclose(table["mean"], summary.loc[["Intercept", "Days"], "mean"],
                               atol=1e-3)
    narrow = sleepstudy_fit.fixef(hdi_prob=0.5)
    assert (narrow["hdi_upper"] - narrow["hdi_lower"] < table["hdi_upper"] - table["hdi_lower"]
            ).all()


def test_ranef_per_level_and_column(sleepstudy_fit) -> None:
    post = sleepstudy_fit.idata.posterior
    table = sleepstudy_fit.ranef()
    assert list(table.columns) == ["term", "group", "level", "column", "coefficient", "mean",
                                   "sd", "hdi_lower", "hdi_upper"]
    assert len(table) == 2 * 18
    assert list(table["coefficient"].unique()) == ["Intercept", "Days"]
    assert set(table["term"]) == {"Days | Subject"} and set(table["group"]) == {"Subject"}
    assert list(table["column"].unique()) == ["1|Subject", "Days|Subject"]
    levels = list(sleepstudy_fit.design.terms[0].levels)
    assert list(table["level"][:18]) == levels
    row = table[(table["level"] == "309") & (table["column"] == "Days|Subject")].iloc[0]
    draws = post["Days|Subject"].sel(Subject__factor_dim="309")
    assert row["mean"] == pytest.approx(float(draws.mean()), rel=1e-12)
    assert row["hdi_lower"] < row["mean"] < row["hdi_upper"]
    # subject 309 barely reacts to sleep deprivation: a clearly negative slope effect
    assert row["hdi_upper"] < 0


def test_ranef_crossed_terms(crossed_fit) -> None:
    table = crossed_fit.ranef()
    assert list(table.groupby("group", sort=False).size().items()) == [("subj", 20),
                                                                       ("item", 15)]
    post = crossed_fit.idata.posterior
    item = table[table["group"] == "item"]
    np.testing.assert_allclose(item["mean"], post["1|item"].mean(dim=("chain", "draw")).values,
                               rtol=1e-12)


def test_varcorr_matches_posterior(sleepstudy_fit) -> None:
    post = sleepstudy_fit.idata.posterior
    table = sleepstudy_fit.varcorr()
    assert list(table["parameter"]) == PARAMETERS[3:] + ["sigma"]
    assert list(table["kind"]) == ["sd", "sd", "corr", "sd"]
    assert list(table["group"]) == ["Subject"] * 3 + ["Residual"]
    corr = table[table["kind"] == "corr"].iloc[0]
    assert (corr["var1"], corr["var2"]) == ("1|Subject", "Days|Subject")
    assert corr["mean"] == pytest.approx(float(post["Subject_corr"].mean()), rel=1e-12)
    assert -1 < corr["hdi_lower"] < corr["hdi_upper"] < 1
    for name in ["1|Subject_sigma", "Days|Subject_sigma", "sigma"]:
        row = table[table["parameter"] == name].iloc[0]
        assert row["mean"] == pytest.approx(float(post[name].mean()), rel=1e-12)
        assert row["hdi_lower"] > 0
    # the parameter names are the summary's row names
    assert set(table["parameter"]) <= set(sleepstudy_fit.summary().index)


def test_varcorr_uncorrelated_terms(crossed_fit) -> None:
    table = crossed_fit.varcorr()
    assert list(table["parameter"]) == ["1|subj_sigma", "1|item_sigma", "sigma"]
    assert table["var2"].isna().all()


def test_repr_is_a_short_overview(sleepstudy_fit, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # no header line wraps
    text = repr(sleepstudy_fit)
    assert text.startswith(sleepstudy_fit.header())
    assert "Fixed effects" in text and "Days|Subject_sigma" in text
    # no per-level rows (a convergence warning in the header may name a level)
    assert "ess_bulk" not in text
    assert not any(line.split()[:1] == ["1|Subject[308]"] for line in text.splitlines())
    assert len(text.splitlines()) < 25


def test_repr_fits_the_terminal_width(sleepstudy_fit, monkeypatch) -> None:
    """Long header lines (plan, convergence) wrap with an indent, tables in blocks."""
    monkeypatch.setenv("COLUMNS", "60")
    text = repr(sleepstudy_fit)
    assert max(map(len, text.splitlines())) <= 60
    assert text.startswith("Formula: Reaction ~ Days + (Days | Subject)\nObservations: 180\n")
    joined = " ".join(line.strip() for line in text.splitlines())
    for line in sleepstudy_fit.header().splitlines():  # every word of the header is there
        assert " ".join(line.split()) in joined


def test_html_repr_for_notebooks(sleepstudy_fit) -> None:
    page = sleepstudy_fit._repr_html_()
    header = html.escape(sleepstudy_fit.header())
    assert page.startswith(f"<div>\n<pre>{header}</pre>")
    assert "Fixed effects (posterior mean, sd, 94% HDI):" in page
    fixed = sleepstudy_fit.fixef()
    assert page.count("<table") == 2
    for term, mean in zip(fixed["term"], fixed["mean"], strict=True):
        assert f"<th>{term}</th>" in page and f"{mean:.4g}" in page
    assert "<th>Days|Subject_sigma</th>" in page


def test_loo_and_waic_give_the_elpd(sleepstudy_fit) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k warnings of the conditional likelihood
        loo = sleepstudy_fit.loo()
        waic = sleepstudy_fit.waic()
    loglik = sleepstudy_fit.idata.log_likelihood["Reaction"].values.reshape(400, 180)
    lppd = float(np.sum(logsumexp(loglik, axis=0) - np.log(400)))
    assert np.isfinite(loo["elpd_loo"]) and loo["elpd_loo"] < lppd
    assert loo["p_loo"] == pytest.approx(lppd - loo["elpd_loo"])
    assert loo["n_data_points"] == 180
    assert waic["elpd_waic"] == pytest.approx(loo["elpd_loo"], abs=5.0)


def test_loo_needs_the_log_likelihood(sleepstudy_fit) -> None:
    stripped = _with_idata(sleepstudy_fit, lambda idata: delattr(idata, "log_likelihood"))
    for method in (stripped.loo, stripped.waic):
        with pytest.raises(LmmhmcError, match="log_likelihood=False"):
            method()
    with pytest.raises(LmmhmcError, match="no pointwise log-likelihood"):
        lmmhmc.compare({"a": sleepstudy_fit, "b": stripped})


def test_compare_ranks_fits(sleepstudy_fit) -> None:
    def worse(idata):  # one nat less per observation: elpd_loo drops by exactly N
        idata.log_likelihood["Reaction"] = idata.log_likelihood["Reaction"] - 1.0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = lmmhmc.compare({"worse": _with_idata(sleepstudy_fit, worse),
                                "fit": sleepstudy_fit})
        elpd = sleepstudy_fit.loo()["elpd_loo"]
    assert list(table.index) == ["fit", "worse"]
    assert table.loc["worse", "elpd_diff"] == pytest.approx(180.0)
    assert table.loc["fit", "elpd_loo"] == pytest.approx(elpd)


def _with_model(result, model):
    """``result`` relabelled with the names of ``model`` (its design and parameter layout)."""
    assembled = result.assembled
    structure = dataclasses.replace(assembled.structure, layout=parameter_layout(model.design))
    assembled = dataclasses.replace(assembled, design=model.design, structure=structure)
    return dataclasses.replace(result, model=model, assembled=assembled)


def test_tables_of_models_without_fixed_or_random_effects(sleepstudy_fit) -> None:
    # only the names in the design matter here: reuse the sleepstudy posterior
    data = sleepstudy_fit.model.data
    no_fixed = _with_model(sleepstudy_fit, lmmhmc.Model("Reaction ~ 0 + (Days | Subject)", data))
    assert no_fixed.fixef().empty
    assert list(no_fixed.fixef().columns) == ["term", "mean", "sd", "hdi_lower", "hdi_upper"]
    no_random = _with_model(sleepstudy_fit, lmmhmc.Model("Reaction ~ Days", data))
    assert no_random.ranef().empty and len(no_random.ranef().columns) == 9
    assert no_random.coef().empty
    assert list(no_random.varcorr()["parameter"]) == ["sigma"]
    with pytest.raises(LmmhmcError, match="no random effects to plot"):
        no_random.plot_ranef()


def _stats(draws: np.ndarray, hdi_prob: float = 0.94) -> list[float]:
    """Mean, sd (ddof=1) and HDI of draws over all axes."""
    flat = np.ravel(draws)
    return [flat.mean(), flat.std(ddof=1), *az.hdi(flat, hdi_prob=hdi_prob)]


def test_coef_is_fixed_plus_random_effect_per_draw(sleepstudy_fit) -> None:
    post = sleepstudy_fit.idata.posterior
    table = sleepstudy_fit.coef(hdi_prob=0.9)
    assert list(table.columns) == list(sleepstudy_fit.ranef().columns)
    assert table.attrs["hdi_prob"] == 0.9 and len(table) == 2 * 18
    levels = list(post["Subject__factor_dim"].values)
    for fixed, random in [("Intercept", "1|Subject"), ("Days", "Days|Subject")]:
        part = table[table["column"] == random]
        assert list(part["level"]) == levels and set(part["coefficient"]) == {fixed}
        draws = post[fixed].values[..., None] + post[random].values  # (chain, draw, level)
        expected = [_stats(draws[..., j], 0.9) for j in range(len(levels))]
        np.testing.assert_allclose(part[["mean", "sd", "hdi_lower", "hdi_upper"]], expected,
                                   rtol=1e-10)
    # subject 309's own slope is far below the population's
    slope = table[(table["level"] == "309") & (table["coefficient"] == "Days")].iloc[0]
    assert slope["mean"] < 5 < float(post["Days"].mean())


def test_coef_without_a_fixed_counterpart_is_the_random_effect(sleepstudy_fit) -> None:
    model = lmmhmc.Model("Reaction ~ 0 + Days + (Days | Subject)", sleepstudy_fit.model.data)
    table = _with_model(sleepstudy_fit, model).coef()
    ranef = sleepstudy_fit.ranef()
    intercepts = table["column"] == "1|Subject"
    np.testing.assert_allclose(table.loc[intercepts, "mean"],
                               ranef.loc[intercepts, "mean"], rtol=1e-12)
    assert not np.allclose(table.loc[~intercepts, "mean"], ranef.loc[~intercepts, "mean"])


def test_coef_of_crossed_intercepts(crossed_fit) -> None:
    post = crossed_fit.idata.posterior
    table = crossed_fit.coef()
    item = table[table["group"] == "item"]
    expected = (post["Intercept"] + post["1|item"]).mean(dim=("chain", "draw")).values
    np.testing.assert_allclose(item["mean"], expected, rtol=1e-12)


def _sleepstudy_mu(result) -> np.ndarray:
    """Linear predictor of every draw and observation, from the posterior arrays: (S, N)."""
    post = result.idata.posterior
    data = result.model.data
    levels = list(post["Subject__factor_dim"].values)
    j = np.array([levels.index(str(s)) for s in data["Subject"]])
    days = data["Days"].to_numpy(dtype=float)

    def flat(name):
        values = post[name].values
        return values.reshape((-1,) + values.shape[2:])

    return (flat("Intercept")[:, None] + flat("Days")[:, None] * days
            + flat("1|Subject")[:, j] + flat("Days|Subject")[:, j] * days)


def test_bayes_r2_per_draw(sleepstudy_fit) -> None:
    mu = _sleepstudy_mu(sleepstudy_fit)
    sigma = sleepstudy_fit.idata.posterior["sigma"].values.ravel()
    explained = np.var(mu, axis=1, ddof=1)
    expected = explained / (explained + sigma**2)
    draws = sleepstudy_fit.bayes_R2(summary=False)
    np.testing.assert_allclose(draws, expected, rtol=1e-9)
    table = sleepstudy_fit.bayes_R2(hdi_prob=0.9)
    assert list(table.index) == ["R2"] and table.attrs["hdi_prob"] == 0.9
    np.testing.assert_allclose(table.loc["R2"], _stats(expected, 0.9), rtol=1e-9)
    assert 0.6 < table.loc["R2", "mean"] < 0.9
    # brms's variant: the variance of the realized residuals
    y = sleepstudy_fit.model.data["Reaction"].to_numpy()
    residual = np.var(y - mu, axis=1, ddof=1)
    np.testing.assert_allclose(sleepstudy_fit.bayes_R2(summary=False, residuals=True),
                               explained / (explained + residual), rtol=1e-9)
    # a subset of evenly spaced draws
    take = lmmhmc.predict.draw_indices(400, 50)
    np.testing.assert_allclose(sleepstudy_fit.bayes_R2(summary=False, draws=50), expected[take],
                               rtol=1e-9)


def test_bayes_r2_with_weights_averages_the_residual_variance(sleepstudy_fit) -> None:
    data = sleepstudy_fit.model.data
    w = np.linspace(0.5, 2.0, len(data))
    weighted = _with_model(sleepstudy_fit, lmmhmc.Model(sleepstudy_fit.model.formula, data,
                                                        weights=w))
    explained = np.var(_sleepstudy_mu(sleepstudy_fit), axis=1, ddof=1)
    sigma2 = sleepstudy_fit.idata.posterior["sigma"].values.ravel() ** 2
    np.testing.assert_allclose(weighted.bayes_R2(summary=False),
                               explained / (explained + sigma2 * np.mean(1 / w)), rtol=1e-9)


def test_hypothesis_matches_the_posterior_fractions(sleepstudy_fit) -> None:
    post = sleepstudy_fit.idata.posterior
    days, icpt = post["Days"].values.ravel(), post["Intercept"].values.ravel()
    sd0, sd1 = (post[n].values.ravel() for n in ["1|Subject_sigma", "Days|Subject_sigma"])
    u309 = post["Days|Subject"].sel(Subject__factor_dim="309").values.ravel()
    corr = post["Subject_corr"].values.ravel()
    cases = {  # hypothesis: (lhs - rhs per draw, the fraction it states)
        "Days > 5": (days - 5, np.mean(days > 5)),
        "Days >= 5": (days - 5, np.mean(days > 5)),
        "12 < Days": (12 - days, np.mean(days > 12)),
        "Intercept - 250 = 0": (icpt - 250, np.nan),
        "Intercept == 25 * (Days / 1)": (icpt - 25 * days, np.nan),
        "1|Subject_sigma > 2 * Days|Subject_sigma": (sd0 - 2 * sd1, np.mean(sd0 > 2 * sd1)),
        "Days + Days|Subject[309] < 0": (days + u309, np.mean(days + u309 < 0)),
        "Subject_corr[1|Subject, Days|Subject] > 0": (corr, np.mean(corr > 0)),
        "-Days < -5": (5 - days, np.mean(days > 5)),
    }
    table = sleepstudy_fit.hypothesis(list(cases), hdi_prob=0.9)
    assert list(table.columns) == ["hypothesis", "mean", "sd", "hdi_lower", "hdi_upper",
                                   "excludes_zero", "post_prob", "evid_ratio"]
    assert list(table["hypothesis"]) == list(cases) and table.attrs["hdi_prob"] == 0.9
    for (_, row), (delta, prob) in zip(table.iterrows(), cases.values(), strict=True):
        stats = _stats(delta, 0.9)
        np.testing.assert_allclose(row[["mean", "sd", "hdi_lower", "hdi_upper"]].astype(float),
                                   stats, rtol=1e-10, atol=1e-12)
        assert row["excludes_zero"] == (stats[2] > 0 or stats[3] < 0)
        np.testing.assert_equal(row["post_prob"], prob)
        with np.errstate(divide="ignore"):
            np.testing.assert_equal(row["evid_ratio"], prob / (1 - prob))
    one = sleepstudy_fit.hypothesis("Days > 5")
    assert len(one) == 1 and one["post_prob"].iloc[0] == np.mean(days > 5)


def test_hypothesis_names_with_brackets_and_parentheses(crossed_fit) -> None:
    post = crossed_fit.idata.posterior
    effect = post["cond[T.b]"].values.ravel()
    slope = post["center(x)"].values.ravel()
    table = crossed_fit.hypothesis(["cond[T.b] > 0", "center(x) - cond[T.b] < 0.1"])
    assert table["post_prob"].tolist() == [np.mean(effect > 0), np.mean(slope - effect < 0.1)]
    assert table["mean"].iloc[1] == pytest.approx(np.mean(slope - effect - 0.1), rel=1e-10)


@pytest.mark.parametrize(("text", "message"), [
    ("Days", "needs exactly one comparison"),
    ("Days > 1 > 0", "found 2"),
    ("Dayz > 1", "unknown parameter 'Dayz' in hypothesis 'Dayz > 1'; did you mean 'Days'"),
    ("Days|Subject[999] > 0", "unknown parameter 'Days|Subject\\[999\\]'"),
    ("Days|Subjct_sigma > 0", "unknown parameter 'Days|Subjct_sigma'; did you mean"),
    ("__import__('os').system('true') > 0", "only parameter names, numbers"),
    ("Days ** 2 > 1", "only parameter names, numbers"),
    ("Days > 'a'", "only parameter names, numbers"),
    ("Days > ", "only parameter names, numbers"),
])
def test_hypothesis_refuses_anything_else(sleepstudy_fit, text: str, message: str) -> None:
    with pytest.raises(LmmhmcError, match=message):
        sleepstudy_fit.hypothesis(text)


def test_printed_tables_wrap_at_the_terminal_width(sleepstudy_fit, capsys,
                                                  monkeypatch) -> None:
    summary = sleepstudy_fit.summary()
    monkeypatch.setenv("COLUMNS", "70")
    sleepstudy_fit.print_summary()
    table = capsys.readouterr().out.split("\n\n", 1)[1]
    assert max(len(line) for line in table.splitlines()) <= 70
    for column in summary.columns:  # every column is shown, none elided
        assert column in table
    assert "..." not in table
    monkeypatch.setenv("COLUMNS", "200")
    sleepstudy_fit.print_summary()
    assert capsys.readouterr().out.endswith(summary.to_string() + "\n")

