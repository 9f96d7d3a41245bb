"""Offsets: ``offset(expr)`` in the formula and the ``offset=`` argument.

The independent reference is the model without the offset fitted to ``y - o``: for the
Gaussian model the two are the same model, so their ML estimates agree to rounding and, with
the same seed, so do their posterior draws.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmhmc
from lmmhmc.cli import main
from lmmhmc.design import build_design
from lmmhmc.errors import ConvergenceWarning, DataError, FormulaError, LmmhmcError
from lmmhmc.formula import parse_formula
from lmmhmc.scaling import units

FORMULA = "Reaction ~ Days + (Days | Subject)"
OFFSET_FORMULA = "Reaction ~ Days + offset(np.log(n)) + offset(o) + (Days | Subject)"


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    """sleepstudy with two offset columns, and the response shifted by them as ``shifted``."""
    frame = lmmhmc.datasets.load("sleepstudy").copy()
    rng = np.random.default_rng(3)
    frame["n"] = rng.integers(1, 20, len(frame)).astype(float)
    frame["o"] = rng.normal(0.0, 30.0, len(frame))
    # rounded as the design rounds y - o (o the sum of the offsets, in formula order)
    frame["shifted"] = frame["Reaction"] - (np.log(frame["n"]) + frame["o"])
    return frame


@pytest.fixture(scope="module")
def fits(data, fit_settings) -> dict[str, lmmhmc.FitResult]:
    """The reference fit of ``y - o`` and the same model with the offset in the formula and
    as an argument (the column ``total``)."""
    with_total = data.assign(total=np.log(data["n"]) + data["o"])
    with warnings.catch_warnings():  # short chains: convergence is not the point here
        warnings.simplefilter("ignore", ConvergenceWarning)
        return {
            "reference": lmmhmc.fit("shifted ~ Days + (Days | Subject)", data, seed=4,
                                    **fit_settings),
            "formula": lmmhmc.fit(OFFSET_FORMULA, data, seed=4, **fit_settings),
            "argument": lmmhmc.fit(FORMULA, with_total, offset="total", seed=4,
                                   **fit_settings),
        }


# ------------------------------------------------------------------ formula and design


def test_parse_offsets() -> None:
    parsed = parse_formula("y ~ offset(a) + x + offset(np.log(n + 1)) + (1 | g)")
    assert parsed.fixed == "x"
    assert parsed.offsets == ("a", "np.log(n + 1)")
    assert parse_formula("y ~ 0 + offset(a) + (1 | g)").fixed == "0"
    assert parse_formula("y ~ offset(a) + (1 | g)").fixed == "1"
    assert parse_formula("y ~ x + (1 | g)").offsets == ()


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ x - offset(a) + (1 | g)", "cannot be subtracted"),
        ("y ~ x + offset() + (1 | g)", "is empty"),
        ("y ~ x + offset(a) * b + (1 | g)", "must be a separate term"),
        ("y ~ x + offset(a | g)", "random-effect bar"),
    ],
)
def test_malformed_offsets(formula: str, message: str) -> None:
    with pytest.raises(FormulaError, match=message):
        parse_formula(formula)


def test_design_offset_adds_terms_and_argument(data) -> None:
    design = build_design(OFFSET_FORMULA, data, offset=np.ones(len(data)))
    np.testing.assert_allclose(design.offset, np.log(data["n"]) + data["o"] + 1.0, rtol=1e-15)
    np.testing.assert_array_equal(design.offset_argument, np.ones(len(data)))
    assert design.offset_terms == ("np.log(n)", "o") and design.has_offset
    np.testing.assert_array_equal(design.shifted_y, design.y - design.offset)
    plain = build_design(FORMULA, data)
    np.testing.assert_array_equal(plain.offset, np.zeros(len(data)))
    assert plain.offset_argument is None and not plain.has_offset
    assert "with offset" in repr(lmmhmc.Model(OFFSET_FORMULA, data))


def test_encode_evaluates_the_formula_offsets(data) -> None:
    design = build_design(OFFSET_FORMULA, data, offset="o")
    new = data.iloc[:5].drop(columns=["Reaction"]).assign(n=[1.0, 2.0, 4.0, 8.0, 16.0])
    # the argument offset is not the encoding's: predict adds it
    np.testing.assert_allclose(design.encode(new).offset, np.log(new["n"]) + new["o"])
    np.testing.assert_array_equal(build_design(FORMULA, data).encode(new).offset, np.zeros(5))
    with pytest.raises(DataError, match="column 'n' not found in new data"):
        design.encode(new.drop(columns=["n"]))


def test_rows_with_a_missing_offset_are_dropped(data) -> None:
    frame = data.copy()
    frame.loc[[2, 7], "n"] = np.nan
    with pytest.warns(UserWarning, match=r"2 rows have missing values \(in 'n'\)"):
        design = build_design(OFFSET_FORMULA, frame)
    assert design.n_obs == len(data) - 2
    np.testing.assert_allclose(design.offset, np.delete(np.log(data["n"]) + data["o"], [2, 7]))
    array = np.where(np.arange(len(data)) == 5, np.nan, 1.0)
    with pytest.warns(UserWarning, match=r"1 row has missing values \(in 'offset'\)"):
        design = build_design(FORMULA, data, offset=array)
    assert design.n_obs == len(data) - 1
    np.testing.assert_array_equal(design.offset, np.ones(len(data) - 1))
    with pytest.raises(DataError, match="missing values"):
        build_design(OFFSET_FORMULA, frame, na_action="raise")


@pytest.mark.parametrize(
    ("formula", "offset", "message"),
    [
        (FORMULA, "Subject", "offset column 'Subject' is not numeric"),
        (FORMULA, "nope", "column 'nope' not found in data"),
        (FORMULA, np.ones(3), "offset must be a vector of length 180"),
        (FORMULA, np.r_[np.inf, np.zeros(179)], "offset argument has non-finite values"),
        (FORMULA, np.array(["a"] * 180), "offset must be numeric"),
        ("Reaction ~ Days + offset(Subject) + (1 | Subject)", None,
         r"offset 'offset\(Subject\)' must be numeric"),
        ("Reaction ~ Days + offset(np.log(n - 1)) + (1 | Subject)", None,
         r"offset 'offset\(np.log\(n - 1\)\)' has non-finite values"),
    ],
)
def test_bad_offsets(data, formula: str, offset, message: str) -> None:
    with pytest.raises(DataError, match=message):
        build_design(formula, data, offset=offset)


def test_response_minus_offset_must_vary(data) -> None:
    with pytest.raises(DataError, match="minus the offset is constant"):
        _ = lmmhmc.Model(FORMULA, data, offset="Reaction").priors


# ------------------------------------------------------------------ ML and the posterior


@pytest.mark.parametrize("reml", [False, True])
def test_ml_with_an_offset_is_ml_of_the_shifted_response(data, reml: bool) -> None:
    reference = lmmhmc.Model("shifted ~ Days + (Days | Subject)", data).fit_ml(reml=reml)
    total = np.log(data["n"]) + data["o"]
    for model in (lmmhmc.Model(OFFSET_FORMULA, data),
                  lmmhmc.Model(FORMULA, data, offset=total.to_numpy())):
        ml = model.fit_ml(reml=reml)
        assert ml.objective == pytest.approx(reference.objective, rel=1e-10)
        np.testing.assert_allclose(ml.beta.values, reference.beta.values, rtol=1e-8)
        np.testing.assert_allclose(ml.theta, reference.theta, rtol=1e-8, atol=1e-10)
        assert ml.sigma == pytest.approx(reference.sigma, rel=1e-8)


def test_units_and_priors_are_those_of_the_shifted_response(data) -> None:
    reference = lmmhmc.Model("shifted ~ Days + (Days | Subject)", data)
    model = lmmhmc.Model(OFFSET_FORMULA, data)
    expected, got = units(reference.design), units(model.design)
    for name, unit in expected.unit.items():
        assert got.unit[name] == pytest.approx(unit, rel=1e-12)
        assert got.loc[name] == pytest.approx(expected.loc[name], rel=1e-12, abs=1e-12)
    assert str(model.priors) == str(reference.priors)


@pytest.mark.parametrize("form", ["formula", "argument"])
def test_posterior_with_an_offset_is_that_of_the_shifted_response(fits, form: str) -> None:
    reference, fit = fits["reference"].idata.posterior, fits[form].idata.posterior
    assert set(fit.data_vars) == set(reference.data_vars)
    for name in reference.data_vars:  # the same compiled program on the same numbers
        np.testing.assert_array_equal(fit[name].values, reference[name].values, err_msg=name)
    loglik = fits[form].idata.log_likelihood
    np.testing.assert_allclose(loglik["Reaction"].values,
                               fits["reference"].idata.log_likelihood["shifted"].values,
                               rtol=1e-8, atol=1e-8)


@pytest.mark.filterwarnings("ignore::lmmhmc.errors.ConvergenceWarning")
def test_sampled_terms_see_the_offset(data, fit_settings) -> None:
    """With the random effects sampled, the residual ``y - X beta - o - Z u`` is computed per
    observation (rounded differently from ``(y - o) - X beta - Z u``): the posterior means agree
    within Monte-Carlo error."""
    formula = "Reaction ~ Days + offset(np.log(n)) + offset(o) + (1 | Subject)"
    fit = lmmhmc.fit(formula, data, marginalize="none", seed=5, **fit_settings)
    reference = lmmhmc.fit("shifted ~ Days + (1 | Subject)", data, marginalize="none",
                           seed=5, **fit_settings)
    for name in ("Intercept", "Days", "sigma"):
        got, expected = fit.idata.posterior[name].values, reference.idata.posterior[name].values
        assert abs(got.mean() - expected.mean()) < 0.5 * expected.std(), name


@pytest.mark.parametrize("form", ["formula", "argument"])
def test_predict_on_training_rows_adds_the_offset(fits, data, form: str) -> None:
    total = (np.log(data["n"]) + data["o"]).to_numpy()
    reference = fits["reference"]
    np.testing.assert_allclose(fits[form].predict(), reference.predict() + total,
                               rtol=1e-8, atol=1e-6)
    np.testing.assert_allclose(fits[form].predict(include_random=False),
                               reference.predict(include_random=False) + total,
                               rtol=1e-8, atol=1e-6)


def test_predict_new_data_adds_the_formula_offset(fits, data) -> None:
    new = data.iloc[:6].drop(columns=["Reaction", "shifted"])
    new = new.assign(n=np.arange(1.0, 7.0), o=np.linspace(-5.0, 5.0, 6))
    total = np.log(new["n"]).to_numpy() + new["o"].to_numpy()
    np.testing.assert_allclose(fits["formula"].predict(new),
                               fits["reference"].predict(new) + total, rtol=1e-8, atol=1e-6)
    draws = fits["formula"].predict(new, kind="response", seed=2)
    reference = fits["reference"].predict(new, kind="response", seed=2)
    np.testing.assert_allclose(draws, reference + total, rtol=1e-8, atol=1e-6)


def test_predict_new_data_needs_the_argument_offset(fits, data) -> None:
    fit = fits["argument"]
    new = data.iloc[:4].drop(columns=["Reaction", "shifted"]).assign(total=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises(LmmhmcError, match="fitted with an offset= argument"):
        fit.predict(new)
    expected = fits["reference"].predict(new) + new["total"].to_numpy()
    np.testing.assert_allclose(fit.predict(new, offset="total"), expected, rtol=1e-8,
                               atol=1e-6)
    np.testing.assert_allclose(fit.predict(new, offset=new["total"].to_numpy()), expected,
                               rtol=1e-8, atol=1e-6)
    with pytest.raises(DataError, match="offset must be 4 finite numbers"):
        fit.predict(new, offset=[1.0, np.nan, 0.0, 0.0])
    with pytest.raises(DataError, match="offset column 'nope' not found in new data"):
        fit.predict(new, offset="nope")
    with pytest.raises(LmmhmcError, match="offset= applies to newdata"):
        fit.predict(offset="total")


def test_save_and_load_keep_the_offset(fits, tmp_path: Path) -> None:
    for form in ("formula", "argument"):
        path = tmp_path / f"{form}.nc"
        fits[form].save(path)
        loaded = lmmhmc.load(path)
        np.testing.assert_array_equal(loaded.design.offset, fits[form].design.offset)
        np.testing.assert_array_equal(loaded.predict(draws=5), fits[form].predict(draws=5))


def test_cli_offset_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.csv"
    path.write_text("y,o,g\n1,0.5,a\n2,0.1,a\n3,2,b\n5,1,b\n")
    assert main(["describe", "y ~ 1 + (1 | g)", "--data", str(path), "--offset", "o"]) == 0
    assert "with offset" in capsys.readouterr().out
    assert main(["describe", "y ~ 1 + (1 | g)", "--data", str(path), "--offset", "g"]) == 2
    assert "offset column 'g' is not numeric" in capsys.readouterr().err
