"""Building the design: values of y, X and the tree-structured terms, and every input check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lmmhmc
from lmmhmc import datasets
from lmmhmc.design import build_design
from lmmhmc.errors import ArgumentError, DataError, FormulaError


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return datasets.load("sleepstudy")


@pytest.fixture
def toy() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame(
        {
            "y": rng.normal(size=n) + 5,
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "cond": np.tile(["a", "b", "c"], n // 3),
            "g": np.repeat(np.arange(6), n // 6),
            "h": np.tile(["p", "q", "r", "s"], n // 4),
            "w": rng.uniform(0.5, 2.0, size=n),
        }
    )


def test_sleepstudy_random_slopes(sleep: pd.DataFrame) -> None:
    d = build_design("Reaction ~ Days + (Days | Subject)", sleep)
    assert d.n_obs == 180 and d.X.shape == (180, 2)
    assert d.x_names == ["Intercept", "Days"]
    assert d.response == "Reaction"
    np.testing.assert_array_equal(d.y, sleep["Reaction"].to_numpy())
    np.testing.assert_array_equal(d.X[:, 1], sleep["Days"].to_numpy())
    (t,) = d.terms
    assert (t.n_levels, t.d, t.correlated) == (18, 2, True)
    assert t.columns == ["1|Subject", "Days|Subject"]
    assert t.text == "Days | Subject" and t.factor == "Subject"
    assert t.levels[0] == "308" and t.levels[-1] == "372"
    assert t.index.dtype == np.int32 and t.index.shape == (180,)
    assert t.block.dtype == np.float64 and t.block.shape == (180, 2)
    first = t.block[t.index == 0]
    np.testing.assert_array_equal(first.T @ first, [[10.0, 45.0], [45.0, 285.0]])
    assert d.weights is None and d.n_dropped == 0


@pytest.mark.parametrize(("formula", "want"), [
    ("Reaction ~ Days + (Days | Subject)", [[1.0, 0.0], [0.0, 1.0]]),
    ("Reaction ~ 0 + Days + (Days | Subject)", [[0.0], [1.0]]),
    ("Reaction ~ Days + (1 | Subject)", [[1.0, 0.0]]),
    ("Reaction ~ 1 + (0 + Days | Subject)", [[0.0]]),
])
def test_fixed_selection_picks_the_fixed_columns_of_a_term(sleep: pd.DataFrame, formula: str,
                                                           want: list) -> None:
    """S[j, i] = 1 where the term's column j is the fixed column i (what hierarchical
    centering puts inside a level's site)."""
    d = build_design(formula, sleep)
    np.testing.assert_array_equal(d.terms[0].fixed_selection(d.X, d.x_names), want)
    # same name, other values: not selected
    other = d.X + 1.0
    assert not d.terms[0].fixed_selection(other, d.x_names).any()


