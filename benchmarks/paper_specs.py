"""The paper's data sets and formulas, their loading, and the subsampling of the scaling study.

The bundled data sets come from :func:`lmmhmc.datasets.load`; the two large ones of the scaling
study (``df_eeg_complete``, ``df_stroop_complete``) are read from ``../shared/data/paper`` next
to the repository, when present. lmmhmc is imported where it is used: ``paper.py`` may have to
set XLA_FLAGS before JAX is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: The checkout these benchmarks belong to.
REPO = Path(__file__).resolve().parents[1]
#: The paper's data folder (``$LMMHMC_PAPER_DATA`` on a machine without ``../shared``).
PAPER_DATA = Path(os.environ.get("LMMHMC_PAPER_DATA", REPO.parent / "shared" / "data" / "paper"))

EEG = "n400 ~ center(cloze) + (1 + center(cloze) | subj) + (1 + center(cloze) | item)"
STROOP = "log(RT) ~ condition + (1 + condition | subj)"
#: The paper's own stroop model: log sigma varies by condition and subject (c = +-1).
STROOP_SIGMA = ("log(RT) ~ c + (1 + c | subj)", "sigma ~ c + (1 + c | subj)")


@dataclass(frozen=True)
class Spec:
    """One data set and its model (a distributional model: the mean's formula and
    ``"sigma ~ ..."``)."""

    name: str
    formula: str | tuple[str, str]
    label: str  # the paper's name for it, or where it comes from
    source: str = "bundled"  # "bundled" (lmmhmc.datasets) or "paper" (PAPER_DATA/<name>.csv)
    data: str | None = None  # the data set to load, when not ``name``
    sum_code: tuple[str, str, str] | None = None  # (new column, factor, level coded +1; else -1)
    factors: tuple[str, ...] = ()  # columns to read as factors (source "paper")
    subjects: tuple[int | None, ...] = ()  # scaling: numbers of subjects (None: all)
    keep: str | None = None  # rows to keep (a pandas query), for responses that need it
    quick_subjects: tuple[int, ...] = ()


DATASETS = [
    Spec("sleepstudy", "Reaction ~ Days + (Days | Subject)", "lme4"),
    Spec("df_dillonE1", "log(rt) ~ int + (1 + int | subj) + (1 + int | item)", "dillonE1"),
    Spec("df_english",
         "NP1 ~ condition + (1 + condition | subject) + (1 + condition | item)", "english"),
    Spec("df_gg05_rc",
         "log(RT) ~ condition + (1 + condition | subj) + (1 + condition | item)", "gg05"),
    Spec("df_gibsonwu", "log(rt) ~ type + (1 + type | subj) + (1 + type | item)", "mandarin"),
    Spec("df_eeg", EEG, "eeg"),
    Spec("df_pupil_complete", "p_size ~ load + (1 + load | subj)", "pupil"),
    Spec("df_stroop", STROOP, "stroop"),
    Spec("df_stroop_sigma", STROOP_SIGMA, "stroop (distributional, the paper's model)",
         data="df_stroop", sum_code=("c", "condition", "Incongruent")),
    Spec("grouseticks",
         "np.log(TICKS + 1) ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION) + (1 | INDEX)",
         "lme4"),
    Spec("InstEval", "y ~ service + (1 | s) + (1 | d) + (1 | dept)", "lme4"),
]
QUICK = ("sleepstudy", "df_dillonE1")
SCALING = [
    Spec("df_eeg_complete", EEG, "eeg (complete)", "paper", ("subj", "item", "lab"),
         subjects=(40, 80, 160, None), quick_subjects=(20, 40)),
    Spec("df_stroop_complete", STROOP, "stroop (complete)", "paper", ("subj", "condition"),
         subjects=(50, 200, 800, None), quick_subjects=(25, 50), keep="RT > 0"),
]
#: Every spec by name.
KNOWN = {spec.name: spec for spec in DATASETS + SCALING}


def load(spec: Spec) -> pd.DataFrame | None:
    """The data set of a spec, its factor columns as categoricals.

    Parameters
    ----------
    spec : Spec
        A bundled data set (read by :func:`lmmhmc.datasets.load`) or one of the scaling
        study's (``PAPER_DATA/<name>.csv``, its rows filtered by ``spec.keep``), with its
        ``sum_code`` column added.

    Returns
    -------
    pandas.DataFrame or None
        None (with a message) when the CSV of a ``"paper"`` spec is absent.
    """
    import lmmhmc

    if spec.source == "bundled":
        frame = lmmhmc.datasets.load(spec.data or spec.name)
    else:
        path = PAPER_DATA / f"{spec.name}.csv"
        if not path.exists():
            print(f"skipping {spec.name}: {path} not found")
            return None
        frame = pd.read_csv(path)
        if spec.keep:
            kept = frame.query(spec.keep)
            print(f"{spec.name}: keeping the {len(kept)} of {len(frame)} rows with {spec.keep}")
            frame = kept
        for col in spec.factors:
            # the bundled data sets' reading of a factor column (integral floats: integers)
            frame[col] = lmmhmc.datasets.as_factor(frame[col])
    if spec.sum_code:
        column, factor, plus = spec.sum_code
        frame = frame.assign(**{column: np.where(frame[factor] == plus, 1.0, -1.0)})
    return frame


def subsample(frame: pd.DataFrame, n_subjects: int | None,
              column: str = "subj") -> tuple[pd.DataFrame, int]:
    """The rows of some subjects drawn at random (fixed seed), all their observations kept.

    Parameters
    ----------
    frame : pandas.DataFrame
    n_subjects : int or None
        How many subjects; None, or at least as many as there are, keeps every row.
    column : str
        The subject column.

    Returns
    -------
    tuple of (pandas.DataFrame, int)
        The rows (unused categories removed) and the number of subjects they hold.
    """
    levels = np.asarray(frame[column].dropna().unique())
    if n_subjects is None or n_subjects >= len(levels):
        return frame, len(levels)
    keep = np.random.default_rng(0).choice(levels, size=n_subjects, replace=False)
    out = frame[frame[column].isin(keep)].copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].cat.remove_unused_categories()
    return out, n_subjects
