"""Fuzzing: random formulas, column types and missing values at Model and Model.fit_ml.

Whatever the input, only lmmhmc's own errors (LmmhmcError subclasses) and warnings
(LmmhmcWarning subclasses) may come out, each with a message: never a traceback from pandas,
formulaic, NumPy or JAX.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmmhmc
from lmmhmc.errors import LmmhmcError, LmmhmcWarning

COLUMNS = ("y", "a", "b", "c", "d")
# Kinds of the columns used as grouping factors (a, d) and as predictors (b, c, y): mostly
# the usual ones, sometimes any other.
FACTOR_KINDS = ("str", "int", "category", "str", "int", "category", "bool", "mixed", "nan",
                "float")
NUMBER_KINDS = ("float", "int", "float", "int", "float", "bool", "str", "category", "mixed",
                "nan")


def _column(kind: str, n: int, rng: np.random.Generator) -> pd.Series:
    """One column of ``kind`` with ``n`` rows of few distinct values (so that groups repeat)."""
    small = rng.integers(0, 4, n)
    values = {
        "int": lambda: pd.Series(small),
        "float": lambda: pd.Series(rng.normal(size=n)),
        "str": lambda: pd.Series([f"l{v}" for v in small]),
        "category": lambda: pd.Series(pd.Categorical([f"k{v}" for v in small])),
        "bool": lambda: pd.Series(small > 1),
        "mixed": lambda: pd.Series([v if v % 2 else f"s{v}" for v in small], dtype=object),
        "nan": lambda: pd.Series(np.full(n, np.nan)),
    }
    return values[kind]()


@st.composite
def frames(draw) -> pd.DataFrame:
    n = draw(st.integers(1, 40).map(lambda k: 41 - k))  # shrinks towards 40 rows
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    data = {name: _column(draw(st.sampled_from(FACTOR_KINDS if name in "ad" else NUMBER_KINDS)),
                          n, rng) for name in COLUMNS}
    data["y"] = pd.Series(rng.normal(size=n)) if draw(st.integers(0, 4)) else data["y"]
    frame = pd.DataFrame(data)
    for name in draw(st.lists(st.sampled_from(COLUMNS), max_size=2, unique=True)):
        share = draw(st.sampled_from([0.05, 0.1, 0.3, 1.0]))
        frame[name] = frame[name].where(rng.random(n) >= share)
    return frame


VARIABLES = st.sampled_from(["b", "c", "d", "a", "C(a)", "center(b)", "a:b", "scale(b)", "1",
                             "b", "c", "log(c)", "np.exp(d)", "I(a ** 2)", "a * b", "0", "y",
                             "missing", "Y"])
GARBAGE = st.sampled_from(["", "+", ")", "(", "|", "||", "~", "@", "a |", "(1 | )", "/", ":",
                           "1 +", "(0 | a)", "(1 | a", "lambda: 1", "a[0]", "'a'"])


@st.composite
def bars(draw) -> str:
    lhs = draw(st.sampled_from(["1", "1", "b", "1 + b", "0 + c", "a", "C(b)", "center(c)",
                                "x"]))
    factor = draw(st.sampled_from(["a", "d", "a", "d", "b", "c", "a/b", "a:b", "a/c/d", "y",
                                   "z"]))
    bar = draw(st.sampled_from(["|", "||"]))
    return f"({lhs} {bar} {factor})"


@st.composite
def formulas(draw) -> str:
    """Mostly well-formed formulas (so that many reach fit_ml), some with garbage.

    Hypothesis starts from the smallest choices, so these are the well-formed ones.
    """
    response = draw(st.sampled_from(["y"] * 6 + ["log(y)", "a", "missing", "y + a", ""]))
    fixed = draw(st.lists(VARIABLES, max_size=3))
    terms = draw(st.lists(bars(), min_size=int(draw(st.integers(0, 4)) < 4), max_size=2))
    garbage = draw(st.lists(GARBAGE, max_size=1)) if draw(st.integers(0, 3)) == 3 else []
    parts = [*fixed, *terms, *garbage]
    return f"{response} ~ " + " + ".join(draw(st.permutations(parts)))


def _assert_own(exc: BaseException) -> None:
    assert isinstance(exc, LmmhmcError), f"{type(exc).__name__}: {exc}"
    assert str(exc).strip()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(formula=formulas(), data=frames(), ml=st.integers(0, 2).map(lambda k: k < 2))
def test_only_lmmhmc_errors_and_warnings_come_out(formula: str, data: pd.DataFrame,
                                                  ml: bool) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = lmmhmc.Model(formula, data)
            if ml:
                model.fit_ml(starts=1)
        except Exception as exc:  # noqa: BLE001 - the point: which exceptions come out
            _assert_own(exc)
    for w in caught:
        assert issubclass(w.category, LmmhmcWarning), f"{w.category.__name__}: {w.message}"
        assert str(w.message).strip()
