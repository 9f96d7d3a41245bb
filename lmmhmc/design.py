"""The design of a linear mixed model: response, fixed effects and tree-structured random effects.

For the model ``y = X beta + o + sum_k Z_k u_k + eps`` (``o`` a known offset, 0 without one),
each random-effect term ``Z_k`` has exactly one non-zero block of ``d_k`` entries per row (the
observation's level of the grouping factor), so it is stored as an integer level ``index`` per
observation and an ``N x d_k`` covariate ``block``, never as a dense ``N x (L_k d_k)`` matrix.

All checks on the formula and the data happen here, before any JAX code runs.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import DataMismatchWarning, FormulaicError
from formulaic.formula import SimpleFormula
from formulaic.parser.types import Factor
from formulaic.transforms import TRANSFORMS
from formulaic.utils.variables import Variable, get_required_variables

from lmmhmc.errors import (
    ArgumentError,
    DataError,
    DataWarning,
    FormulaError,
    did_you_mean,
    warn,
)
from lmmhmc.formula import BarTerm, ParsedFormula, parse_formula
from lmmhmc.pairs import level_pairs

__all__ = ["Design", "GroupTerm", "NewData", "build_design"]

# Relative tolerance of the rank check, as in R's lm (column residual norm / column norm).
_RANK_TOL = 1e-7


@dataclass(frozen=True, eq=False)
class GroupTerm:
    """One random-effect term ``(expr | g)`` in tree-structured (sparse) form.

    Attributes
    ----------
    text : str
        The term as written after expansion, e.g. ``"1 + Days | Subject"``.
    factor : str
        The grouping factor, e.g. ``"Subject"``, or ``"a:b"`` for an interaction factor.
    levels : numpy.ndarray
        Level labels (str), length ``n_levels``, in code order.
    index : numpy.ndarray
        int32, shape ``(N,)``: the level code of each observation.
    block : numpy.ndarray
        float64, shape ``(N, d)``: the term's covariate row for each observation.
    columns : list of str
        Bambi-style labels, one per column, e.g. ``["1|Subject", "Days|Subject"]``.
    correlated : bool
        False for ``(x || g)`` or when ``d == 1``.
    spec : formulaic.ModelSpec
        Specification of the left-hand side, to encode new data identically.
    """

    text: str
    factor: str
    levels: np.ndarray
    index: np.ndarray
    block: np.ndarray
    columns: list[str]
    correlated: bool
    spec: object

    @property
    def n_levels(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.levels)

    @property
    def d(self) -> int:
        """Number of columns (random effects per level)."""
        return self.block.shape[1]

    @property
    def coefficients(self) -> list[str]:
        """formulaic's names of the columns, as the fixed part names them: ``["Intercept",
        "Days"]`` for the columns ``["1|Subject", "Days|Subject"]``."""
        return [str(c) for c in self.spec.column_names]

    def fixed_selection(self, X: np.ndarray, x_names: list[str]) -> np.ndarray:
        """``S`` (``d x p``) with ``S[j, i] = 1`` when the term's column ``j`` is the fixed
        column ``i`` (same name, equal values on every row), so that ``S beta`` is the fixed
        part of a level's coefficients: ``(1 + Days | Subject)`` and ``Days`` give
        ``beta_0 + u_j0`` and ``beta_1 + u_j1``."""
        out = np.zeros((self.d, len(x_names)))
        for j, name in enumerate(self.coefficients):
            if name in x_names:
                i = x_names.index(name)
                out[j, i] = float(np.array_equal(self.block[:, j], X[:, i]))
        return out


@dataclass(frozen=True, eq=False)
class NewData:
    """New observations encoded with a training [`Design`][lmmhmc.design.Design].

    Attributes
    ----------
    X : numpy.ndarray
        float64, shape ``(M, p)``: fixed-effects matrix.
    index : list of numpy.ndarray
        Per term (in ``Design.terms`` order), int32 ``(M,)`` level codes; -1 for a level not seen
        in training or a missing grouping value.
    block : list of numpy.ndarray
        Per term, float64 ``(M, d)`` covariate rows.
    labels : list of numpy.ndarray
        Per term, the level label of each row (object array; None for a missing value), so
        that rows of the same unseen level can be told apart.
    offset : numpy.ndarray
        float64 ``(M,)``: the formula's offsets evaluated on the new rows (zeros without
        any); an ``offset=`` argument of the training model is not part of it.
    """

    X: np.ndarray
    index: list[np.ndarray]
    block: list[np.ndarray]
    labels: list[np.ndarray]
    offset: np.ndarray

    @property
    def n_obs(self) -> int:
        """Number of new observations."""
        return self.X.shape[0]


@dataclass(frozen=True, eq=False)
class Design:
    """Response, fixed-effects matrix and random-effect terms of a linear mixed model.

    Build it with [`build_design()`][lmmhmc.design.build_design].

    Attributes
    ----------
    formula : str
        The formula as given.
    response : str
        Name of the response expression, e.g. ``"Reaction"`` or ``"log(rt)"``.
    y : numpy.ndarray
        float64 ``(N,)``.
    X : numpy.ndarray
        float64 ``(N, p)``.
    x_names : list of str
        formulaic column names: ``"Intercept"``, ``"Days"``, ``"cond[T.b]"``, ...
    terms : list of GroupTerm
        The random-effect terms in formula order.
    weights : numpy.ndarray or None
        float64 ``(N,)`` positive observation weights (residual variance ``sigma^2 / w``).
    fixed_spec : formulaic.ModelSpec
        Specification of the fixed part.
    n_dropped : int
        Rows dropped for missing values.
    offset : numpy.ndarray
        float64 ``(N,)``: the known offset ``o`` of the linear predictor, the sum of the
        formula's ``offset(...)`` terms and the ``offset=`` argument; zeros without any.
    offset_terms : tuple of str
        The expressions of the formula's ``offset(...)`` terms.
    offset_specs : tuple of formulaic.ModelSpec
        Their specifications, to evaluate them on new data.
    offset_argument : numpy.ndarray or None
        float64 ``(N,)``: the part of ``offset`` given by the ``offset=`` argument; None
        without one (new data then needs no offset argument).
    se : numpy.ndarray or None
        float64 ``(N,)``: the known standard errors of ``y | se(s)`` (finite, positive); None
        without.
    se_sigma : bool
        ``y | se(s, sigma = TRUE)``: a residual sd is estimated on top of `se` (the
        variances add).
    trials : numpy.ndarray or None
        float64 ``(N,)``: the binomial trials of ``y | trials(n)`` or ``cbind(s, f)``
        (non-negative integers); None without.
    sigma_part : Design or None
        A distributional model's design of log sigma (``sigma ~ c + (1 | g)``) on the same
        rows (`lmmhmc.distributional`); None without.
    """

    formula: str
    response: str
    y: np.ndarray
    X: np.ndarray
    x_names: list[str]
    terms: list[GroupTerm]
    weights: np.ndarray | None
    fixed_spec: object
    n_dropped: int
    offset: np.ndarray
    offset_terms: tuple[str, ...] = ()
    offset_specs: tuple = ()
    offset_argument: np.ndarray | None = None
    se: np.ndarray | None = None
    se_sigma: bool = False
    trials: np.ndarray | None = None
    sigma_part: Design | None = None

    @property
    def n_obs(self) -> int:
        """Number of observations N (after dropping missing values)."""
        return self.y.shape[0]

    @property
    def has_offset(self) -> bool:
        """Whether the model has an offset (in the formula or as an argument)."""
        return bool(self.offset_terms) or self.offset_argument is not None

    @property
    def shifted_y(self) -> np.ndarray:
        """``y - offset``: the response that the Gaussian model's algebra, maximum likelihood
        and the parameters' units (`lmmhmc.scaling`) see."""
        return self.y - self.offset

    @cached_property
    def level_pair_counts(self) -> np.ndarray:
        """(terms, terms) int: the distinct pairs (level of term ``j``, level of term ``k``)
        among the observations, each term's levels on the diagonal: the sizes of the
        marginal kernel's cross products of sampled terms (`lmmhmc.marginal.prepare`)."""
        n = len(self.terms)
        out = np.zeros((n, n), dtype=np.int64)
        for j in range(n):
            for k in range(j, n):
                out[j, k] = out[k, j] = len(level_pairs(self.terms[j], self.terms[k])[0])
        return out

    def level_means(self, among: Sequence[int] | None = None) -> list[np.ndarray]:
        """Per term, the ``S_k`` of hierarchical centering (`lmmhmc.centering`): the term's
        `GroupTerm.fixed_selection`, keeping the fixed columns that exactly one term of
        ``among`` (default: every term) has: the term itself, or the root of its hierarchy.

        A column that several sampled terms share (the intercept of crossed terms ``(1 | s)
        + (1 | d)``) stays outside every level: inside one term's levels, the fixed effect's
        direction that the other term leaves weakly identified would be a joint move of all
        those sites, which a diagonal metric crosses slowly. A marginalized term makes no
        such move, and a nested term centered around its parent (`parents`) is part of the
        parent's hierarchy: the fit counts only the sampled terms without a sampled parent.
        """
        own = [t.fixed_selection(self.X, self.x_names) for t in self.terms]
        counted = range(len(self.terms)) if among is None else among
        counts = sum((own[k].sum(axis=0) for k in counted), np.zeros(len(self.x_names)))
        return [s * (counts == 1) for s in own]

    def parents(self) -> list[tuple[int, np.ndarray] | None]:
        """Per term, its parent and the parent's level of each of its levels, or None.

        The parent of term ``k`` is the finest coarser term with the same columns (equal
        covariate rows) whose every level holds whole levels of ``k``: ``(1 | dept)`` of
        ``(1 | d)`` when each instructor teaches in one department. A centered level of ``k``
        is then centered around its parent's effect (`lmmhmc.centering`).
        """
        out: list[tuple[int, np.ndarray] | None] = []
        for child in self.terms:
            found = None
            for m, term in enumerate(self.terms):
                if (term.n_levels >= child.n_levels or term.coefficients != child.coefficients
                        or not np.array_equal(term.block, child.block)):
                    continue
                level = np.full(child.n_levels, -1, dtype=np.int64)
                level[child.index] = term.index
                # nested: the rows of each child level share one parent level
                if (level >= 0).all() and np.array_equal(level[child.index], term.index) and (
                        found is None or term.n_levels > self.terms[found[0]].n_levels):
                    found = (m, level.astype(np.int32))
            out.append(found)
        return out

    def require_terms(self) -> None:
        """Raise unless the formula has at least one random-effect term (as lme4 does)."""
        if not self.terms:
            raise FormulaError(
                f"formula '{self.formula}' has no random-effect terms such as (1 | group); "
                "add one, or use ordinary least squares for a model without random effects"
            )

    def encode(self, newdata: pd.DataFrame) -> NewData:
        """Encode new observations exactly like the training data.

        Transforms (``center``, ``scale``, ...) reuse the training state and categorical
        predictors the training levels.

        Parameters
        ----------
        newdata : pandas.DataFrame
            Must hold every predictor and grouping column (the response is not needed).

        Returns
        -------
        NewData

        Raises
        ------
        DataError
            If a column is missing, a categorical predictor has a level not seen in training, or
            a predictor is missing or not finite.
        """
        if not isinstance(newdata, pd.DataFrame):
            raise ArgumentError(
                f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
        needed = set(self.fixed_spec.required_variables)
        for spec in self.offset_specs:
            needed |= set(spec.required_variables)
        for term in self.terms:
            needed |= set(term.spec.required_variables) | set(term.factor.split(":"))
        _check_columns(sorted(needed), newdata, "new data")
        X = _encode_matrix(self.fixed_spec, newdata, self.x_names, "fixed-effect column")
        labels = [_level_labels(t, newdata) for t in self.terms]
        index = [pd.Index(t.levels).get_indexer(lab).astype(np.int32)
                 for t, lab in zip(self.terms, labels, strict=True)]
        block = [
            _encode_matrix(t.spec, newdata, t.columns, "random-effect column") for t in self.terms
        ]
        offset = sum((_encode_matrix(spec, newdata, [f"offset({expr})"], "offset")[:, 0]
                      for expr, spec in zip(self.offset_terms, self.offset_specs, strict=True)),
                     np.zeros(len(newdata)))
        return NewData(X=X, index=index, block=block,
                       labels=[lab.to_numpy() for lab in labels], offset=offset)


def build_design(
    formula: str,
    data: pd.DataFrame,
    *,
    weights: str | np.ndarray | None = None,
    offset: str | np.ndarray | None = None,
    na_action: str = "drop",
) -> Design:
    """Build and validate the design of an lme4-style formula on a data frame.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"Reaction ~ Days + (Days | Subject)"``; ``offset(expr)`` terms
        add known offsets to the linear predictor.
    data : pandas.DataFrame
        The observations.
    weights : str or array-like, optional
        Name of a column of `data`, or an array of length ``len(data)``, of positive weights.
    offset : str or array-like, optional
        Name of a numeric column of `data`, or an array of length ``len(data)``: a known
        offset added to the linear predictor (and to the formula's ``offset()`` terms), as
        lme4's ``offset=`` argument.
    na_action : {"drop", "raise"}
        Drop rows with missing values in the used columns (the offsets' included; with a
        warning giving the count, as lme4 does) or raise `DataError`.

    Returns
    -------
    Design

    Raises
    ------
    FormulaError
        Malformed formula or random-effect term, or duplicate random-effect columns.
    DataError
        Unknown column, non-numeric response, grouping factor with one level, empty data,
        rank-deficient fixed effects, non-finite values, bad weights or offsets, or (with
        ``na_action="raise"``) missing values.
    """
    if not isinstance(data, pd.DataFrame):
        raise ArgumentError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if na_action not in ("drop", "raise"):
        raise ArgumentError(f"na_action must be 'drop' or 'raise', got {na_action!r}")
    parsed = parse_formula(formula)
    arguments = {"weights": weights, "offset": offset}
    used, predictors = _used_columns(parsed, arguments)
    _check_columns(used, data, "data")
    _check_not_dates(data, predictors)
    if len(data) == 0:
        raise DataError("data has no rows")
    vectors = {name: _numeric_vector(value, len(data), name) for name, value in arguments.items()
               if value is not None and not isinstance(value, str)}
    frame, vectors, n_dropped = _drop_missing(data[used], vectors, na_action)

    y, response, X, x_names, fixed_spec = _fixed_part(parsed.response, parsed.fixed, frame)
    terms = [_group_term(bar, frame) for bar in parsed.bars]
    _check_duplicate_columns(terms)
    w = _argument_vector(weights, "weights", frame, vectors)
    if w is not None and not (np.all(np.isfinite(w)) and np.all(w > 0)):
        raise DataError("weights must be finite and positive")
    argument = _argument_vector(offset, "offset", frame, vectors)
    if argument is not None:
        _check_offset(argument, f"column '{offset}'" if isinstance(offset, str) else "argument")
    total, specs = _formula_offsets(parsed.offsets, frame)
    additions = {a.name: (a, _addition_values(a, frame)) for a in parsed.additions}
    return Design(
        formula=formula,
        response=response,
        y=y,
        X=X,
        x_names=x_names,
        terms=terms,
        weights=w,
        fixed_spec=fixed_spec,
        n_dropped=n_dropped,
        offset=total if argument is None else total + argument,
        offset_terms=parsed.offsets,
        offset_specs=specs,
        offset_argument=argument,
        se=additions["se"][1] if "se" in additions else None,
        se_sigma="se" in additions and additions["se"][0].option("sigma") == "TRUE",
        trials=additions["trials"][1] if "trials" in additions else None,
    )


def _used_columns(parsed: ParsedFormula,
                  arguments: dict[str, object]) -> tuple[list[str], list[str]]:
    """The data columns a model reads (formula and column-name arguments), in order, and
    those of them the response, the predictors and the offsets read."""
    predictors = _formula_variables(parsed.response, "response")
    predictors += _formula_variables(parsed.fixed, "fixed part")
    for expr in parsed.offsets:
        predictors += _formula_variables(_offset_formula(expr), f"offset 'offset({expr})'")
    for addition in parsed.additions:
        predictors += _formula_variables(_offset_formula(addition.args[0]),
                                         f"response term '{_addition_text(addition)}'")
    factors = []
    for bar in parsed.bars:
        predictors += _formula_variables(bar.lhs, f"random-effect term '({bar.text})'")
        factors += bar.factor_names
    used = predictors + factors + [v for v in arguments.values() if isinstance(v, str)]
    return list(dict.fromkeys(used)), list(dict.fromkeys(predictors))


def formula_columns(formula: str) -> list[str]:
    """The data columns ``formula`` reads (response, predictors, offsets, grouping factors)."""
    return _used_columns(parse_formula(formula), {})[0]


def _check_not_dates(data: pd.DataFrame, names: list[str]) -> None:
    """Raise DataError for a date or time-span column used as a response or a predictor."""
    for name in names:
        dtype = data[name].dtype
        if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
            raise DataError(
                f"column '{name}' holds dates or times (dtype {dtype}); convert it to numbers, "
                "e.g. days since the first, or to a category with C() (a grouping factor may "
                "be a date)")


def _drop_missing(
    frame: pd.DataFrame, vectors: dict[str, np.ndarray], na_action: str
) -> tuple[pd.DataFrame, dict[str, np.ndarray], int]:
    """Drop the rows with a missing value in `frame` or in the argument `vectors` (or raise).

    Returns the remaining rows (index reset, unused categories dropped), the vectors on them,
    and the number of rows dropped.
    """
    missing = frame.isna().to_numpy().any(axis=1)
    for values in vectors.values():
        missing |= np.isnan(values)
    n_dropped = int(missing.sum())
    if n_dropped:
        where = [c for c in frame.columns if frame[c].isna().any()]
        where += [name for name, values in vectors.items() if np.isnan(values).any()]
        rows = "1 row has" if n_dropped == 1 else f"{n_dropped} rows have"
        message = f"{rows} missing values (in {_quoted(where)})"
        if na_action == "raise":
            raise DataError(message)
        warn(f"{message}; dropped", DataWarning)
        frame = frame.loc[~missing]
        vectors = {name: values[~missing] for name, values in vectors.items()}
        if len(frame) == 0:
            raise DataError(f"no rows left after dropping {n_dropped} with missing values")
    return _drop_unused_categories(frame.reset_index(drop=True)), vectors, n_dropped


def _argument_vector(value: object, name: str, frame: pd.DataFrame,
                     vectors: dict[str, np.ndarray]) -> np.ndarray | None:
    """The argument `name` (weights, offset) on the kept rows: None, a column, or the array."""
    if value is None:
        return None
    if isinstance(value, str):
        return _numeric_vector(frame[value], len(frame), name, value)
    return vectors[name]


def _offset_formula(expr: str) -> str:
    """The formulaic formula of an offset expression: one column, evaluated as Python."""
    return f"0 + {{{expr}}}"


def _addition_text(addition) -> str:
    """The addition term as written, e.g. ``se(s)``."""
    return f"{addition.name}({addition.args[0]})"


def _addition_values(addition, frame: pd.DataFrame) -> np.ndarray:
    """A response addition term's values on `frame`, checked.

    Raises
    ------
    DataError
        If ``se()`` is not finite and positive, or ``trials()`` not non-negative integers
        (the message names the first offending rows).
    """
    where = f"response term '{_addition_text(addition)}'"
    matrix = _materialize(_offset_formula(addition.args[0]), frame, where)
    if matrix.shape[1] != 1:
        raise DataError(f"{where} must be numeric: it evaluates to the columns "
                        f"{_quoted(map(str, matrix.columns))}")
    values = matrix.to_numpy(dtype=np.float64)[:, 0]
    if addition.name == "se":
        bad, need = ~(np.isfinite(values) & (values > 0)), "finite and positive"
    else:
        bad = ~(np.isfinite(values) & (values >= 0) & (values == np.round(values)))
        need = "non-negative integers"
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(f"{where} must be {need}; it is not in {len(rows)} row"
                        f"{'s' if len(rows) > 1 else ''} (row positions "
                        f"{', '.join(map(str, rows[:5]))}{', ...' if len(rows) > 5 else ''}: "
                        f"{', '.join(f'{v:g}' for v in values[rows[:5]])})")
    return values


def _formula_offsets(exprs: tuple[str, ...], frame: pd.DataFrame) -> tuple[np.ndarray, tuple]:
    """The sum of the formula's offsets on `frame` and each offset's formulaic specification.

    Raises
    ------
    DataError
        If an offset is not one numeric column or has non-finite values.
    """
    total, specs = np.zeros(len(frame)), []
    for expr in exprs:
        matrix = _materialize(_offset_formula(expr), frame, f"offset 'offset({expr})'")
        if matrix.shape[1] != 1:
            raise DataError(f"offset 'offset({expr})' must be numeric: it evaluates to the "
                            f"columns {_quoted(map(str, matrix.columns))}")
        values = matrix.to_numpy(dtype=np.float64)[:, 0]
        _check_offset(values, f"'offset({expr})'")
        total = total + values
        specs.append(matrix.model_spec)
    return total, tuple(specs)


def _check_offset(values: np.ndarray, what: str) -> None:
    """Raise DataError if an offset has non-finite values (after dropping missing rows)."""
    n_bad = int(np.sum(~np.isfinite(values)))
    if n_bad:
        raise DataError(f"offset {what} has non-finite values (inf or nan) in {n_bad} of "
                        f"{len(values)} rows")


def _first_line(exc: Exception) -> str:
    """First line of an exception message (formulaic appends a highlighted copy of the formula)."""
    return str(exc).strip().splitlines()[0]


def _quoted(names: Iterable[str]) -> str:
    """``'a', 'b'``."""
    return ", ".join(f"'{n}'" for n in names)


def _formula_variables(text: str, where: str) -> list[str]:
    """Data columns that a formulaic formula (one side, without bars) reads, in order.

    formulaic's own ``required_variables`` misses the arguments of stateful transforms such as
    ``center(x)``, so the variables are collected factor by factor here; names of formulaic's
    transforms and functions (``np``, ``log``, ``C``, ...) are not columns.
    """
    try:
        formula = Formula(text)
    except FormulaicError as exc:
        raise FormulaError(f"cannot parse the {where} '{text}': {_first_line(exc)}") from exc
    if not isinstance(formula, SimpleFormula):
        raise FormulaError(
            f"the {where} '{text}' has a '|' outside a random-effect term in parentheses; "
            "brms-style 'y | weights(w)' is not supported: pass weights='w' instead"
        )
    names: list[str] = []
    for term in formula:
        for factor in term.factors:
            if factor.eval_method == Factor.EvalMethod.LOOKUP:
                names.append(factor.expr)
            elif factor.eval_method == Factor.EvalMethod.PYTHON:
                try:
                    variables = get_required_variables(factor.expr, {})
                except SyntaxError as exc:
                    raise FormulaError(f"cannot parse '{factor.expr}' in the {where}") from exc
                names.extend(
                    v.root
                    for v in sorted(variables)
                    if v.root not in TRANSFORMS
                    and not (Variable.Role.CALLABLE in v.roles and "." not in v)  # a function
                )
    return names


def _check_columns(names: Iterable[str], data: pd.DataFrame, what: str) -> None:
    """Raise DataError naming the first of `names` that is not a column of `data`, or that is
    the name of several columns."""
    columns = [str(c) for c in data.columns]
    for name in names:
        if name not in data.columns:
            raise DataError(f"column '{name}' not found in {what}{did_you_mean(name, columns)}")
        if np.sum(data.columns == name) > 1:
            raise DataError(f"{what} has several columns named '{name}'; rename them")


def _check_duplicate_columns(terms: list[GroupTerm]) -> None:
    """Raise FormulaError if two terms give the same ``expr|factor`` column label.

    For example ``(1 | g) + (1 | g)`` or ``(1 | g) + (1 + x | g)``: each random-effect column
    must belong to one term only, so that its variance has one name.
    """
    seen: dict[str, str] = {}
    for term in terms:
        for column in term.columns:
            if column in seen:
                raise FormulaError(
                    f"random-effect column '{column}' appears in both '({seen[column]})' and "
                    f"'({term.text})'; each column may appear in only one term"
                )
            seen[column] = term.text


def _numeric_vector(values: object, n: int, what: str, column: str | None = None) -> np.ndarray:
    """An argument (``what``: weights, offset) as a float64 vector of length `n` (missing values
    as NaN); ``column`` names the data column it was read from."""
    if isinstance(values, pd.Series) and not _is_numeric(values):
        raise DataError(f"{what} column '{column}' is not numeric")
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be numeric") from exc
    if v.ndim != 1 or v.shape[0] != n:
        raise DataError(f"{what} must be a vector of length {n} (the rows of data), got {v.shape}")
    return v


def _drop_unused_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """Remove categories without observations (as R's model.frame drops unused levels)."""
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].cat.remove_unused_categories()
    return frame


