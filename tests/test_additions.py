"""Response addition terms: brms's ``y | se(s)``, ``y | trials(n)`` and lme4's ``cbind(s, f)``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmhmc.design import build_design
from lmmhmc.errors import DataError, FormulaError
from lmmhmc.formula import Addition, parse_formula


@pytest.fixture()
def frame() -> pd.DataFrame:
    return pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 6], "s": [1.0, 2, 1, 2, 1, 2],
                         "g": list("aabbcc"), "n": [3, 4, 5, 6, 7, 8]})


@pytest.mark.parametrize(("formula", "response", "additions"), [
    ("y | se(s) ~ 1 + (1 | g)", "y", (Addition("se", ("s",), (("sigma", "FALSE"),)),)),
    ("y|se(s, sigma = TRUE)~x", "y", (Addition("se", ("s",), (("sigma", "TRUE"),)),)),
    ("y | se(s, sigma=T) ~ x", "y", (Addition("se", ("s",), (("sigma", "TRUE"),)),)),
    ("y | trials(n) ~ x", "y", (Addition("trials", ("n",)),)),
    ("cbind(inc, size - inc) ~ x", "inc", (Addition("trials", ("(inc) + (size - inc)",)),)),
    ("y | se(s) + trials(n) ~ x", "y",
     (Addition("se", ("s",), (("sigma", "FALSE"),)), Addition("trials", ("n",)))),
    ("log(y) ~ x", "log(y)", ()),
])
def test_additions_are_parsed(formula: str, response: str, additions: tuple) -> None:
    parsed = parse_formula(formula)
    assert (parsed.response, parsed.additions) == (response, additions)


@pytest.mark.parametrize(("formula", "match"), [
    ("y | weights(w) ~ 1", "pass weights=.w. instead"),
    ("y | cens(c) ~ 1", "supports se\\(\\), trials\\(\\)"),
    ("y | se(s, foo = 1) ~ 1", "no argument 'foo'"),
    ("y | se(s, sigma = maybe) ~ 1", "TRUE or FALSE"),
    ("y | se(a, b) ~ 1", "one column"),
    ("y | ~ 1", "nothing after"),
    ("y | se(s) - trials(n) ~ 1", "cannot be subtracted"),
    ("y | se(s) | trials(n) ~ 1", "more than one"),
    ("cbind(a) ~ 1", "successes and failures"),
    ("y | se(s) + se(t) ~ 1", "twice"),
    ("cbind(a, b) | trials(n) ~ 1", "trials twice"),
])
def test_malformed_additions(formula: str, match: str) -> None:
    with pytest.raises(FormulaError, match=match):
        parse_formula(formula)


def test_design_evaluates_the_additions(frame: pd.DataFrame) -> None:
    design = build_design("y | se(2 * s, sigma = TRUE) ~ 1 + (1 | g)", frame)
    np.testing.assert_array_equal(design.se, 2 * frame["s"])
    assert design.se_sigma and design.trials is None
    design = build_design("cbind(y, n - y) ~ 1 + (1 | g)", frame)
    np.testing.assert_array_equal(design.trials, frame["n"])
    np.testing.assert_array_equal(design.y, frame["y"])
    assert design.se is None and not design.se_sigma


def test_rows_missing_an_addition_are_dropped(frame: pd.DataFrame) -> None:
    frame.loc[2, "s"] = np.nan
    with pytest.warns(UserWarning, match="1 row has missing values"):
        design = build_design("y | se(s) ~ 1 + (1 | g)", frame)
    np.testing.assert_array_equal(design.se, frame["s"].drop(2))


@pytest.mark.parametrize(("formula", "match"), [
    ("y | se(s - 1.5) ~ 1 + (1 | g)", "finite and positive; it is not in 3 rows .*0, 2, 4"),
    ("cbind(y, y - n) ~ 1 + (1 | g)", "non-negative integers; it is not in 1 row "),
    ("y | trials(n / 2) ~ 1 + (1 | g)", "non-negative integers"),
    ("y | se(g) ~ 1 + (1 | g)", "must be numeric"),
])
def test_bad_addition_values(frame: pd.DataFrame, formula: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        build_design(formula, frame)


@pytest.mark.parametrize(("formula", "match"), [
    ("cbind(y, n - y) ~ 1 + (1 | g)", "needs family='binomial', not 'gaussian'"),
])
def test_an_addition_the_family_cannot_use_is_an_error(frame: pd.DataFrame, formula: str,
                                                       match: str) -> None:
    import lmmhmc

    with pytest.raises(FormulaError, match=match):
        lmmhmc.Model(formula, frame)
