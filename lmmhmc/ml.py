"""Maximum likelihood and REML estimates from the marginalization kernels (lme4's answer).

lme4's parameterization: every term's covariance is ``G_k = sigma^2 T_k T_k^T`` with ``T_k``
lower triangular (``theta`` holds its entries, diagonal bounded below by 0). With
``V = W^{-1} + Z T T^T Z^T`` one call of
[`MarginalKernel.gram()`][lmmhmc.marginal.MarginalKernel.gram] on ``[X, y]`` (with ``sigma = 1``,
``Lambda = T``) gives ``log|V|`` and the generalized least-squares Gram matrix, so ``beta`` and
``sigma`` are profiled out exactly::

    beta(theta) = (X^T V^-1 X)^-1 X^T V^-1 y,    RSS = y^T V^-1 y - X^T V^-1 y . beta
    ML:   -2 l = log|V| + N (1 + log(2 pi RSS / N))
    REML: -2 l = log|V| + log|X^T V^-1 X| + (N - p) (1 + log(2 pi RSS / (N - p)))

``theta`` is optimised without derivatives by COBYQA (scipy's successor of the BOBYQA that lme4
and MixedModels.jl use): on InstEval the deviance costs 25 ms and its reverse-mode gradient
six times that, and L-BFGS-B needed 26 to 36 gradients where COBYQA needs 74 deviances.
Convergence is judged as lme4's ``check.conv.grad`` does, by a central-difference gradient at
the optimum. With an offset ``o``, ``y`` is ``y - o`` throughout
(`lmmhmc.assembled.fixed_columns`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.optimize import Bounds, minimize

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .assembled import profile_kernel
from .design import Design
from .layout import Layout, parameter_layout
from .marginal import LOG_2PI, Affine, MarginalKernel
from .options import ML_STARTS
from .runtime import enable_compilation_cache, single_threaded_blas


def theta_to_factors(theta: jax.Array, layout: Layout) -> list[jax.Array]:
    """Lower-triangular relative factors ``T_k`` from the flat ``theta`` vector (lme4's order,
    [`lmmhmc.layout.TermLayout.theta_entries()`][lmmhmc.layout.TermLayout.theta_entries])."""
    factors, start = [], 0
    for t in layout.terms:
        rows, cols = t.theta_entries()
        n = len(rows)
        factors.append(jnp.zeros((t.d, t.d)).at[rows, cols].set(theta[start : start + n]))
        start += n
    return factors


def profiled_deviance(kernel: MarginalKernel, layout: Layout, n: int, p: int, theta,
                      reml: bool):
    """Profiled deviance at ``theta`` and the GLS pieces ``(beta, RSS / dof, X^T V^-1 X)``.

    ``kernel`` marginalizes every term, with the columns ``F = [X, y - o]`` precomputed
    (`lmmhmc.assembled.profile_kernel`).
    """
    logdet, gram = kernel.gram(Affine(jnp.eye(p + 1)), 1.0, theta_to_factors(theta, layout))
    xtx, xty, yty = gram[:p, :p], gram[:p, p], gram[p, p]
    chol = jnp.linalg.cholesky(xtx) if p else jnp.zeros((0, 0))
    beta = jax.scipy.linalg.cho_solve((chol, True), xty) if p else jnp.zeros(0)
    rss = yty - xty @ beta
    dof = n - p if reml else n
    dev = logdet + dof * (1.0 + LOG_2PI + jnp.log(rss / dof))
    if reml:
        dev = dev + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return dev, (beta, rss / dof, xtx)


def _deviance(theta, kernel: MarginalKernel, layout: Layout, n: int, p: int, reml: bool):
    """The profiled deviance alone (what the optimizer minimizes)."""
    return profiled_deviance(kernel, layout, n, p, theta, reml)[0]


def _optimum(theta, kernel: MarginalKernel, layout: Layout, n: int, p: int, reml: bool):
    """The profiled deviance, its GLS pieces and the relative factors ``T_k``."""
    return profiled_deviance(kernel, layout, n, p, theta, reml), theta_to_factors(theta, layout)


#: Largest absolute gradient (projected on the bounds) of the objective at which an optimizer
#: run that stopped for another reason still counts as converged: the tolerance of lme4's
#: ``check.conv.grad``. L-BFGS-B's line search can fail on the rounding noise of the gradient
#: at the optimum (grouseticks with a numeric YEAR near 96: gradient 2e-5, objective 1e-9
#: below lme4's).
GRAD_TOL = 2e-3


def optimizer_converged(res, lower: np.ndarray | None = None,
                        jac: np.ndarray | None = None) -> bool:
    """Whether a `scipy.optimize.minimize` result ``res`` is at an optimum: it says so, or the
    gradient ``jac`` (``res.jac`` when omitted), projected on the lower bounds ``lower`` (zero
    where a parameter sits on its bound and the gradient points out of the box), is below
    `GRAD_TOL` everywhere."""
    g = np.asarray(res.jac if jac is None else jac, dtype=float)
    if lower is not None:
        g = np.where((np.asarray(res.x) <= lower) & (g > 0), 0.0, g)
    return bool(res.success or np.max(np.abs(g), initial=0.0) < GRAD_TOL)


def central_gradient(fun, x: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """``(f(x + h e_i) - f(x - h e_i)) / 2h`` per coordinate ``i`` (row ``i`` for a vector
    ``f``, e.g. a gradient, whose central differences are then the Hessian).

    The error is ``O(h^2)`` times the third derivative, plus the objective's rounding over
    ``h`` (about ``1e-9 / 1e-5`` on InstEval's deviance of 2.4e5), far below `GRAD_TOL`. The
    deviance is defined for a negative diagonal entry of ``T_k`` too (``G_k = T_k T_k^T``), so
    a step below a bound of 0 is defined.
    """
    return np.array([(fun(x + step * e) - fun(x - step * e)) / (2.0 * step)
                     for e in np.eye(len(x))])


#: Starting points of ``theta``, as multiples of lme4's (identity factors); ``starts`` takes
#: the first ones.
START_SCALES = (1.0, 0.1, 5.0)


def best_of_starts(run, x0s: list[np.ndarray]):
    """``run(x0)`` (a `scipy.optimize.minimize` call) from every start in ``x0s``; returns
    the best result (the lowest objective, the earliest start within 1e-9 of it) and the
    number of evaluations."""
    results = [run(x0) for x0 in x0s]
    best = min(r.fun for r in results)
    return next(r for r in results if r.fun <= best + 1e-9), sum(r.nfev for r in results)


# module-level programs (the layout static), so that later fits of the same structure in a
# process reuse them instead of tracing and compiling again
_deviance_program = jax.jit(_deviance, static_argnums=(2, 3, 4, 5))
_at_optimum = jax.jit(_optimum, static_argnums=(2, 3, 4, 5))


@dataclass
class MLResult:
    """Maximum-likelihood (or REML) estimates of a linear mixed model.

    Attributes
    ----------
    beta, se : pandas.Series
        Fixed effects and their standard errors ``sqrt(diag(sigma^2 (X^T V^-1 X)^-1))``.
    sigma : float
        Residual standard deviation.
    sds : dict[str, pandas.Series]
        Random-effect standard deviations per term (indexed by column label).
    corrs : dict[str, pandas.DataFrame]
        Correlation matrix of each correlated term.
    objective : float
        ``-2 log L`` at the optimum (lme4's deviance), or the REML criterion; for a
        non-Gaussian family the Laplace approximation's, normalising constants included.
    theta : numpy.ndarray
        lme4's relative covariance factors (``T_k`` entries).
    family : str
        The response family (`lmmhmc.families`); ``sigma`` is 1 for families without one.
    """

    reml: bool
    beta: pd.Series
    se: pd.Series
    sigma: float
    sds: dict[str, pd.Series]
    corrs: dict[str, pd.DataFrame]
    objective: float
    theta: np.ndarray
    converged: bool
    n_evals: int
    seconds: float
    factors: list[np.ndarray] = field(repr=False, default_factory=list)
    family: str = "gaussian"

    def __str__(self) -> str:
        """lme4's summary: the criterion, the random effects (standard deviations and
        correlations per term, and the residual) and the fixed effects with their standard
        errors and t values ``estimate / std. error``."""
        kind = "REML criterion" if self.reml else "deviance (-2 log L)"
        what = "REML" if self.reml else "ML" if self.family == "gaussian" else (
            f"Laplace ML ({self.family})")
        stat = "t value" if self.family == "gaussian" else "z value"
        fixed = pd.DataFrame({"Estimate": self.beta, "Std. Error": self.se,
                              stat: self.beta / self.se})
        return "\n".join([
            f"{what} fit: {kind} = {self.objective:.4f}", "",
            "Random effects:", *self._random_effect_lines(), "",
            "Fixed effects:", fixed.to_string(float_format="{:.5g}".format),
        ])

    def _random_effect_lines(self) -> list[str]:
        """Groups, Name, Std.Dev. and Corr (the lower triangle, row by row), as lme4."""
        rows = [["Groups", "Name", "Std.Dev.", "Corr"]]
        for term, sds in self.sds.items():
            corr = self.corrs.get(term)
            for i, (name, sd) in enumerate(sds.items()):
                cells = [] if corr is None else [f"{corr.iloc[i, j]:5.2f}" for j in range(i)]
                rows.append([term if i == 0 else "", name, f"{sd:.5g}", " ".join(cells)])
        if self.family == "gaussian":
            rows.append(["Residual", "", f"{self.sigma:.5g}", ""])
        widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
        return [" " + "  ".join(cell.rjust(w) if k == 2 else cell.ljust(w)
                                for k, (cell, w) in enumerate(zip(row, widths, strict=True))
                                ).rstrip()
                for row in rows]


def random_effect_scales(design: Design, factors: list[np.ndarray]) -> tuple[dict, dict]:
    """Per term, the sds (a Series by column) and, for correlated terms, the correlation
    matrix (a DataFrame) of ``G_k = Lambda_k Lambda_k^T``."""
    sds, corrs = {}, {}
    for t, lam in zip(design.terms, factors, strict=True):
        g = lam @ lam.T
        sd = np.sqrt(np.diag(g))
        sds[t.text] = pd.Series(sd, index=t.columns)
        if t.correlated:
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = g / np.outer(sd, sd)
            corrs[t.text] = pd.DataFrame(corr, index=t.columns, columns=t.columns)
    return sds, corrs


def fit_ml(design: Design, reml: bool = False, starts: int = ML_STARTS,
           kernel: MarginalKernel | None = None) -> MLResult:
    """Maximum likelihood (``reml=False``) or REML estimates, as lme4's ``lmer``.

    Parameters
    ----------
    design : Design
        The model design.
    reml : bool
        Maximise the restricted likelihood instead of the likelihood.
    starts : int, default 1
        Number of starting points for ``theta`` (1, 0.1 and 5 times lme4's start, in that
        order; `lmmhmc.options.ML_STARTS`); the best optimum is kept.
    kernel : MarginalKernel, optional
        The kernel of every term with ``[X, y - o]`` precomputed (a fit passes its assembled
        model's); prepared here when omitted.
    """
    with single_threaded_blas():
        return _fit_ml(design, reml, starts, kernel)


def _fit_ml(design: Design, reml: bool, starts: int, kernel: MarginalKernel | None) -> MLResult:
    design.require_terms()
    enable_compilation_cache()
    t0 = time.perf_counter()
    kernel = profile_kernel(design) if kernel is None else kernel
    layout = parameter_layout(design)
    n, p = design.X.shape

    def fun(th):
        return float(_deviance_program(jnp.asarray(th), kernel, layout, n, p, reml))

    diag = np.concatenate([np.equal(*t.theta_entries()) for t in layout.terms])
    lower = np.where(diag, 0.0, -np.inf)
    best, n_evals = best_of_starts(
        lambda x0: minimize(fun, x0, method="COBYQA", bounds=Bounds(lower, np.inf),
                            options={"maxfev": 1000 * len(x0)}),
        [diag * scale for scale in START_SCALES[: max(1, starts)]])
    theta = best.x
    (dev, (beta, sigma2, xtx)), rel = jax.tree.map(
        np.asarray, _at_optimum(jnp.asarray(theta), kernel, layout, n, p, reml))
    sigma = float(np.sqrt(sigma2))
    cov_beta = sigma2 * np.linalg.inv(xtx) if design.X.shape[1] else np.zeros((0, 0))
    factors = [f * sigma for f in rel]
    sds, corrs = random_effect_scales(design, factors)
    return MLResult(
        reml=reml,
        beta=pd.Series(np.asarray(beta), index=design.x_names),
        se=pd.Series(np.sqrt(np.diag(cov_beta)), index=design.x_names),
        sigma=sigma,
        sds=sds,
        corrs=corrs,
        objective=float(dev),
        theta=theta,
        converged=optimizer_converged(best, lower, central_gradient(fun, best.x)),
        n_evals=n_evals,
        seconds=time.perf_counter() - t0,
        factors=factors,
    )