def _materialize(formula: str, frame: pd.DataFrame, where: str):
    """formulaic model matrices, with formulaic's errors turned into FormulaError."""
    try:
        # log(0) and the like give inf/nan, reported by the finiteness checks, not as warnings
        with np.errstate(divide="ignore", invalid="ignore"):
            return model_matrix(formula, frame, context={}, na_action="ignore")
    except FormulaicError as exc:
        raise FormulaError(f"cannot evaluate the {where} '{formula}': {_first_line(exc)}") from exc


def _fixed_part(
    response: str, fixed: str, frame: pd.DataFrame
) -> tuple[np.ndarray, str, np.ndarray, list[str], object]:
    """Evaluate the response and the fixed-effects matrix, and check them."""
    if response in frame.columns and not _is_numeric(frame[response]):
        raise DataError(f"response '{response}' is not numeric (dtype {frame[response].dtype})")
    matrices = _materialize(f"{response} ~ {fixed}", frame, "formula")
    lhs, rhs = matrices.lhs, matrices.rhs
    if lhs.shape[1] != 1:
        raise DataError(
            f"response '{response}' is not numeric: it evaluates to the columns "
            f"{_quoted(lhs.columns)}"
        )
    name = str(lhs.columns[0])
    y = _as_float(lhs, "response")[:, 0]
    n_bad = int(np.sum(~np.isfinite(y)))
    if n_bad:
        raise DataError(
            f"response '{name}' has non-finite values (inf or nan) in {n_bad} of {len(y)} rows"
        )
    X = _as_float(rhs, "fixed-effect column")
    x_names = [str(c) for c in rhs.columns]
    _check_finite(X, x_names, "fixed-effect column")
    _check_rank(X, x_names)
    return y, name, X, x_names, rhs.model_spec