def test_level_means_leave_out_columns_that_several_terms_share(sleep: pd.DataFrame) -> None:
    """Hierarchical centering's S_k: a column of one term only is inside its levels, one that
    crossed terms share (their intercept) in none."""
    d = build_design("y ~ service + (1 | s) + (1 | d) + (1 | dept)", datasets.load("InstEval"))
    assert all(not s.any() for s in d.level_means())
    # counted among the departments (the root) only: the intercept is inside them and inside
    # the instructors nested in them (centered around their department)
    means = d.level_means([2])
    np.testing.assert_array_equal(means[1], [[1.0, 0.0]])
    np.testing.assert_array_equal(means[2], [[1.0, 0.0]])
    sleep = sleep.assign(half=(sleep["Days"] > 4).astype(str))
    d = build_design("Reaction ~ Days + (Days | Subject) + (1 | half)", sleep)
    np.testing.assert_array_equal(d.level_means()[0], [[0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(d.level_means()[1], [[0.0, 0.0]])
    d = build_design("Reaction ~ Days + (Days | Subject)", sleep)
    np.testing.assert_array_equal(d.level_means()[0], np.eye(2))


def test_insteval_three_crossed_terms() -> None:
    d = build_design("y ~ service + (1 | s) + (1 | d) + (1 | dept)", datasets.load("InstEval"))
    assert d.X.shape == (73421, 2)
    assert d.x_names == ["Intercept", "service[T.1]"]
    assert [t.n_levels for t in d.terms] == [2972, 1128, 14]
    assert [t.columns for t in d.terms] == [["1|s"], ["1|d"], ["1|dept"]]
    assert all(t.d == 1 and not t.correlated for t in d.terms)
    assert np.bincount(d.terms[0].index, minlength=2972).min() > 0


def test_uncorrelated_terms(sleep: pd.DataFrame) -> None:
    (t,) = build_design("Reaction ~ Days + (Days || Subject)", sleep).terms
    assert t.d == 2 and not t.correlated
    assert t.columns == ["1|Subject", "Days|Subject"]
    assert t.text == "Days || Subject"


def test_interaction_factor_on_cake() -> None:
    d = build_design("angle ~ recipe * temperature + (1 | recipe:replicate)", datasets.load("cake"))
    (t,) = d.terms
    assert t.n_levels == 45 and t.factor == "recipe:replicate"
    assert list(t.levels[:3]) == ["A:1", "A:2", "A:3"] and t.levels[-1] == "C:15"
    assert t.columns == ["1|recipe:replicate"]
    assert d.X.shape == (270, 18)
    assert np.all(np.bincount(t.index) == 6)


def test_nested_factors() -> None:
    # 3 schools, 4 classes in each, the class labels 1..4 reused across schools
    data = pd.DataFrame(
        {
            "y": np.arange(48.0) % 7,
            "school": np.repeat(["s1", "s2", "s3"], 16),
            "class": np.tile(np.repeat([1, 2, 3, 4], 4), 3),
        }
    )
    d = build_design("y ~ 1 + (1 | school/class)", data)
    assert [t.factor for t in d.terms] == ["school", "school:class"]
    assert [t.n_levels for t in d.terms] == [3, 12]
    assert [t.columns for t in d.terms] == [["1|school"], ["1|school:class"]]
    assert d.terms[1].levels[4] == "s2:1"
    np.testing.assert_array_equal(d.terms[1].index, np.repeat(np.arange(12), 4))


@pytest.mark.parametrize("lhs", ["0 + x", "-1 + x", "x - 1"])
def test_slope_without_intercept(toy: pd.DataFrame, lhs: str) -> None:
    (t,) = build_design(f"y ~ x + ({lhs} | g)", toy).terms
    assert t.d == 1 and t.columns == ["x|g"] and not t.correlated
    np.testing.assert_array_equal(t.block[:, 0], toy["x"].to_numpy())


def test_slope_implies_intercept(toy: pd.DataFrame) -> None:
    (t,) = build_design("y ~ x + (x | g)", toy).terms
    assert t.columns == ["1|g", "x|g"]
    np.testing.assert_array_equal(t.block[:, 0], 1.0)


def test_two_terms_on_the_same_factor(toy: pd.DataFrame) -> None:
    d = build_design("y ~ x + (1 | g) + (0 + x | g)", toy)
    assert [t.columns for t in d.terms] == [["1|g"], ["x|g"]]
    np.testing.assert_array_equal(d.terms[0].index, d.terms[1].index)


def test_categorical_slope_columns(toy: pd.DataFrame) -> None:
    (t,) = build_design("y ~ cond + (1 + cond | h)", toy).terms
    assert t.columns == ["1|h", "cond[T.b]|h", "cond[T.c]|h"]
    (t,) = build_design("y ~ cond + (0 + cond | h)", toy).terms
    assert t.columns == ["cond[a]|h", "cond[b]|h", "cond[c]|h"]


def test_log_response(toy: pd.DataFrame) -> None:
    d = build_design("log(y) ~ x + (1 | g)", toy)
    assert d.response == "log(y)"
    np.testing.assert_allclose(d.y, np.log(toy["y"].to_numpy()), rtol=0, atol=0)


def test_numpy_response_transform_on_grouseticks() -> None:
    data = datasets.load("grouseticks")
    d = build_design("np.log(TICKS + 1) ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", data)
    np.testing.assert_array_equal(d.y, np.log(data["TICKS"].to_numpy() + 1))
    assert d.x_names == ["Intercept", "YEAR[T.96]", "YEAR[T.97]", "cHEIGHT"]
    assert [t.n_levels for t in d.terms] == [118, 63]


def test_categorical_fixed_predictor_uses_treatment_contrasts(toy: pd.DataFrame) -> None:
    d = build_design("y ~ cond + x + (1 | g)", toy)
    assert d.x_names == ["Intercept", "cond[T.b]", "cond[T.c]", "x"]
    np.testing.assert_array_equal(d.X[:, 1], (toy["cond"] == "b").to_numpy())
    np.testing.assert_array_equal(d.X[:, 2], (toy["cond"] == "c").to_numpy())


def test_interactions_and_transforms_in_fixed_part(toy: pd.DataFrame) -> None:
    d = build_design("y ~ center(x) * z + I(x**2) + np.exp(x) + C(g) + (1 | h)", toy)
    x, z = toy["x"].to_numpy(), toy["z"].to_numpy()
    names = d.x_names
    np.testing.assert_allclose(d.X[:, names.index("I(x ** 2)")], x**2)
    np.testing.assert_allclose(d.X[:, names.index("center(x)")], x - x.mean())
    np.testing.assert_allclose(d.X[:, names.index("center(x):z")], (x - x.mean()) * z)
    np.testing.assert_allclose(d.X[:, names.index("np.exp(x)")], np.exp(x))
    assert "C(g)[T.1]" in names and "C(g)[T.0]" not in names


@pytest.mark.parametrize("formula", ["y ~ (1 | g)", "y ~ 1 + (1 | g)"])
def test_intercept_only(toy: pd.DataFrame, formula: str) -> None:
    d = build_design(formula, toy)
    assert d.x_names == ["Intercept"]
    np.testing.assert_array_equal(d.X, np.ones((60, 1)))


@pytest.mark.parametrize("formula", ["y ~ 0 + (1 | g)", "y ~ -1 + (1 | g)"])
def test_no_fixed_effects(toy: pd.DataFrame, formula: str) -> None:
    d = build_design(formula, toy)
    assert d.X.shape == (60, 0) and d.x_names == []


def test_weights_by_column_and_array(toy: pd.DataFrame) -> None:
    d = build_design("y ~ x + (1 | g)", toy, weights="w")
    np.testing.assert_array_equal(d.weights, toy["w"].to_numpy())
    d = build_design("y ~ x + (1 | g)", toy, weights=np.full(60, 2.0))
    np.testing.assert_array_equal(d.weights, 2.0)


def test_level_labels_and_order() -> None:
    data = pd.DataFrame({"y": np.arange(6.0), "g": [10.0, 9.0, 10.0, 9.0, 100.0, 100.0]})
    (t,) = build_design("y ~ (1 | g)", data).terms
    assert list(t.levels) == ["9", "10", "100"]  # numeric order, integral floats as integers
    np.testing.assert_array_equal(t.index, [1, 0, 1, 0, 2, 2])


def test_categorical_levels_follow_category_order_and_drop_unused() -> None:
    g = pd.Categorical(["b", "a", "b", "a"], categories=["c", "b", "a"])
    (t,) = build_design("y ~ (1 | g)", pd.DataFrame({"y": [1.0, 2, 3, 4], "g": g})).terms
    assert list(t.levels) == ["b", "a"]
    np.testing.assert_array_equal(t.index, [0, 1, 0, 1])


@settings(max_examples=30, deadline=None)
@given(
    a=st.lists(st.sampled_from(["u", "v", "w"]), min_size=4, max_size=30),
    b=st.lists(st.integers(0, 3), min_size=30, max_size=30),
)
def test_levels_of_index_reproduce_the_data(a: list[str], b: list[int]) -> None:
    n = len(a)
    if len(set(a)) < 2:
        a = ["u", "v"] * (n // 2) + ["u"] * (n % 2)
    data = pd.DataFrame({"y": np.arange(float(n)), "a": a, "b": b[:n]})
    t1, t2 = build_design("y ~ (1 | a) + (1 | a:b)", data).terms
    np.testing.assert_array_equal(t1.levels[t1.index], data["a"].to_numpy(dtype=str))
    expected = [f"{x}:{y}" for x, y in zip(data["a"], data["b"], strict=True)]
    np.testing.assert_array_equal(t2.levels[t2.index], expected)
    assert sorted(t2.levels) == sorted(set(expected))
    assert list(t2.levels) == sorted(set(expected), key=lambda s: (s[0], int(s[2:])))


# --- encode -------------------------------------------------------------------------------


def test_encode_reproduces_training_data(toy: pd.DataFrame) -> None:
    formula = "log(y) ~ center(x) * cond + (1 + scale(z) | g) + (0 + x | g:h) + (1 | h)"
    d = build_design(formula, toy)
    new = d.encode(toy.drop(columns="y"))
    np.testing.assert_array_equal(new.X, d.X)
    assert new.n_obs == 60
    for t, index, block in zip(d.terms, new.index, new.block, strict=True):
        assert index.dtype == np.int32
        np.testing.assert_array_equal(index, t.index)
        np.testing.assert_array_equal(block, t.block)


def test_encode_reuses_training_transforms_and_flags_new_levels(toy: pd.DataFrame) -> None:
    d = build_design("y ~ center(x) + cond + (1 | g) + (1 | g:h)", toy)
    new = pd.DataFrame({"x": [0.0, 1.0], "cond": ["c", "a"], "g": [3, 99], "h": ["p", "p"]})
    enc = d.encode(new)
    np.testing.assert_allclose(enc.X[:, d.x_names.index("center(x)")], [0, 1] - toy["x"].mean())
    cond = [d.x_names.index("cond[T.b]"), d.x_names.index("cond[T.c]")]
    np.testing.assert_array_equal(enc.X[:, cond], [[0, 1], [0, 0]])
    assert enc.index[0][0] == 3 and enc.index[0][1] == -1
    assert d.terms[1].levels[enc.index[1][0]] == "3:p" and enc.index[1][1] == -1


def test_encode_missing_grouping_value_is_an_unseen_level(toy: pd.DataFrame) -> None:
    d = build_design("y ~ x + (1 | h)", toy)
    enc = d.encode(pd.DataFrame({"x": [0.0, 1.0], "h": ["q", None]}))
    np.testing.assert_array_equal(enc.index[0], [1, -1])


def test_encode_errors(toy: pd.DataFrame) -> None:
    d = build_design("y ~ center(x) + cond + (1 + z | g)", toy)
    with pytest.raises(DataError, match="column 'x' not found in new data"):
        d.encode(toy.drop(columns=["x"]))
    with pytest.raises(DataError, match="column 'z' not found in new data"):
        d.encode(toy.drop(columns=["z"]))
    with pytest.raises(DataError, match="column 'g' not found in new data"):
        d.encode(toy.drop(columns=["g"]))
    with pytest.raises(DataError, match="categorical level not seen in training.*'zz'"):
        d.encode(toy.assign(cond="zz"))
    with pytest.raises(DataError, match=r"non-finite.*'center\(x\)'"):
        d.encode(toy.assign(x=np.nan))


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "match"),
    [
        (
            "Reacton ~ Days + (Days | Subject)",
            "column 'Reacton' not found in data; did you mean 'Reaction'",
        ),
        ("Reaction ~ Dayz + (Days | Subject)", "column 'Dayz' not found.*'Days'"),
        ("Reaction ~ center(Dayz) + (1 | Subject)", "column 'Dayz' not found.*'Days'"),
        ("Reaction ~ Days + (Dayz | Subject)", "column 'Dayz' not found.*'Days'"),
        ("Reaction ~ Days + (Days | Subjct)", "column 'Subjct' not found.*'Subject'"),
        ("Reaction ~ Days + (1 | Subject:Dayz)", "column 'Dayz' not found"),
        ("log(Reacton) ~ Days + (1 | Subject)", "column 'Reacton' not found"),
    ],
)
def test_unknown_column(sleep: pd.DataFrame, formula: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        build_design(formula, sleep)


def test_unknown_weights_column(sleep: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="column 'wieghts' not found"):
        build_design("Reaction ~ Days + (1 | Subject)", sleep, weights="wieghts")


@pytest.mark.parametrize(
    ("formula", "match"),
    [
        ("Reaction ~ Days + (| Subject)", r"'\(\| Subject\)' has an empty left-hand side"),
        ("Reaction ~ Days + (Days | )", r"'\(Days \| \)' has no grouping factor"),
        ("Reaction ~ Days + (Days | Subject", "unbalanced parentheses"),
        ("Reaction ~ Days + Days | Subject", r"'\|' outside parentheses in 'Days \| Subject'"),
        ("Reaction ~ Days + (0 | Subject)", r"'\(0 \| Subject\)' has no columns"),
        ("Reaction ~ Days + fun(Days) + (1 | Subject)", "cannot evaluate.*fun"),
        (
            "Reaction ~ Days ** + (1 | Subject)",
            r"^cannot parse the fixed part 'Days \*\*': [^\n]*$",
        ),
        ("Reaction ~ Days + (1 | Subject) + (1 | Subject)", "'1|Subject' appears in both"),
        ("Reaction ~ (1 | Subject) + (1 + Days | Subject)", "'1|Subject' appears in both"),
    ],
)
def test_malformed_terms(sleep: pd.DataFrame, formula: str, match: str) -> None:
    with pytest.raises(FormulaError, match=match):
        build_design(formula, sleep)


def test_non_numeric_response(toy: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="response 'cond' is not numeric"):
        build_design("cond ~ x + (1 | g)", toy)
    with pytest.raises(DataError, match=r"response 'C\(g\)' is not numeric"):
        build_design("C(g) ~ x + (1 | h)", toy)


def test_single_level_factor(toy: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="grouping factor 'one' has a single level"):
        build_design("y ~ x + (1 | g) + (1 | one)", toy.assign(one="only"))


def test_empty_data(toy: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="data has no rows"):
        build_design("y ~ x + (1 | g)", toy.iloc[:0])
    with (
        pytest.warns(UserWarning),
        pytest.raises(DataError, match="no rows left after dropping 60"),
    ):
        build_design("y ~ x + (1 | g)", toy.assign(x=np.nan))


def test_rank_deficient_fixed_effects(toy: pd.DataFrame) -> None:
    data = toy.assign(x2=2 * toy["x"] + 1)
    with pytest.raises(
        DataError, match=r"columns 'x2' are linear combinations of 'Intercept', 'x'$"
    ):
        build_design("y ~ x + z + x2 + (1 | g)", data)
    with pytest.raises(DataError, match="columns 'zero' are all zero"):
        build_design("y ~ x + zero + (1 | g)", toy.assign(zero=0.0))
    with pytest.raises(DataError, match=r"columns 'C\(g\)\[1\]:z' are .* of 'gz'"):
        build_design("y ~ C(g) + C(g):z + gz + (1 | h)", toy.assign(gz=toy["z"] * (toy["g"] == 1)))


def test_non_finite_values(toy: pd.DataFrame) -> None:
    with pytest.raises(
        DataError, match=r"response 'log\(y\)' has non-finite values \(inf or nan\) in 1 of 60 rows"
    ):
        build_design("log(y) ~ x + (1 | g)", toy.assign(y=np.r_[0.0, toy["y"][1:]]))
    with pytest.raises(DataError, match="non-finite.*fixed-effect column 'x'"):
        build_design("y ~ x + (1 | g)", toy.assign(x=np.r_[np.inf, toy["x"][1:]]))
    with pytest.raises(DataError, match=r"non-finite.*random-effect column 'z\|g'"):
        build_design("y ~ x + (z | g)", toy.assign(z=np.r_[-np.inf, toy["z"][1:]]))
    with pytest.raises(DataError, match="response 'y' has non-finite values"):
        build_design("y ~ x + (1 | g)", toy.assign(y=np.r_[np.inf, toy["y"][1:]]))


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (np.r_[0.0, np.ones(59)], "weights must be finite and positive"),
        (-np.ones(60), "weights must be finite and positive"),
        (np.r_[np.inf, np.ones(59)], "weights must be finite and positive"),
        (np.ones(59), "weights must be a vector of length 60"),
        ("cond", "weights column 'cond' is not numeric"),
    ],
)
def test_bad_weights(toy: pd.DataFrame, weights, match: str) -> None:
    with pytest.raises(DataError, match=match):
        build_design("y ~ x + (1 | g)", toy, weights=weights)


def test_missing_values_are_dropped_with_a_warning(toy: pd.DataFrame) -> None:
    data = toy.copy()
    data.loc[[0, 5], "x"] = np.nan
    data.loc[7, "h"] = None
    data.loc[9, "unused"] = np.nan  # a column outside the formula does not count
    with pytest.warns(UserWarning, match=r"3 rows have missing values \(in 'x', 'h'\); dropped"):
        d = build_design("y ~ x + (1 | g) + (1 | h)", data)
    assert d.n_obs == 57 and d.n_dropped == 3
    np.testing.assert_array_equal(d.y, toy["y"].drop(index=[0, 5, 7]).to_numpy())


def test_missing_weights_are_dropped(toy: pd.DataFrame) -> None:
    w = np.r_[np.nan, np.ones(59)]
    with pytest.warns(UserWarning, match="1 row has missing values.*'weights'"):
        d = build_design("y ~ x + (1 | g)", toy, weights=w)
    assert d.weights.shape == (59,)


def test_missing_values_raise_on_request(toy: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"1 row has missing values \(in 'z'\)"):
        build_design(
            "y ~ x + (z | g)", toy.assign(z=np.r_[np.nan, toy["z"][1:]]), na_action="raise"
        )


def test_dropping_rows_drops_unused_categories(toy: pd.DataFrame) -> None:
    x = np.where(toy["cond"] == "c", np.nan, toy["x"])
    data = toy.assign(cond=pd.Categorical(toy["cond"]), x=x)
    with pytest.warns(UserWarning, match="20 rows"):
        d = build_design("y ~ cond + x + (1 | g)", data)
    assert d.x_names == ["Intercept", "cond[T.b]", "x"]


def test_bad_arguments(toy: pd.DataFrame) -> None:
    with pytest.raises(ArgumentError, match="pandas DataFrame"):  # also a TypeError
        build_design("y ~ x + (1 | g)", toy.to_dict())
    with pytest.raises(ArgumentError, match="na_action"):
        build_design("y ~ x + (1 | g)", toy, na_action="omit")


# --- Model --------------------------------------------------------------------------------


def test_model_exposes_design_and_describes_it(sleep: pd.DataFrame) -> None:
    model = lmmhmc.Model("Reaction ~ Days + (Days | Subject) + (0 + Days || Subject:Week)",
                         sleep.assign(Week=sleep["Days"] // 7))
    assert model.design.terms is model.design.terms and len(model.design.terms) == 2
    text = repr(model)
    assert str(model) == text
    assert "Reaction ~ Days + (Days | Subject)" in text
    assert "observations: 180" in text
    assert "fixed effects (2): Intercept, Days" in text
    assert "factor Subject: 18 levels (308, 309, 310, 330, 331, ...)" in text
    assert "columns (2, correlated): 1|Subject, Days|Subject" in text
    assert "factor Subject:Week: 36 levels" in text
    assert "columns (1): Days|Subject:Week" in text


def test_model_reports_dropped_rows_and_weights(sleep: pd.DataFrame) -> None:
    data = sleep.assign(w=1.0)
    data.loc[3, "Days"] = np.nan
    with pytest.warns(UserWarning):
        model = lmmhmc.Model("Reaction ~ Days + (1 | Subject)", data, weights="w")
    assert "observations: 179 (response: Reaction, weighted, 1 dropped for missing values)" in repr(
        model
    )


def test_brms_style_weights_in_response_get_a_clear_error():
    import lmmhmc
    from lmmhmc.errors import FormulaError

    data = lmmhmc.datasets.load("sleepstudy").assign(w=1.0)
    with pytest.raises(FormulaError, match="weights='w'"):
        lmmhmc.Model("Reaction | weights(w) ~ Days + (1 | Subject)", data)


def test_new_data_with_text_in_a_numeric_column_names_the_column(sleep: pd.DataFrame) -> None:
    design = lmmhmc.Model("Reaction ~ Days + (Days | Subject)", sleep).design
    for values in (["a", "b", "c"], ["1", "2", "3"], pd.Categorical([1, 2, 3])):
        newdata = sleep.head(3).assign(Days=values)
        with pytest.raises(DataError, match="column 'Days' of the new data must be numeric, as "
                                            "in training; .*pd.to_numeric"):
            design.encode(newdata)
    scaled = lmmhmc.Model("Reaction ~ center(Days) + (1 | Subject)", sleep).design
    with pytest.raises(DataError, match="cannot encode the new data .*check the columns' types"):
        scaled.encode(sleep.head(3).assign(Days=["a", "b", "c"]))


def test_columns_that_cannot_be_numbers_are_data_errors(toy: pd.DataFrame) -> None:
    dated = toy.assign(t=pd.date_range("2020-01-01", periods=len(toy)))
    with pytest.raises(DataError, match="column 't' holds dates or times .*datetime"):
        build_design("y ~ t + (1 | g)", dated)
    assert build_design("y ~ x + (1 | t)", dated.assign(t=dated["t"].dt.month)).terms
    with pytest.raises(DataError, match=r"fixed-effect column 'cond\[0\]' is not numeric"):
        build_design("y ~ cond[0] + (1 | g)", toy)
    with pytest.raises(DataError, match="data has several columns named 'x'; rename them"):
        build_design("y ~ x + (1 | g)", pd.concat([toy, toy[["x"]]], axis=1))


def test_rank_check_is_scale_free(toy: pd.DataFrame) -> None:
    huge = toy.assign(big=1e300, x=toy["x"] * 1e300)
    with pytest.raises(DataError, match="'big' are linear combinations of 'Intercept'"):
        build_design("y ~ x + big + (1 | g)", huge)
    assert build_design("y ~ x + (1 | g)", huge).X.shape[1] == 2
