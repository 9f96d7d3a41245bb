"""Distributional models: a formula for the residual sd beside the mean's.

bambi's form, one string per distributional parameter (brms: ``bf(y ~ ..., sigma ~ ...)``)::

    ["log(RT) ~ c + (1 + c | subj)", "sigma ~ c + (1 + c | subj)"]

    log sigma_i = X_s[i] gamma + sum_k Z_sk[i] v_k,     v_k = z_k Lambda_k^T,  z_k ~ N(0, I)

``sigma`` has a log link, as in brms. Its random effects enter non-linearly, so they are
sampled non-centered; the mean's random effects are still integrated out exactly, with the
per-observation variance ``sigma_i^2 / w_i`` (DESIGN.md §7). Terms of log sigma that share a
grouping factor with the mean's are independent of them (brms's default without ``|ID|``).
Both formulas are evaluated on the same rows: those with no missing value in any column
either reads.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .design import Design, build_design, formula_columns
from .errors import DataError, DataWarning, FormulaError, warn
from .formula import parse_formula
from .layout import SIGMA

__all__ = ["complete_rows", "sigma_design", "split_formulas"]


def split_formulas(formula) -> tuple[str, str | None]:
    """The mean formula and the right-hand side of ``sigma ~ ...`` (None without one).

    ``formula`` is one string, or a list/tuple of the mean formula and ``"sigma ~ ..."``.
    """
    if isinstance(formula, str):
        return formula, None
    if not isinstance(formula, list | tuple) or not all(isinstance(f, str) for f in formula):
        raise FormulaError("formula must be a string, or a list of strings: the mean formula "
                           f"and '{SIGMA} ~ ...', got {formula!r}")
    if len(formula) == 1:
        return formula[0], None
    if len(formula) != 2:
        raise FormulaError(f"a distributional model has two formulas, the mean's and "
                           f"'{SIGMA} ~ ...'; got {len(formula)}")
    lhs, sep, rhs = formula[1].partition("~")
    if not sep or lhs.strip() != SIGMA or not rhs.strip():
        raise FormulaError(f"the second formula must model the residual sd, '{SIGMA} ~ "
                           f"<terms>' (e.g. '{SIGMA} ~ c + (1 | subj)'); got '{formula[1]}'")
    return formula[0], rhs.strip()


def complete_rows(data: pd.DataFrame, mean: str, rhs: str, vectors: dict,
                  na_action: str) -> tuple[pd.DataFrame, dict]:
    """``data`` and the per-row argument ``vectors`` (arrays; None or column names pass) on
    the rows with no missing value in a column that the ``mean`` formula or ``sigma ~ rhs``
    reads.

    Raises
    ------
    DataError
        With ``na_action="raise"``, naming the columns with missing values.
    """
    response = parse_formula(mean).response
    columns = [c for f in (mean, f"{response} ~ {rhs}") for c in formula_columns(f)
               if c in data.columns]
    missing = data[list(dict.fromkeys(columns))].isna().to_numpy().any(axis=1)
    if not missing.any():
        return data, vectors
    message = (f"{int(missing.sum())} row(s) have missing values in the columns of the mean "
               f"or the {SIGMA} formula")
    if na_action == "raise":
        raise DataError(message)
    warn(f"{message}; dropped", DataWarning)
    kept = {name: v if v is None or isinstance(v, str) else np.asarray(v)[~missing]
            for name, v in vectors.items()}
    return data.loc[~missing], kept


def sigma_design(design: Design, rhs: str, data: pd.DataFrame) -> Design:
    """``design`` with the design of log sigma, ``response ~ rhs`` on the same rows."""
    if design.se is not None:
        raise FormulaError(f"'{design.formula}' has known standard errors (se()) and a "
                           f"'{SIGMA} ~ ...' formula: give one or the other")
    response = parse_formula(design.formula).response
    part = build_design(f"{response} ~ {rhs}", data, na_action="raise")
    if part.n_obs != design.n_obs:
        raise DataError(f"the mean and the {SIGMA} formula keep different rows "
                        f"({design.n_obs} and {part.n_obs}); drop the rows with missing "
                        "values first")
    if part.offset_terms:
        raise FormulaError(f"the '{SIGMA} ~ ...' formula cannot have offset() terms")
    return replace(design, sigma_part=part)
