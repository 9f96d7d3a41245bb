"""fit_ml against published lme4 / MixedModels.jl values and a dense REML reference."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import lmmhmc
from lmmhmc.assembled import profile_kernel
from lmmhmc.datasets import load
from lmmhmc.layout import parameter_layout
from lmmhmc.ml import (
    GRAD_TOL,
    central_gradient,
    optimizer_converged,
    profiled_deviance,
    theta_to_factors,
)

# ../shared/data/lme4/SOURCES.md (MixedModels.jl test/pls.jl): ML objectives (-2 log L)
PUBLISHED_ML = {
    "Dyestuff": 327.32705988112673,
    "Dyestuff2": 162.87303665382575,
    "sleepstudy": 1751.9393444636682,
}


@pytest.mark.parametrize("name", ["Dyestuff", "Dyestuff2"])
def test_dyestuff_ml_objective(name):
    res = lmmhmc.Model("Yield ~ 1 + (1 | Batch)", load(name)).fit_ml()
    assert res.objective == pytest.approx(PUBLISHED_ML[name], abs=1e-3)
    if name == "Dyestuff":
        assert res.sigma == pytest.approx(49.51010035223816, rel=1e-4)
        assert res.sds["1 | Batch"].iloc[0] == pytest.approx(37.260343703061764, rel=1e-4)
        assert res.beta["Intercept"] == pytest.approx(1527.5, rel=1e-6)
    else:  # boundary: the batch sd is exactly 0 at the optimum
        assert res.sds["1 | Batch"].iloc[0] == pytest.approx(0.0, abs=1e-4)
        assert res.beta["Intercept"] == pytest.approx(5.6656, abs=1e-4)


def test_sleepstudy_ml_matches_published():
    res = lmmhmc.Model("Reaction ~ Days + (Days | Subject)", load("sleepstudy")).fit_ml()
    assert res.objective == pytest.approx(PUBLISHED_ML["sleepstudy"], abs=1e-3)
    np.testing.assert_allclose(res.beta.values, [251.40510484848454, 10.467285959596126], rtol=1e-4)
    sds = res.sds["Days | Subject"].values
    np.testing.assert_allclose(sds, [23.78066, 5.71684], rtol=1e-4)
    np.testing.assert_allclose(res.theta, [0.9292297, 0.0181647, 0.2226460], atol=1e-4)


def test_sleepstudy_uncorrelated_ml_sd():
    res = lmmhmc.Model("Reaction ~ Days + (Days || Subject)", load("sleepstudy")).fit_ml()
    assert res.sds["Days || Subject"].iloc[0] == pytest.approx(24.17136, rel=1e-4)
    assert "Days || Subject" not in res.corrs


def test_sleepstudy_reml_matches_lme4_summary():
    """lme4's printed REML fit: criterion 1743.6, sds 24.741 / 5.922, corr 0.07, sigma 25.592."""
    res = lmmhmc.Model("Reaction ~ Days + (Days | Subject)", load("sleepstudy")).fit_ml(reml=True)
    assert res.objective == pytest.approx(1743.6, abs=0.05)
    np.testing.assert_allclose(res.sds["Days | Subject"].values, [24.741, 5.922], atol=1e-3)
    assert res.sigma == pytest.approx(25.592, abs=1e-3)
    assert res.corrs["Days | Subject"].iloc[0, 1] == pytest.approx(0.066, abs=0.005)
    # standard errors of beta (lme4: 6.825, 1.546)
    np.testing.assert_allclose(res.se.values, [6.825, 1.546], atol=1e-3)


