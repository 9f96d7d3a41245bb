"""Maximum likelihood of a generalized linear mixed model by the Laplace approximation
(lme4's ``glmer``, ``nAGQ = 1``).

For ``psi = (theta, beta)`` (lme4's relative covariance factors ``T_k``, here the factors
``Lambda_k`` themselves, and the fixed effects) the deviance is::

    -2 log L(psi) = -2 [ log p(y | v^) - |v^|^2 / 2 - log|L(v^)| ]

at the conditional mode ``v^`` of the spherical effects (`lmmhmc.laplace`), with the data's
normalising constants (``log C(n, y)``, ``log y!``) included: ``-2 * logLik(fit)`` in lme4,
the ``deviance`` column of its AIC table (not ``deviance(fit)``). ``theta`` and ``beta`` are
optimised jointly by L-BFGS-B with JAX gradients; the mode is found by damped Newton steps
from ``v = 0``, and two differentiable Newton steps from it give
its exact derivatives (one would in exact arithmetic; the second makes the gradient robust to a
mode found to finite precision). The fixed effects' standard errors come from the inverse of
half the Hessian of the deviance in ``(theta, beta)``, as lme4's ``vcov`` of a ``glmer`` fit
(``use.hessian``); here by central differences of the exact gradient.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.optimize import minimize

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .design import Design
from .laplace import laplace_log_likelihood, mode
from .layout import parameter_layout
from .marginal import MarginalKernel, prepare
from .ml import (
    START_SCALES,
    MLResult,
    best_of_starts,
    central_gradient,
    optimizer_converged,
    random_effect_scales,
    theta_to_factors,
)
from .options import ML_STARTS
from .plan import elimination
from .runtime import enable_compilation_cache, single_threaded_blas

__all__ = ["fit_laplace", "glm_start"]

#: Iteratively reweighted least-squares steps of the fixed-effects-only start.
_GLM_STEPS = 25


def glm_start(design: Design, family, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed effects of the GLM without random effects and their standard errors
    (Newton / IRLS, as R's ``glm``, started from the link of ``(y + 1/2) / (n + 1)`` for
    bernoulli and binomial, ``y + 1/2`` for poisson)."""
    X, y, o = design.X, design.y, design.offset
    if family.name == "poisson":
        eta = np.log(y + 0.5)
    else:
        p = (y + 0.5) / (n + 1.0)
        eta = np.log(p / (1 - p))
    beta = np.linalg.lstsq(X, eta - o, rcond=None)[0]
    for _ in range(_GLM_STEPS):
        g, w = (np.asarray(a) for a in family.working(jnp.asarray(y), jnp.asarray(X @ beta + o),
                                                       {}, jnp.asarray(n)))
        info = X.T @ (w[:, None] * X) + 1e-12 * np.eye(X.shape[1])
        beta = beta + np.linalg.solve(info, X.T @ g)
    return beta, np.sqrt(np.diag(np.linalg.inv(info)))


def fit_laplace(design: Design, family, starts: int = ML_STARTS,
                kernel: MarginalKernel | None = None) -> MLResult:
    """Laplace maximum-likelihood estimates of a GLMM, as lme4's ``glmer`` (``nAGQ = 1``).

    Parameters
    ----------
    design : Design
        The model design (``design.trials`` for a binomial response).
    family
        A `lmmhmc.families` family.
    starts : int, default 1
        Number of starting points for ``theta`` (1, 0.1 and 5 times lme4's start, in that
        order; `lmmhmc.options.ML_STARTS`); the best optimum is kept.
    kernel : MarginalKernel, optional
        The kernel of every term (a fit passes its assembled model's); prepared here when
        omitted.

    Returns
    -------
    MLResult
        ``objective`` is ``-2 log L`` with the normalising constants; ``sigma`` is 1 (lme4's
        ``sigma()`` of a family without a dispersion parameter).
    """
    with single_threaded_blas():
        return _fit_laplace(design, family, starts, kernel)


def _fit_laplace(design: Design, family, starts: int, kernel: MarginalKernel | None) -> MLResult:
    design.require_terms()
    enable_compilation_cache()
    t0 = time.perf_counter()
    layout = parameter_layout(design)
    n_theta = layout.n_theta()
    n = design.trials if design.trials is not None else np.ones(design.n_obs)
    beta0, unit = glm_start(design, family, n)
    data = {"y": jnp.asarray(design.y), "n": jnp.asarray(n), "X": jnp.asarray(design.X),
            "o": jnp.asarray(design.offset),
            "index": tuple(jnp.asarray(t.index) for t in design.terms),
            "block": tuple(jnp.asarray(t.block) for t in design.terms),
            "unit": jnp.asarray(unit)}
    kernel = prepare(design.terms, None, elimination(design.terms)) if kernel is None else kernel

    def pieces(x, d):  # x: theta, then beta in units of the GLM's standard errors
        lams = theta_to_factors(x[:n_theta], layout)
        eta0 = d["X"] @ (x[n_theta:] * d["unit"]) + d["o"]
        return d["y"], d["n"], eta0, d["index"], d["block"], lams

    def deviance(x, at, k, d):
        return -2.0 * laplace_log_likelihood(k, family, *pieces(x, d), at, steps=2)

    zeros = [jnp.zeros((t.n_levels, t.d)) for t in design.terms]
    find_mode = jax.jit(lambda x, k, d: mode(k, family, *pieces(x, d), (zeros, zeros)))
    value_and_grad = jax.jit(jax.value_and_grad(deviance))

    def fun(x):
        x = jnp.asarray(x)
        v, g = value_and_grad(x, find_mode(x, kernel, data), kernel, data)
        return float(v), np.asarray(g, dtype=np.float64)

    diag = np.concatenate([np.equal(*t.theta_entries()) for t in layout.terms])
    best, n_evals = best_of_starts(
        lambda x0: minimize(fun, x0, jac=True, method="L-BFGS-B",
                            options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-7}),
        [np.concatenate([diag * scale, beta0 / unit]) for scale in START_SCALES[: max(1, starts)]])
    dev = fun(best.x)[0]
    jacobian = central_gradient(lambda y: fun(y)[1], best.x)  # of the exact gradient
    hessian = (jacobian + jacobian.T) / 2
    scaled = np.concatenate([np.ones(n_theta), unit])
    cov = np.linalg.inv(hessian / 2.0 / np.outer(scaled, scaled))[n_theta:, n_theta:]
    # a column of T_k and its sign-flipped copy give the same G_k: report diag(T_k) >= 0
    factors = [f * np.where(np.diag(f) < 0, -1.0, 1.0)
               for f in (np.asarray(f) for f in theta_to_factors(best.x[:n_theta], layout))]
    theta = np.concatenate([f[t.theta_entries()] for f, t in zip(factors, layout.terms,
                                                                   strict=True)])
    sds, corrs = random_effect_scales(design, factors)
    return MLResult(
        reml=False,
        beta=pd.Series(np.asarray(best.x[n_theta:]) * unit, index=design.x_names),
        se=pd.Series(np.sqrt(np.diag(cov)), index=design.x_names),
        sigma=1.0,
        sds=sds,
        corrs=corrs,
        objective=dev,
        theta=theta,
        converged=optimizer_converged(best),
        n_evals=n_evals,
        seconds=time.perf_counter() - t0,
        factors=factors,
        family=family.name,
    )
