"""FitResult: header, summary, fixef / ranef / varcorr, LOO, WAIC and compare."""

from __future__ import annotations

import copy
import dataclasses
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
    assert list(table.columns) == ["term", "group", "level", "column", "mean", "sd",
                                   "hdi_lower", "hdi_upper"]
    assert len(table) == 2 * 18
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


def test_repr_is_a_short_overview(sleepstudy_fit) -> None:
    text = repr(sleepstudy_fit)
    assert text.startswith(sleepstudy_fit.header())
    assert "Fixed effects" in text and "Days|Subject_sigma" in text
    assert "ess_bulk" not in text and "1|Subject[308]" not in text
    assert len(text.splitlines()) < 25


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
    assert no_random.ranef().empty and len(no_random.ranef().columns) == 8
    assert list(no_random.varcorr()["parameter"]) == ["sigma"]
    with pytest.raises(LmmhmcError, match="no random effects to plot"):
        no_random.plot_ranef()