def _as_float(matrix: pd.DataFrame, what: str) -> np.ndarray:
    """A model matrix as a contiguous float64 array; DataError naming a column that is not
    numeric (e.g. ``a[0]`` of a text column)."""
    for name in matrix.columns:
        column = matrix[name]
        if not _is_numeric(column):
            raise DataError(
                f"{what} '{name}' is not numeric (dtype {column.dtype}); convert the column it "
                "is computed from to numbers or to a category with C()")
    return np.ascontiguousarray(matrix.to_numpy(dtype=np.float64))


def _is_numeric(values: pd.Series) -> bool:
    """True for numeric and boolean columns (not strings or categoricals)."""
    return pd.api.types.is_numeric_dtype(values.dtype) and not isinstance(
        values.dtype, pd.CategoricalDtype
    )


def _check_finite(matrix: np.ndarray, names: list[str], what: str) -> None:
    """Raise DataError naming the columns of `matrix` with non-finite values."""
    bad = ~np.isfinite(matrix).all(axis=0)
    if bad.any():
        culprits = [n for n, b in zip(names, bad, strict=True) if b]
        raise DataError(f"non-finite values (inf or nan) in {what} {_quoted(culprits)}")


def _check_rank(X: np.ndarray, names: list[str]) -> None:
    """Raise DataError if columns of X are linear combinations of earlier columns.

    Columns are taken in order (like R's lm): a column whose residual after projecting on the
    accepted earlier columns is below ``_RANK_TOL`` times its norm is aliased. The message names
    the aliased columns and the earlier columns they are combinations of.
    """
    n, p = X.shape
    # columns scaled to a largest entry of 1: aliasing does not depend on scale, overflow does
    scale = np.max(np.abs(X), axis=0, initial=0.0)
    X = X / np.where(scale > 0, scale, 1.0)
    # Fast path: the diagonal of R (unpivoted QR) is each column's residual norm after the
    # earlier columns; it can only underestimate it after an aliased column, so a clean pass
    # proves full rank and anything else is re-checked column by column below.
    norms = np.linalg.norm(X, axis=0)
    r_diag = np.abs(np.diag(np.linalg.qr(X, mode="r")))
    if len(r_diag) == p and np.all(r_diag > _RANK_TOL * norms):
        return
    basis = np.empty((n, p))
    kept: list[int] = []
    aliased: list[int] = []
    for j in range(p):
        v = X[:, j].copy()
        for _ in range(2):  # Gram-Schmidt, twice for numerical orthogonality
            q = basis[:, : len(kept)]
            v -= q @ (q.T @ v)
        resid = np.linalg.norm(v)
        if norms[j] == 0 or resid <= _RANK_TOL * norms[j]:
            aliased.append(j)
        else:
            basis[:, len(kept)] = v / resid
            kept.append(j)
    if not aliased:
        return
    zero = [j for j in aliased if not X[:, j].any()]
    combos = [j for j in aliased if j not in zero]
    parts = []
    if zero:
        parts.append(f"columns {_quoted(names[j] for j in zero)} are all zero")
    if combos:
        coef = np.linalg.lstsq(X[:, kept], X[:, combos], rcond=None)[0]
        scale = np.linalg.norm(X[:, kept], axis=0)[:, None] * np.abs(coef)
        used = np.any(scale > 1e-6 * np.linalg.norm(X[:, combos], axis=0), axis=1)
        parts.append(
            f"columns {_quoted(names[j] for j in combos)} are linear combinations of "
            f"{_quoted(names[j] for j, u in zip(kept, used, strict=True) if u)}"
        )
    raise DataError("rank-deficient fixed-effects matrix: " + "; ".join(parts))


