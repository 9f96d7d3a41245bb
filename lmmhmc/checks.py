"""Checks of a model before it is fitted: errors where lme4 refuses a model, warnings where
the data cannot inform part of it.

`check_model` runs every check once, when a `lmmhmc.Model` is built (so that
``fit``, ``fit_ml``, the command line and ``describe`` all see them before any compilation).
Each check is one function of the `lmmhmc.design.Design`; each message names the term
or the response and the remedy. The warnings are `lmmhmc.errors.LmmhmcWarning`
subclasses; ``docs/troubleshooting.md`` explains each.
"""

from __future__ import annotations

import numpy as np

from .design import Design, GroupTerm
from .errors import (
    ArgumentError,
    DataError,
    FormulaError,
    ModelWarning,
    ResponseWarning,
    did_you_mean,
    warn,
)

__all__ = [
    "check_confounded_factors",
    "check_constant_response",
    "check_constant_slopes",
    "check_exact_fit",
    "check_family_name",
    "check_family_response",
    "check_few_levels",
    "check_model",
    "check_one_observation_per_level",
    "check_response_family",
    "check_scales",
]

#: Fewest levels for which a grouping factor's sd is not mostly its prior.
MIN_LEVELS = 3
#: Largest median of a 0-based integer response that is taken for counts.
COUNT_MAX_MEDIAN = 20
#: Largest magnitude of a response spread or a predictor that double precision handles safely
#: (its square, times the observations, must not overflow).
MAX_SCALE = 1e100
#: Relative tolerance of "constant within a level" and "in the span of the fixed part".
_TOL = 1e-10
#: Per non-Gaussian family (`lmmhmc.families`): what its response must be, and the test
#: of each row given the response ``y`` and the trials ``n`` (1 without ``trials()``).
RESPONSE_RULES = {
    "bernoulli": ("0 or 1", lambda y, n: (y == 0) | (y == 1)),
    "binomial": ("whole numbers between 0 and the trials",
                 lambda y, n: (y >= 0) & (y <= n) & (y == np.round(y))),
    "poisson": ("non-negative whole numbers", lambda y, n: (y >= 0) & (y == np.round(y))),
}
#: Every accepted ``family=`` (brms's and bambi's names).
FAMILY_NAMES = ("gaussian", *RESPONSE_RULES)
#: Rows named in a response error.
_SHOW_ROWS = 5


def check_model(design: Design, allow_one_per_level: bool = False,
                family: str = "gaussian") -> None:
    """Run every check on ``design``: raise the errors, then warn.

    Parameters
    ----------
    design : Design
    allow_one_per_level : bool
        Warn instead of raising for a grouping factor with one observation per level (as
        lme4's ``check.nobs.vs.nlev = "warning"``).
    family : str
        The response family (`FAMILY_NAMES`): a non-Gaussian response is checked against it
        (`RESPONSE_RULES`) instead of by the Gaussian's residual checks.

    Raises
    ------
    DataError
        If the response is constant or on an extreme scale, a predictor is on an extreme
        scale, a grouping factor has one observation per level, or the fixed part (with a
        factor's intercepts) reproduces the response exactly.
    """
    check_additions_supported(design, family)
    check_constant_response(design)
    check_scales(design)
    check_family_name(family)
    if family == "gaussian":
        # (glmer allows one observation per level: an observation-level effect models
        # overdispersion when there is no residual)
        check_one_observation_per_level(design, allow_one_per_level)
        check_exact_fit(design)
        check_response_family(design)
    else:
        check_family_response(design, family)
    check_few_levels(design)
    check_confounded_factors(design)
    check_constant_slopes(design)


def check_additions_supported(design: Design, family: str = "gaussian") -> None:
    """Raise FormulaError for response terms the model cannot use: ``se()`` with
    ``weights=`` (both would set the residual variances) or with a non-Gaussian family,
    ``sigma ~ ...`` with a non-Gaussian family, ``trials()`` without the binomial family
    or the binomial family without it, and weights with a non-Gaussian family."""
    if design.se is not None and design.weights is not None:
        raise FormulaError(
            f"'{design.formula}' has known standard errors (se()) and weights= is given: "
            "both set the residual variances; drop weights= (se(s) is weights 1 / s^2 with "
            "sigma fixed at 1)")
    gaussian_only = [what for what, present in (
        ("known standard errors (se())", design.se is not None),
        ("a model of sigma ('sigma ~ ...')", design.sigma_part is not None)) if present]
    if family != "gaussian" and gaussian_only:
        raise FormulaError(f"{gaussian_only[0]} need family='gaussian', not '{family}'")
    binomial = family == "binomial"
    if binomial and design.trials is None:
        raise FormulaError(
            f"family 'binomial' needs the number of trials of '{design.response}': write "
            "'y | trials(n) ~ ...' (brms) or 'cbind(successes, failures) ~ ...' (lme4), or use "
            "family='bernoulli' for a 0/1 response")
    if design.trials is not None and not binomial:
        raise FormulaError(
            f"the response term 'trials()' (or cbind()) in '{design.formula}' needs "
            f"family='binomial', not '{family}'")
    if family != "gaussian" and design.weights is not None:
        raise FormulaError(
            f"weights are not supported with family '{family}' (they scale a Gaussian "
            "residual variance); for a binomial response out of n trials use trials(n)")


