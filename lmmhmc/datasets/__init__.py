"""Example data sets bundled with lmmhmc.

From the R package lme4 (GPL >= 2; see ``SOURCES_lme4.md``) and from the R package bcogsci, the
data of the marginalized-LMM paper's experiments (MIT; see ``SOURCES_paper.md``).

Grouping and factor columns are returned as pandas categoricals, as they are factors in R: e.g.
sleepstudy's ``Subject`` (308, 309, ...) is a factor, not a number, so ``Reaction ~ Subject``
gives one treatment-contrast column per subject. Identifier columns stored as floats in the CSV
(``1.0``) become integer categories.

Examples
--------
>>> from lmmhmc import datasets
>>> datasets.load("sleepstudy").shape
(180, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from lmmhmc.errors import DataError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["as_factor", "describe", "list_datasets", "load"]


@dataclass(frozen=True)
class _Entry:
    file: str
    factors: tuple[str, ...]
    description: str


_DATASETS: dict[str, _Entry] = {
    "sleepstudy": _Entry(
        "sleepstudy.csv", ("Subject",), "reaction times over 10 days of sleep deprivation (lme4)"
    ),
    "Dyestuff": _Entry("Dyestuff.csv", ("Batch",), "yield of dyestuff by batch (lme4)"),
    "Dyestuff2": _Entry(
        "Dyestuff2.csv", ("Batch",), "simulated yields, batch sd estimate 0 (lme4)"
    ),
    "grouseticks": _Entry(
        "grouseticks.csv",
        ("INDEX", "BROOD", "YEAR", "LOCATION"),
        "ticks on red grouse chicks by brood and location (lme4)",
    ),
    "cake": _Entry(
        "cake.csv",
        ("replicate", "recipe", "temperature"),
        "breakage angle of chocolate cakes, recipe x temperature (lme4)",
    ),
    "cbpp": _Entry(
        "cbpp.csv", ("herd", "period"),
        "contagious bovine pleuropneumonia: incidence out of herd size by period (lme4)",
    ),
    "VerbAgg": _Entry(
        "VerbAgg.csv.gz", ("id", "item", "Gender", "btype", "situ", "mode", "resp", "r2"),
        "verbal aggression: 316 respondents x 24 items, binary response r2 (lme4)",
    ),
    "InstEval": _Entry(
        "InstEval.csv.gz",
        ("s", "d", "studage", "lectage", "service", "dept"),
        "ETH lecture ratings, 73421 ratings of 1128 lecturers by 2972 students (lme4)",
    ),
    "df_dillonE1": _Entry(
        "df_dillonE1.csv",
        ("subj", "item", "int", "expt"),
        "reading times, agreement attraction, 40 subjects x 48 items (bcogsci)",
    ),
    "df_english": _Entry(
        "df_english.csv",
        ("subject", "item"),
        "log reading times, 48 subjects x 16 items (bcogsci)",
    ),
    "df_gg05_rc": _Entry(
        "df_gg05_rc.csv",
        ("subj", "item", "condition", "experiment"),
        "reading times of relative clauses, 42 subjects x 16 items (bcogsci)",
    ),
    "df_gibsonwu": _Entry(
        "df_gibsonwu.csv",
        ("subj", "item", "type"),
        "Mandarin relative clause reading times, 37 subjects x 15 items (bcogsci)",
    ),
    "df_eeg": _Entry(
        "df_eeg.csv",
        ("subj", "item"),
        "N400 amplitude and cloze probability, 37 subjects x 80 items (bcogsci)",
    ),
    "df_pupil_complete": _Entry(
        "df_pupil_complete.csv",
        ("subj",),
        "pupil size under attentional load, 20 subjects (bcogsci)",
    ),
    "df_stroop": _Entry(
        "df_stroop.csv",
        ("subj", "condition"),
        "Stroop task reaction times, 50 subjects (bcogsci)",
    ),
}


def list_datasets() -> list[str]:
    """Names of the bundled data sets, sorted case-insensitively.

    Returns
    -------
    list of str
    """
    return sorted(_DATASETS, key=str.lower)


def describe(name: str) -> str:
    """One-line description of a bundled data set.

    Parameters
    ----------
    name : str
        A name from [`list_datasets()`][lmmhmc.datasets.list_datasets] (case-insensitive).

    Returns
    -------
    str
    """
    return _DATASETS[_resolve(name)].description


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set.

    Parameters
    ----------
    name : str
        A name from [`list_datasets()`][lmmhmc.datasets.list_datasets]; matched case-insensitively.

    Returns
    -------
    pandas.DataFrame
        A fresh frame; grouping and factor columns are categoricals.

    Raises
    ------
    ValueError
        ([`DataError`][lmmhmc.errors.DataError]) for an unknown name, listing the close matches and
        the available names.
    """
    import pandas as pd  # here, so that listing the data sets does not import pandas

    entry = _DATASETS[_resolve(name)]
    with resources.as_file(resources.files(__name__).joinpath(entry.file)) as path:
        frame = pd.read_csv(path)
    for column in entry.factors:
        frame[column] = as_factor(frame[column])
    return frame


def _resolve(name: str) -> str:
    """The registered spelling of `name`, or DataError with suggestions."""
    if name in _DATASETS:
        return name
    by_lower = {key.lower(): key for key in _DATASETS}
    if str(name).lower() in by_lower:
        return by_lower[str(name).lower()]
    raise DataError(
        f"unknown data set '{name}'{did_you_mean(str(name), _DATASETS)} "
        f"(available: {', '.join(list_datasets())})"
    )


def as_factor(values: pd.Series) -> pd.Series:
    """A column as a categorical with sorted categories; integral floats become integers.

    This is how [`load()`][lmmhmc.datasets.load] reads the grouping columns of the bundled data sets
    (a CSV stores R's factor codes such as subject ``308`` as numbers).

    Parameters
    ----------
    values : pandas.Series

    Returns
    -------
    pandas.Series
        Categorical.
    """
    if values.dtype.kind == "f" and (values.dropna() % 1 == 0).all():
        values = values.astype("Int64")
    return values.astype("category")