def _group_term(bar: BarTerm, frame: pd.DataFrame) -> GroupTerm:
    """Evaluate one bar term: level codes of its factor and its covariate block."""
    matrix = _materialize(bar.lhs, frame, f"random-effect term '({bar.text})'")
    names = ["1" if c == "Intercept" else str(c) for c in matrix.columns]
    columns = [f"{name}|{bar.factor}" for name in names]
    if not columns:
        raise FormulaError(f"random-effect term '({bar.text})' has no columns")
    block = _as_float(matrix, "random-effect column")
    _check_finite(block, columns, "random-effect column")
    index, levels = _factorize(frame, bar.factor_names)
    if len(levels) < 2:
        raise DataError(
            f"grouping factor '{bar.factor}' has a single level ('{levels[0]}'); "
            "a random effect needs at least two levels"
        )
    return GroupTerm(
        text=bar.text,
        factor=bar.factor,
        levels=levels,
        index=index,
        block=block,
        columns=columns,
        correlated=bar.correlated and len(columns) > 1,
        spec=matrix.model_spec,
    )


def _label(value: object) -> str:
    """Level label: ``str(value)``, with integral floats written as integers (1.0 -> "1")."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes and sorted level labels of one column (categorical order if categorical)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(np.int64), [_label(c) for c in values.cat.categories]
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # values of mixed types cannot be sorted: sort their labels
        codes, uniques = pd.factorize(values.map(_label), sort=True)
    return codes.astype(np.int64), [_label(u) for u in uniques]


def _factorize(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Level codes (int32) and labels of a factor or of the observed combinations of several.

    Combinations are ordered by the first factor, then the second, ..., like the levels of R's
    ``interaction(a, b, lex.order = TRUE, drop = TRUE)``; labels are joined with ``:``.
    """
    codes, labels = _codes(frame[names[0]])
    for name in names[1:]:
        other, other_labels = _codes(frame[name])
        keys, codes = np.unique(codes * len(other_labels) + other, return_inverse=True)
        labels = [
            f"{labels[k // len(other_labels)]}:{other_labels[k % len(other_labels)]}" for k in keys
        ]
    return codes.astype(np.int32), np.asarray(labels, dtype=str)


