"""The bundled data sets and their loader."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest

import lmmhmc
from lmmhmc import datasets
from lmmhmc.errors import DataError

SHAPES = {
    "sleepstudy": (180, 3),
    "Dyestuff": (30, 2),
    "Dyestuff2": (30, 2),
    "grouseticks": (403, 7),
    "cake": (270, 5),
    "InstEval": (73421, 7),
    "cbpp": (56, 4),
    "VerbAgg": (7584, 9),
    "df_dillonE1": (2855, 5),
    "df_english": (768, 4),
    "df_gg05_rc": (672, 7),
    "df_gibsonwu": (547, 4),
    "df_eeg": (2863, 6),
    "df_pupil_complete": (2228, 4),
    "df_stroop": (3058, 4),
}


def test_list_datasets() -> None:
    names = datasets.list_datasets()
    assert sorted(names) == sorted(SHAPES)
    assert names == sorted(names, key=str.lower)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_dataset_loads(name: str) -> None:
    frame = datasets.load(name)
    assert frame.shape == SHAPES[name]
    assert not frame.isna().any().any()
    assert datasets.describe(name)


def test_grouping_columns_are_categorical() -> None:
    sleep = datasets.load("sleepstudy")
    assert isinstance(sleep["Subject"].dtype, pd.CategoricalDtype)
    assert list(sleep["Subject"].cat.categories[:3]) == [308, 309, 310]
    assert sleep["Reaction"].dtype == "float64" and sleep["Days"].dtype == "float64"
    eeg = datasets.load("df_eeg")  # ids stored as 1.0, 2.0, ... become integer categories
    assert list(eeg["subj"].cat.categories[:3]) == [1, 2, 3]
    assert eeg["cloze"].dtype == "float64"
    inst = datasets.load("InstEval")
    assert inst["d"].cat.categories.size == 1128 and inst["y"].dtype == "int64"


def test_factor_column_acts_as_a_factor_in_fixed_effects() -> None:
    model = lmmhmc.Model("Reaction ~ Subject + (0 + Days | Subject)", datasets.load("sleepstudy"))
    assert model.design.x_names[:2] == ["Intercept", "Subject[T.309]"]
    assert len(model.design.x_names) == 18


@pytest.mark.parametrize(
    ("name", "formula", "levels"),
    [
        ("Dyestuff", "Yield ~ 1 + (1 | Batch)", [6]),
        ("Dyestuff2", "Yield ~ 1 + (1 | Batch)", [6]),
        (
            "grouseticks",
            "log(TICKS + 1) ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
            [118, 63],
        ),
        ("df_dillonE1", "log(rt) ~ int + (1 + int | subj) + (1 + int | item)", [40, 48]),
        (
            "df_english",
            "NP1 ~ condition + (1 + condition | subject) + (1 + condition | item)",
            [48, 16],
        ),
        (
            "df_gg05_rc",
            "log(RT) ~ condition + (1 + condition | subj) + (1 + condition | item)",
            [42, 16],
        ),
        ("df_gibsonwu", "log(rt) ~ type + (1 + type | subj) + (1 + type | item)", [37, 15]),
        (
            "df_eeg",
            "n400 ~ center(cloze) + (1 + center(cloze) | subj) + (1 + center(cloze) | item)",
            [37, 80],
        ),
        ("df_pupil_complete", "p_size ~ load + (1 + load | subj)", [20]),
        ("df_stroop", "log(RT) ~ condition + (1 + condition | subj)", [50]),
    ],
)
def test_classic_models_of_each_dataset(name: str, formula: str, levels: list[int]) -> None:
    design = lmmhmc.Model(formula, datasets.load(name)).design
    assert [t.n_levels for t in design.terms] == levels
    assert design.n_obs == SHAPES[name][0]


def test_names_are_case_insensitive() -> None:
    assert datasets.load("SLEEPSTUDY").shape == (180, 3)


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(
        ValueError, match=r"unknown data set 'sleepstudyy'; did you mean 'sleepstudy'"
    ):
        datasets.load("sleepstudyy")
    with pytest.raises(DataError, match=r"available: cake, cbpp, df_dillonE1, .*, sleepstudy, "
                                        r"VerbAgg\)"):
        datasets.load("nope")


def test_license_attribution_is_bundled() -> None:
    folder = Path(datasets.__file__).parent
    assert "GPL" in (folder / "SOURCES_lme4.md").read_text()
    assert "MIT" in (folder / "SOURCES_paper.md").read_text()


def test_version_matches_pyproject() -> None:
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    assert tomllib.loads(pyproject.read_text())["project"]["version"] == lmmhmc.__version__