@pytest.mark.parametrize("reml", [False, True])
def test_profiled_criterion_matches_dense(reml):
    """The profiled deviance at an arbitrary theta equals the dense-matrix computation."""
    model = lmmhmc.Model("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    des = model.design
    terms = list(des.terms)
    theta = np.array([0.8, 0.1, 0.3])
    layout = parameter_layout(des)
    dev, _ = profiled_deviance(profile_kernel(des), layout, *des.X.shape, jnp.asarray(theta),
                               reml)
    t = np.asarray(theta_to_factors(jnp.asarray(theta), layout)[0])
    term = terms[0]
    n, p = des.X.shape
    z = np.zeros((n, term.n_levels * 2))
    for i in range(n):
        z[i, 2 * term.index[i] : 2 * term.index[i] + 2] = term.block[i]
    v = np.eye(n) + z @ np.kron(np.eye(term.n_levels), t @ t.T) @ z.T
    vi = np.linalg.inv(v)
    xvx = des.X.T @ vi @ des.X
    beta = np.linalg.solve(xvx, des.X.T @ vi @ des.y)
    resid = des.y - des.X @ beta
    rss = resid @ vi @ resid
    dof = n - p if reml else n
    ref = np.linalg.slogdet(v)[1] + dof * (1 + np.log(2 * np.pi * rss / dof))
    if reml:
        ref += np.linalg.slogdet(xvx)[1]
    assert float(dev) == pytest.approx(ref, rel=1e-10)


def test_ml_result_prints_like_lme4() -> None:
    columns = ["1|Subject", "Days|Subject"]
    ml = lmmhmc.ml.MLResult(
        reml=True, beta=pd.Series([251.405, 10.467], index=["Intercept", "Days"]),
        se=pd.Series([6.825, 1.546], index=["Intercept", "Days"]), sigma=25.592,
        sds={"Days | Subject": pd.Series([24.741, 5.922], index=columns)},
        corrs={"Days | Subject": pd.DataFrame([[1.0, 0.066], [0.066, 1.0]], index=columns,
                                              columns=columns)},
        objective=1743.6283, theta=np.zeros(3), converged=True, n_evals=1, seconds=0.0)
    lines = str(ml).splitlines()
    assert lines[:3] == ["REML fit: REML criterion = 1743.6283", "", "Random effects:"]
    assert lines[3].split() == ["Groups", "Name", "Std.Dev.", "Corr"]
    assert lines[4].split() == ["Days", "|", "Subject", "1|Subject", "24.741"]
    assert lines[5].split() == ["Days|Subject", "5.922", "0.07"]
    assert lines[6].split() == ["Residual", "25.592"]
    assert lines[7:9] == ["", "Fixed effects:"]
    assert lines[9].split() == ["Estimate", "Std.", "Error", "t", "value"]
    t_values = [float(line.split()[-1]) for line in lines[10:12]]
    np.testing.assert_allclose(t_values, [251.405 / 6.825, 10.467 / 1.546], rtol=1e-4)


def test_an_optimizer_stop_counts_as_converged_by_its_projected_gradient() -> None:
    """L-BFGS-B's failed line search at an optimum (gradient at rounding-noise level) is a
    converged fit, as lme4's gradient check has it; a large gradient is not, unless it only
    pushes a parameter against its lower bound."""
    def stop(x, jac, success=False):
        return SimpleNamespace(x=np.asarray(x, float), jac=np.asarray(jac, float),
                               success=success)

    assert optimizer_converged(stop([1.4, 0.1], [1.6e-5, 2.6e-6]))
    assert not optimizer_converged(stop([1.4, 0.1], [1.6e-5, 10 * GRAD_TOL]))
    assert optimizer_converged(stop([1.4, 0.1], [1.0, 1.0], success=True))
    lower = np.array([0.0, 0.0])
    assert optimizer_converged(stop([1.4, 0.0], [1e-6, 0.5]), lower)
    assert not optimizer_converged(stop([1.4, 0.0], [1e-6, -0.5]), lower)


def test_the_convergence_check_gradient_matches_the_exact_gradient() -> None:
    """The central-difference gradient that judges COBYQA's convergence agrees with JAX's
    reverse-mode gradient of the profiled deviance, away from the optimum (where it is large)
    and at it (where it must be below `GRAD_TOL`)."""
    model = lmmhmc.Model("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    kernel = profile_kernel(model.design)
    layout = parameter_layout(model.design)
    n, p = model.design.X.shape

    def deviance(theta):
        return profiled_deviance(kernel, layout, n, p, jnp.asarray(theta), False)[0]

    res = model.fit_ml()
    for theta in (np.array([0.5, 0.1, 0.2]), res.theta):
        exact = np.asarray(jax.grad(deviance)(jnp.asarray(theta)))
        approx = central_gradient(lambda t: float(deviance(t)), theta)
        np.testing.assert_allclose(approx, exact, rtol=1e-6, atol=1e-5)
    assert res.converged and np.max(np.abs(approx)) < GRAD_TOL
