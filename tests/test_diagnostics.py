"""Convergence report after every fit, and the same posterior at every scale of the data."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from conftest import FIT_SETTINGS, SLEEPSTUDY_FORMULA

import lmmhmc
from lmmhmc.datasets import load
from lmmhmc.diagnostics import ESS_PER_CHAIN, RHAT_MAX
from lmmhmc.errors import ConvergenceWarning

SCALES = (1e-8, 1.0, 1e12)
SCALARS = ["Intercept", "Days", "sigma", "1|Subject_sigma", "Days|Subject_sigma", "Subject_corr"]


def test_short_fit_warns_with_the_figures_and_the_worst_parameter():
    with pytest.warns(ConvergenceWarning) as caught:
        res = lmmhmc.fit(SLEEPSTUDY_FORMULA, load("sleepstudy"), chains=2, draws=30,
                         warmup=30, seed=3, progress=False)
    message = str(caught[0].message)
    diag = res.diagnostics
    # the figures are ArviZ's over every variable, random effects included
    summ = az.summary(res.idata, var_names=res.parameter_names(True), kind="diagnostics",
                      round_to="none")
    assert diag.max_r_hat == pytest.approx(summ["r_hat"].max())
    assert diag.min_ess_bulk == pytest.approx(summ["ess_bulk"].min())
    assert diag.min_ess_tail == pytest.approx(summ["ess_tail"].min())
    assert summ.loc[diag.worst_ess_bulk, "ess_bulk"] == pytest.approx(diag.min_ess_bulk)
    assert diag.min_ess_bulk < ESS_PER_CHAIN * 2  # 60 draws cannot give 200 effective ones
    assert f"min bulk ESS {diag.min_ess_bulk:.0f} < 200" in message
    assert f"'{diag.worst_ess_bulk}'" in message
    assert "run more draws" in message
    if diag.max_r_hat > RHAT_MAX:
        assert f"'{diag.worst_r_hat}'" in message
    assert res.header().splitlines()[-1].startswith("Convergence: max R-hat")
    assert len(diag.ebfmi) == 2 and not diag.converged


def test_converged_fit_reports_ok(sleepstudy_fit):
    diag = sleepstudy_fit.diagnostics
    line = sleepstudy_fit.header().splitlines()[-1]
    assert line.startswith(f"Convergence: max R-hat {diag.max_r_hat:.3f}")
    assert line.endswith("(ok)") == (not diag.problems(transitions=False))


@pytest.fixture(scope="module")
def scaled_fits():
    """sleepstudy with Reaction multiplied by 1e-8, 1 and 1e12: the same model."""
    data = load("sleepstudy")
    settings = dict(FIT_SETTINGS, draws=400, warmup=400)
    return {c: lmmhmc.fit(SLEEPSTUDY_FORMULA, data.assign(Reaction=data["Reaction"] * c),
                          seed=5, **settings) for c in SCALES}


def _scaled_summary(res, c):
    summ = az.summary(res.idata, var_names=SCALARS, kind="all", round_to="none")
    factor = np.array([1.0 if name.startswith("Subject_corr") else c for name in summ.index])
    return summ[["mean", "sd", "mcse_mean"]].mul(1.0 / factor, axis=0)


def test_every_scale_samples_alike(scaled_fits):
    """No tree-depth saturation, no divergence, and posterior means / scale that agree within
    4.5 combined MCSEs (30 comparisons) at 1e-8, 1 and 1e12."""
    base = _scaled_summary(scaled_fits[1.0], 1.0)
    for c, res in scaled_fits.items():
        diag = res.diagnostics
        assert diag.tree_depth_hits == 0 and diag.divergences == 0, (c, diag)
        summ = _scaled_summary(res, c)
        z = (summ["mean"] - base["mean"]).abs() / np.sqrt(summ["mcse_mean"] ** 2
                                                          + base["mcse_mean"] ** 2 + 1e-300)
        assert z.max() < 4.5, (c, z.sort_values().tail(3))


@pytest.mark.slow
def test_every_scale_converges_at_the_defaults():
    """The issue's acceptance: 4 x (1000 + 1000) at 1e-8, 1 and 1e12: R-hat below 1.01, no
    tree-depth hits, every scalar's mean / scale within 4 combined MCSEs and its sd within
    10 %."""
    data = load("sleepstudy")
    fits = {c: lmmhmc.fit(SLEEPSTUDY_FORMULA, data.assign(Reaction=data["Reaction"] * c),
                          progress=False) for c in SCALES}
    base = _scaled_summary(fits[1.0], 1.0)
    for c, res in fits.items():
        diag = res.diagnostics
        assert diag.max_r_hat < RHAT_MAX and diag.tree_depth_hits == 0, (c, diag)
        summ = _scaled_summary(res, c)
        z = (summ["mean"] - base["mean"]).abs() / np.sqrt(summ["mcse_mean"] ** 2
                                                          + base["mcse_mean"] ** 2)
        assert z.max() < 4.0, (c, z.sort_values().tail(3))
        assert (summ["sd"] / base["sd"]).between(0.9, 1.1).all(), c
