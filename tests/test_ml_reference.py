"""fit_ml against lme4: ML and REML fits pinned in ``tests/reference/lme4_lmm.json``.

The JSON is written by ``tests/reference/lme4_lmm.R`` (R 4.2.2, lme4 1.1.31, Matrix 1.5.3;
see ``tests/reference/README.md``); R is not needed to run these tests. Cases: crossed
correlated ``(1 + x | subj) + (1 | item)`` on the unbalanced data, the same with weights
(``Var(eps_i) = sigma^2 / w_i``), uncorrelated ``(1 + x || subj)``, grouseticks with crossed
and with nested ``(1 | LOCATION/BROOD)`` terms (YEAR categorical as in lme4, and numeric), and
cake's interaction factor ``(1 | recipe:replicate)``.

Tolerances. lme4 was run with two optimizers at tolerances 1e-12 (nloptwrap and bobyqa); their
objectives agree to 4e-10 and their theta to 1e-5 at worst (grouseticks with numeric YEAR,
REML: a flat direction, the LOCATION sd near 0.06), 1e-7 elsewhere. lmmhmc's L-BFGS-B optimum
was observed within 1e-9 of lme4's objective, 1.3e-5 of its theta, 2e-7 relative in beta, se
and sigma, and 1.3e-4 relative in the smallest sd (the same flat case; 0.6e-5 absolute).
The assertions leave one to two orders of magnitude of room over those observations:

- objective: no more than 1e-6 above lme4's (lmmhmc found a worse optimum) and no more than
  1e-4 below it (lme4 would have stopped early, which the two-optimizer check rules out);
- theta: 1e-4 absolute (theta is sd / sigma, of order 1 here);
- beta: 1e-4 of its standard error; se and sigma: 1e-4 relative;
- sds: 1e-4 relative plus 1e-4 sigma absolute (what a theta error of 1e-4 moves an sd by);
- correlations: 1e-4 absolute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmhmc
from lmmhmc.datasets import load

HERE = Path(__file__).parent
REFERENCE = json.loads((HERE / "reference" / "lme4_lmm.json").read_text())
CASES = REFERENCE["cases"]

OBJ_ABOVE, OBJ_BELOW = 1e-6, 1e-4
THETA_ABS = 1e-4
BETA_IN_SE = 1e-4
REL = 1e-4
CORR_ABS = 1e-4


def case_data(name: str) -> pd.DataFrame:
    if name.startswith("crossed") or name == "uncorrelated":
        return pd.read_csv(HERE / "data" / "unbalanced.csv")
    if name.startswith("grouseticks"):
        data = load("grouseticks")
        if name == "grouseticks_year_numeric":
            data = data.assign(YEAR=data["YEAR"].astype(str).astype(float))
        return data
    if name == "cake":
        return load("cake")
    raise KeyError(name)


@pytest.fixture(scope="module")
def models() -> dict[str, lmmhmc.Model]:
    return {name: lmmhmc.Model(case["formula_lmmhmc"], case_data(name), weights=case["weights"])
            for name, case in CASES.items()}


def test_reference_file_is_complete():
    assert set(CASES) == {"crossed", "crossed_weighted", "uncorrelated", "grouseticks",
                          "grouseticks_nested", "grouseticks_year_numeric", "cake"}
    assert REFERENCE["versions"]["lme4"] == "1.1.31"
    for case in CASES.values():
        for kind in ("ml", "reml"):
            ref = case[kind]
            assert ref["converged_message"] == ""
            # the two optimizers agree: the pins are converged
            assert abs(ref["check"]["objective"] - ref["objective"]) < 1e-8
            assert ref["check"]["max_abs_theta_diff"] < 1e-4


@pytest.mark.parametrize("kind", ["ml", "reml"])
@pytest.mark.parametrize("name", list(CASES))
def test_fit_ml_matches_lme4(models, name, kind):
    ref = CASES[name][kind]
    model = models[name]
    res = model.fit_ml(reml=kind == "reml")
    assert res.converged
    assert res.reml is (kind == "reml")

    assert ref["objective"] - OBJ_BELOW <= res.objective <= ref["objective"] + OBJ_ABOVE, (
        res.objective - ref["objective"])
    np.testing.assert_allclose(res.theta, ref["theta_lmmhmc"], rtol=0, atol=THETA_ABS)

    assert list(res.beta.index) == list(ref["beta"])
    for coef, value in ref["beta"].items():
        assert abs(res.beta[coef] - value) <= BETA_IN_SE * ref["se"][coef], coef
        assert res.se[coef] == pytest.approx(ref["se"][coef], rel=REL), coef
    assert res.sigma == pytest.approx(ref["sigma"], rel=REL)

    sds = {col: float(v) for term in res.sds.values() for col, v in term.items()}
    assert set(sds) == set(ref["sds"])
    for col, value in ref["sds"].items():
        assert sds[col] == pytest.approx(value, rel=REL, abs=REL * ref["sigma"]), col

    assert len(res.corrs) == len(ref["corrs"])
    for corr in ref["corrs"]:
        (matrix,) = [m for m in res.corrs.values() if corr["var1"] in m.index]
        assert matrix.loc[corr["var1"], corr["var2"]] == pytest.approx(corr["corr"],
                                                                       abs=CORR_ABS)


def test_nested_equals_crossed_with_unique_labels():
    """BROOD labels are unique across LOCATIONs: (1 | LOCATION/BROOD) is the crossed model."""
    crossed, nested = CASES["grouseticks"], CASES["grouseticks_nested"]
    for kind in ("ml", "reml"):
        assert nested[kind]["objective"] == pytest.approx(crossed[kind]["objective"], abs=1e-8)