def _new_labels(values: pd.Series) -> pd.Series:
    """Level labels of new values (missing values stay missing)."""
    codes, uniques = pd.factorize(values)
    labels = pd.Series([_label(u) for u in uniques] + [None], dtype=object)
    return pd.Series(labels.to_numpy()[codes], dtype=object)


def _level_labels(term: GroupTerm, newdata: pd.DataFrame) -> pd.Series:
    """Level labels of the new rows for ``term``'s factor (missing when a value is missing).

    ``Index(term.levels).get_indexer`` of them gives the training codes, -1 for unseen levels
    and missing values.
    """
    names = term.factor.split(":")
    labels = _new_labels(newdata[names[0]])
    if len(names) > 1:
        labels = labels.str.cat([_new_labels(newdata[n]) for n in names[1:]], sep=":")
    return labels


def _check_numeric_columns(spec, newdata: pd.DataFrame) -> None:
    """Raise DataError for a column of `newdata` that was numeric in training but is not now."""
    for name, (kind, _) in spec.encoder_state.items():
        if kind != Factor.Kind.NUMERICAL or name not in newdata.columns:
            continue
        values = newdata[name]
        if _is_numeric(values):
            continue
        bad = [v for v in values.dropna() if not isinstance(v, numbers.Number)]
        if bad or isinstance(values.dtype, pd.CategoricalDtype):
            example = f"{bad[0]!r}, " if bad else ""
            raise DataError(
                f"column '{name}' of the new data must be numeric, as in training; it has "
                f"{example}dtype {values.dtype}: convert it, e.g. with pd.to_numeric")


def _encode_matrix(spec, newdata: pd.DataFrame, names: list[str], what: str) -> np.ndarray:
    """Model matrix of `newdata` from a training spec, checked for unseen levels and NaN.

    `names` are the training column labels, used in the error message.
    """
    _check_numeric_columns(spec, newdata)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("error", DataMismatchWarning)
        try:
            matrix = spec.get_model_matrix(newdata, context={})
        except DataMismatchWarning as exc:
            raise DataError(
                f"new data has a categorical level not seen in training: {exc}"
            ) from exc
        except FormulaicError as exc:
            raise DataError(f"cannot encode the new data like the training data "
                            f"({_first_line(exc)}); check the columns' types") from exc
    X = _as_float(matrix, f"new data, {what}")
    _check_finite(X, names, f"new data, {what}")
    return X