def check_family_name(family: str) -> None:
    """Raise ArgumentError unless ``family`` is one of `FAMILY_NAMES`."""
    if family not in FAMILY_NAMES:
        raise ArgumentError(f"unknown family {family!r}{did_you_mean(str(family), FAMILY_NAMES)}"
                            f" (accepted: {', '.join(FAMILY_NAMES)})")


def check_family_response(design: Design, family: str) -> None:
    """Raise DataError unless the response suits ``family`` (`RESPONSE_RULES`), naming the
    first offending rows (0-based among the rows used)."""
    trials = design.trials if design.trials is not None else np.ones(design.n_obs)
    y = design.y
    what, ok = RESPONSE_RULES[family]
    rows = np.flatnonzero(~ok(y, trials))
    if not len(rows):
        return
    shown = ", ".join(f"{r} ({y[r]:g})" for r in rows[:_SHOW_ROWS])
    more = f" and {len(rows) - _SHOW_ROWS} more" if len(rows) > _SHOW_ROWS else ""
    raise DataError(f"family '{family}' needs a response '{design.response}' of {what}; "
                    f"{len(rows)} row(s) are not: rows {shown}{more} (0-based, among the "
                    "rows used)")


def check_constant_response(design: Design) -> None:
    """Raise DataError if every response value is the same (no variance to split)."""
    y = design.y
    if np.all(y == y[0]):
        raise DataError(
            f"response '{design.response}' is constant (every value is {y[0]:g}); a mixed model "
            "needs a response that varies: check the response column and the rows kept")


def check_scales(design: Design) -> None:
    """Raise DataError for a response or a predictor on a scale that overflows the kernels."""
    sd = float(np.std(design.y))
    if not 1.0 / MAX_SCALE < sd < MAX_SCALE:
        raise DataError(f"response '{design.response}' varies on an extreme scale (sd {sd:.3g}); "
                        "rescale it, e.g. to thousands or to standard units")
    columns = [(design.X, design.x_names, "fixed-effect")]
    columns += [(t.block, t.columns, "random-effect") for t in design.terms]
    for matrix, names, kind in columns:
        for name, size in zip(names, np.max(np.abs(matrix), axis=0, initial=0.0), strict=True):
            if size > MAX_SCALE:
                raise DataError(f"{kind} column '{name}' has values as large as {size:.3g}; "
                                "rescale it, e.g. with scale()")


def check_exact_fit(design: Design) -> None:
    """Raise DataError if the fixed effects or a random intercept reproduce the response.

    For example ``y ~ y + (1 | g)``, a predictor that is a copy of the response, or a response
    constant within every level of a factor with a random intercept (or the fixed part plus
    such a constant): no residual is left, and the likelihood grows without bound as
    ``sigma`` goes to 0.
    """
    if design.X.shape[1]:
        resid = design.y - design.X @ np.linalg.lstsq(design.X, design.y, rcond=None)[0]
        if np.linalg.norm(resid) <= _TOL * np.linalg.norm(design.y):
            raise DataError(
                f"the fixed part ({', '.join(design.x_names)}) reproduces the response "
                f"'{design.response}' exactly, so there is no variance left for the random "
                "effects and the residual: remove the response (or a copy of it) from the "
                "predictors")
    for t in design.terms:
        if f"1|{t.factor}" in t.columns and np.bincount(t.index).max() > 1 \
                and _fits_within(t, design.X, design.y):
            raise DataError(
                f"the fixed part and the intercepts of '({t.text})' reproduce the response "
                f"'{design.response}' exactly (e.g. it is constant within every level of "
                f"'{t.factor}'), so no residual variance is left: check the response, or remove "
                "the term")


def _fits_within(term: GroupTerm, X: np.ndarray, y: np.ndarray) -> bool:
    """True if ``X`` and one intercept per level of ``term`` reproduce ``y`` exactly: the
    least-squares fit of the deviations from the level means leaves no residual."""
    counts = np.bincount(term.index, minlength=term.n_levels)[:, None]
    both = np.column_stack([X, y])
    sums = np.zeros((term.n_levels, both.shape[1]))
    np.add.at(sums, term.index, both)
    within = both - (sums / np.maximum(counts, 1))[term.index]
    xw, yw = within[:, :-1], within[:, -1]
    resid = yw - xw @ np.linalg.lstsq(xw, yw, rcond=None)[0] if X.shape[1] else yw
    return bool(np.linalg.norm(resid) <= _TOL * np.linalg.norm(y))


