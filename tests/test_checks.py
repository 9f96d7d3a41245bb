"""Checks before sampling (lmmhmc.checks) and the errors of bad arguments."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest

import lmmhmc
from lmmhmc.errors import (
    ArgumentError,
    DataError,
    FormulaError,
    LmmhmcError,
    LmmhmcWarning,
    ModelWarning,
    ResponseWarning,
)


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    data = lmmhmc.datasets.load("sleepstudy")
    subject = data["Subject"].astype(str)
    return data.assign(
        pair=np.where(subject.str[-1].isin(list("01234")), "a", "b"),
        age=subject.str[-1].astype(int),
        binary=(data["Reaction"] > 300).astype(int),
        row=np.arange(len(data)),
    )


def _quiet_model(formula: str, data: pd.DataFrame) -> lmmhmc.Model:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sound model raises no warning at all
        return lmmhmc.Model(formula, data)


def test_a_sound_model_passes_every_check(sleep: pd.DataFrame) -> None:
    _quiet_model("Reaction ~ Days + (Days | Subject)", sleep)
    _quiet_model("Reaction ~ Days + age + (Days | Subject)", sleep)  # between-subject fixed
    _quiet_model("Reaction ~ Days + (0 + age | Subject)", sleep)  # no intercept to confound


def test_constant_response_errs_for_fit_and_fit_ml(sleep: pd.DataFrame) -> None:
    data = sleep.assign(flat=3.0)
    message = "response 'flat' is constant .*every value is 3"
    with pytest.raises(DataError, match=message):
        lmmhmc.fit("flat ~ Days + (1 | Subject)", data)
    with pytest.raises(DataError, match=message):
        lmmhmc.Model("flat ~ Days + (1 | Subject)", data).fit_ml()


def test_one_observation_per_level_errs_as_in_lme4(sleep: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"grouping factor 'row' of '\(1 \| row\)' has 180 "
                                        r"levels for 180 observations .*lme4 refuses"):
        lmmhmc.Model("Reaction ~ Days + (1 | Subject) + (1 | row)", sleep)
    with pytest.warns(ModelWarning, match=r"'row' .* \(one observation per level\)"):
        model = lmmhmc.Model("Reaction ~ Days + (1 | Subject) + (1 | row)", sleep,
                             allow_one_per_level=True)
    assert model.design.terms[1].n_levels == 180


def test_grouping_factor_in_the_fixed_part_warns(sleep: pd.DataFrame) -> None:
    with pytest.warns(ModelWarning, match=r"already spans '1\|Subject' .*'Subject' also a "
                                          r"fixed effect.*sd of '\(1 \| Subject\)'"):
        lmmhmc.Model("Reaction ~ Subject + (1 | Subject)", sleep)
    with pytest.warns(ModelWarning, match=r"'1\|Subject', 'Days\|Subject'"):
        lmmhmc.Model("Reaction ~ Subject * Days + (Days | Subject)", sleep)


def test_slope_constant_within_levels_warns(sleep: pd.DataFrame) -> None:
    with pytest.warns(ModelWarning, match=r"random slope 'age' of '\(1 \+ age \| Subject\)' "
                                          r"is constant within every level of 'Subject'"):
        lmmhmc.Model("Reaction ~ Days + (1 + age | Subject)", sleep)
    with pytest.warns(ModelWarning, match="random slope 'age'"):  # || splits the term
        lmmhmc.Model("Reaction ~ Days + (1 + age || Subject)", sleep)


def test_few_levels_warn(sleep: pd.DataFrame) -> None:
    with pytest.warns(ModelWarning, match=r"'pair' of '\(1 \| pair\)' has only 2 levels"):
        lmmhmc.Model("Reaction ~ Days + (1 | pair)", sleep)


def test_binary_and_count_responses_warn(sleep: pd.DataFrame) -> None:
    with pytest.warns(ResponseWarning, match=r"'binary' looks binary \(two values, 0 and 1\).*"
                                             r"family='bernoulli'$"):
        lmmhmc.Model("binary ~ Days + (1 | Subject)", sleep)
    with pytest.warns(ResponseWarning, match="looks binary"):
        lmmhmc.Model("flag ~ Days + (1 | Subject)", sleep.assign(flag=sleep["binary"] > 0))
    ticks = lmmhmc.datasets.load("grouseticks")
    with pytest.warns(ResponseWarning, match="'TICKS' looks like counts .*family='poisson'"):
        lmmhmc.Model("TICKS ~ YEAR + (1 | BROOD)", ticks)


def test_warnings_point_at_the_callers_line(sleep: pd.DataFrame) -> None:
    with pytest.warns(LmmhmcWarning) as caught:
        lmmhmc.Model("Reaction ~ Days + (1 | pair)", sleep)
    assert caught[0].filename == __file__


def test_family_names_and_responses_are_checked(sleep: pd.DataFrame) -> None:
    formula = "binary ~ Days + (1 | Subject)"
    with pytest.raises(ArgumentError, match="unknown family 'binomal'; did you mean 'binomial'"):
        lmmhmc.Model(formula, sleep, family="binomal")
    with pytest.raises(ArgumentError, match="the family belongs to the model"):
        lmmhmc.Model("Reaction ~ Days + (1 | Subject)", sleep).fit(family="bernoulli")
    with pytest.raises(FormulaError, match="family 'binomial' needs the number of trials"):
        lmmhmc.fit(formula, sleep, family="binomial")
    with pytest.raises(DataError, match=r"family 'bernoulli' needs a response 'Reaction' of 0 or "
                                        r"1; 180 row\(s\) are not: rows 0 \(249\.56\), 1"):
        lmmhmc.Model("Reaction ~ Days + (1 | Subject)", sleep, family="bernoulli")
    ticks = lmmhmc.datasets.load("grouseticks")
    with pytest.raises(DataError, match=r"non-negative whole numbers; 1 row\(s\) are not: "
                                        r"rows 3 \(-1\)"):
        lmmhmc.Model("TICKS ~ YEAR + (1 | BROOD)",
                     ticks.assign(TICKS=np.where(np.arange(len(ticks)) == 3, -1, ticks.TICKS)),
                     family="poisson")
    cbpp = lmmhmc.datasets.load("cbpp")
    with pytest.raises(DataError, match=r"whole numbers between 0 and the trials; 1 row\(s\) "
                                        r"are not: rows 0 \(15\)"):
        lmmhmc.Model("incidence | trials(size) ~ period + (1 | herd)",
                     cbpp.assign(incidence=np.where(cbpp.index == 0, 15, cbpp.incidence)),
                     family="binomial")
    with pytest.raises(FormulaError, match=r"'trials\(\)' \(or cbind\(\)\) .* needs "
                                           "family='binomial', not 'poisson'"):
        lmmhmc.Model("incidence | trials(size) ~ period + (1 | herd)", cbpp, family="poisson")
    with pytest.raises(FormulaError, match="weights are not supported with family 'poisson'"):
        lmmhmc.Model("TICKS ~ YEAR + (1 | BROOD)", ticks, family="poisson", weights="HEIGHT")
    # glmer allows one observation per level (an observation-level effect): no error
    lmmhmc.Model("TICKS ~ YEAR + (1 | INDEX)", ticks, family="poisson")


def test_unknown_arguments_list_the_valid_ones(sleep: pd.DataFrame) -> None:
    model = lmmhmc.Model("Reaction ~ Days + (Days | Subject)", sleep)
    with pytest.raises(ArgumentError, match=r"lmmhmc.fit\(\) got an unknown argument 'chain'; "
                                            r"did you mean 'chains'\? \(valid arguments: "
                                            r"formula, data, weights"):
        lmmhmc.fit("Reaction ~ Days + (Days | Subject)", sleep, chain=2)
    with pytest.raises(ArgumentError, match=r"Model.fit\(\) got an unknown argument "
                                            r"'draw'; did you mean 'draws'"):
        model.fit(draw=10)
    with pytest.raises(ArgumentError, match=r"Model.fit_ml\(\) got an unknown argument "
                                            r"'REML'; did you mean 'reml'\? \(valid "
                                            r"arguments: reml, starts\)"):
        model.fit_ml(REML=True)
    with pytest.raises(TypeError, match="too many positional arguments"):  # also a TypeError
        model.fit_ml(True, 3, 4)


def test_checked_functions_keep_their_signatures() -> None:
    assert "chains" in inspect.signature(lmmhmc.fit).parameters
    assert list(inspect.signature(lmmhmc.Model.fit_ml).parameters) == ["self", "reml", "starts"]
    assert lmmhmc.Model.fit.__doc__.startswith("Sample the posterior")


def test_marginalize_lists_the_keywords_and_terms(sleep: pd.DataFrame) -> None:
    with pytest.raises(LmmhmcError, match=r"marginalize='some': no grouping term 'some' .*"
                                          r"'Days \| Subject'; marginalize takes 'auto', "
                                          r"'all', 'none' or a list of these terms"):
        lmmhmc.fit("Reaction ~ Days + (Days | Subject)", sleep, marginalize="some")


def test_parallel_chains_need_synchronous_dispatch(sleep: pd.DataFrame,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from lmmhmc import runtime

    monkeypatch.setattr(runtime, "parallel_chains_possible", lambda: False)
    with pytest.raises(LmmhmcError, match="chain_method='parallel' needs JAX's synchronous CPU "
                                          r"dispatch.*jax_cpu_enable_async_dispatch', False\) "
                                          "right after importing jax.*'sequential'"):
        lmmhmc.fit("Reaction ~ Days + (Days | Subject)", sleep, chain_method="parallel")


def test_a_model_that_reproduces_the_response_errs(sleep: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"the fixed part \(Intercept, Reaction\) reproduces the "
                                        r"response 'Reaction' exactly"):
        lmmhmc.Model("Reaction ~ Reaction + (1 | Subject)", sleep)
    subject_means = sleep.groupby("Subject", observed=True)["Reaction"].transform("mean")
    message = (r"the fixed part and the intercepts of '\(Days \| Subject\)' reproduce the "
               r"response '{}' exactly")
    with pytest.raises(DataError, match=message.format("mean")):
        lmmhmc.Model("mean ~ Days + (Days | Subject)", sleep.assign(mean=subject_means))
    with pytest.raises(DataError, match=message.format("shifted")):
        lmmhmc.Model("shifted ~ Days + (Days | Subject)",
                     sleep.assign(shifted=subject_means + 2.5 * sleep["Days"]))


def test_extreme_scales_err(sleep: pd.DataFrame) -> None:
    formula = "Reaction ~ Days + (1 | Subject)"
    for factor in (1e200, 1e-200):
        with pytest.raises(DataError, match="response 'Reaction' varies on an extreme scale"):
            lmmhmc.Model(formula, sleep.assign(Reaction=sleep["Reaction"] * factor))
    with pytest.raises(DataError, match="fixed-effect column 'Days' has values as large as 9e"
                                        ".*rescale"):
        lmmhmc.Model(formula, sleep.assign(Days=sleep["Days"] * 1e200))