def check_one_observation_per_level(design: Design, allow: bool = False) -> None:
    """Raise DataError (warn if `allow`) for a grouping factor with as many levels as
    observations, as lme4 does; not with known standard errors alone (``y | se(s)``: the
    residual sds are data, so nothing is confounded)."""
    if design.se is not None and not design.se_sigma:
        return
    for t in design.terms:
        if t.n_levels < design.n_obs:
            continue
        message = (
            f"grouping factor '{t.factor}' of '({t.text})' has {t.n_levels} levels for "
            f"{design.n_obs} observations (one observation per level), so its random effects "
            "are confounded with the residual: its sd and sigma are identified only by their "
            "priors")
        if allow:
            warn(message, ModelWarning)
        else:
            raise DataError(
                f"{message}; lme4 refuses this too (the number of levels must be < the number "
                "of observations): remove the term, group by a coarser factor, or pass "
                "allow_one_per_level=True to fit it anyway")


def check_response_family(design: Design) -> None:
    """Warn if a Gaussian model's response looks binary or like counts (suggesting the
    family that fits it)."""
    y = design.y
    values = np.unique(y)
    if len(values) == 2:
        kind, family = f"binary (two values, {values[0]:g} and {values[1]:g})", "bernoulli"
    elif (np.all(values == np.round(values)) and values[0] == 0
          and np.median(y) <= COUNT_MAX_MEDIAN):
        kind, family = "like counts (non-negative integers with zeros)", "poisson"
    else:
        return
    extra = "" if family == "poisson" or set(values) == {0.0, 1.0} else " (coded 0 and 1)"
    warn(f"response '{design.response}' looks {kind}; it is fitted as a Gaussian response: "
         f"for a generalized mixed model pass family='{family}'{extra}", ResponseWarning)


def check_few_levels(design: Design) -> None:
    """Warn for a grouping factor with fewer than `MIN_LEVELS` levels."""
    for t in design.terms:
        if t.n_levels < MIN_LEVELS:
            warn(f"grouping factor '{t.factor}' of '({t.text})' has only {t.n_levels} levels: "
                  "its sd is informed mostly by the prior; consider a fixed effect for "
                  f"'{t.factor}' instead", ModelWarning)


def check_confounded_factors(design: Design) -> None:
    """Warn for a term whose columns the fixed part already spans (e.g. ``y ~ g + (1 | g)``).

    Each column of the term's random-effect matrix (its block times the level indicators) is
    projected on the fixed-effects columns, level by level, in ``O(N p)``.
    """
    q = np.linalg.qr(design.X, mode="reduced")[0] if design.X.shape[1] else None
    for t in design.terms:
        spanned = [c for j, c in enumerate(t.columns) if _spanned(q, t, t.block[:, j])]
        if spanned:
            warn(f"the fixed part already spans {', '.join(map(repr, spanned))} for every "
                  f"level of '{t.factor}' (is '{t.factor}' also a fixed effect?), so the sd of "
                  f"'({t.text})' is not identified by the data, only by its prior: remove "
                  f"'{t.factor}' from the fixed part or drop the term", ModelWarning)


def _spanned(q: np.ndarray | None, term: GroupTerm, column: np.ndarray) -> bool:
    """True if every level's column ``column * 1[level]`` lies in the span of ``q``."""
    if q is None:
        return False
    norms = np.bincount(term.index, weights=column**2, minlength=term.n_levels)
    proj = np.zeros((term.n_levels, q.shape[1]))
    np.add.at(proj, term.index, q * column[:, None])
    resid = norms - np.sum(proj**2, axis=1)
    return bool(np.all(resid <= _TOL * np.maximum(norms, 1.0)))


def check_constant_slopes(design: Design) -> None:
    """Warn for a random slope that is constant within every level of its factor.

    Such a slope only shifts each level's mean, which the factor's random intercept already
    does; the slope's sd is then not identified by the data.
    """
    intercepts = {t.factor for t in design.terms if f"1|{t.factor}" in t.columns}
    for t in design.terms:
        if t.factor not in intercepts:
            continue
        flat = [c for j, c in enumerate(t.columns)
                if c != f"1|{t.factor}" and _constant_within(t, t.block[:, j])]
        if flat:
            names = ", ".join(repr(c.split("|")[0]) for c in flat)
            warn(f"random slope {names} of '({t.text})' is constant within every level of "
                  f"'{t.factor}', so it is confounded with the random intercept and its sd is "
                  f"not identified: drop it from the term (keep it as a fixed effect)",
                  ModelWarning)


def _constant_within(term: GroupTerm, column: np.ndarray) -> bool:
    """True if ``column`` takes one value within each level of ``term``'s factor (and some
    level has several observations)."""
    if np.bincount(term.index).max() < 2:
        return False
    high = np.full(term.n_levels, -np.inf)
    low = np.full(term.n_levels, np.inf)
    np.maximum.at(high, term.index, column)
    np.minimum.at(low, term.index, column)
    return bool(np.all(high - low <= _TOL * np.maximum(np.abs(high), 1.0)))
