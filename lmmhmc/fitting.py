"""A fit, stage by stage: plan, assemble, start, chains, recovery, ArviZ, FitResult.

::

    Design --make_plan--> Plan --assemble--> AssembledModel --ML start--> starting points
           --centering.choose--> levels sampled centered
           --ChainRunner--> draws --recover_all--> random effects, log-likelihood
           --to_inference_data--> InferenceData --> FitResult
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .assembled import AssembledModel, assemble
from .centering import centered, choose
from .chains import WARMUP_STEPS, ChainRunner, Settings
from .errors import ConvergenceWarning, LmmhmcError, warn
from .inference_data import to_inference_data
from .laplace_ml import fit_laplace
from .layout import Layout
from .ml import fit_ml
from .options import DENSE_MASS_MAX_DIM, LOG_LIK_MAX_CELLS, FitOptions
from .plan import make_plan
from .priors import resolve_priors
from .progress import Progress
from .recovery import lower_recovery, posterior_predictive, recover_all
from .results import FitResult
from .runtime import (
    cores,
    enable_compilation_cache,
    resolve_chain_method,
    single_threaded_blas,
)
from .starts import anchored_priors, ml_init, newton_start, prior_init, start_shapes

__all__ = ["fit_model"]


def fit_model(model, options: FitOptions,
              priors: Mapping[str, dist.Distribution] | None = None) -> FitResult:
    """Sample the posterior of ``model`` (a [`lmmhmc.Model`][lmmhmc.Model]) with ``options``."""
    with single_threaded_blas():
        enable_compilation_cache()
        design = model.design
        family = model.family
        plan = make_plan(design, options.marginalize, family=family)
        assembled = assemble(design, plan, resolve_priors(design, priors, family),
                             family=family)
        return _sample(model, assembled, options)


def _resolved(assembled: AssembledModel, options: FitOptions) -> FitOptions:
    """``options`` with the automatic choices made (dense mass, chain method, log-likelihood)."""
    o = options
    layout = assembled.layout
    # a non-Gaussian family samples the reparameterized terms' z too (lmmhmc.laplace)
    dims = assembled.plan.sampled_dims + (0 if layout.gaussian else sum(
        layout.terms[k].n_levels * layout.terms[k].d for k in layout.marginalized))
    method = resolve_chain_method(o.chain_method, o.chains)
    loglik = o.log_likelihood if o.log_likelihood is not None else (
        o.chains * o.draws * assembled.design.n_obs <= LOG_LIK_MAX_CELLS)
    return o.replace(dense_mass=_mass_matrix(layout, dims, o.dense_mass), chain_method=method,
                     log_likelihood=bool(loglik))


def _mass_matrix(layout: Layout, dims: int,
                 dense_mass: bool | tuple[str, ...] | None) -> bool | tuple[str, ...]:
    """The mass matrix's form (`lmmhmc.chains.Settings.dense_mass`) for ``dense_mass``: dense
    up to `DENSE_MASS_MAX_DIM` sampled dimensions; above, a dense block over the parameters
    (every site but the random effects' standard-normal ones) when there are 2 to
    `DENSE_MASS_MAX_DIM` of them, else diagonal."""
    shapes = layout.site_shapes()
    if isinstance(dense_mass, tuple):
        unknown = sorted(set(dense_mass) - set(shapes))
        if unknown:
            raise LmmhmcError(f"dense_mass names {unknown}, which are not sampled parameters of "
                              f"this model ({', '.join(shapes)}); pass True, False or None")
        return dense_mass
    if dense_mass is not None:
        return bool(dense_mass)
    if dims <= DENSE_MASS_MAX_DIM:
        return True
    block = tuple(sorted(set(shapes) - layout.effect_sites()))
    size = sum(int(np.prod(shapes[name])) for name in block)
    return block if 2 <= size <= DENSE_MASS_MAX_DIM else False


def _sample(model, assembled: AssembledModel, options: FitOptions) -> FitResult:
    o = _resolved(assembled, options)
    progress = Progress(bool(o.progress))
    runner = ChainRunner(assembled.structure, Settings(
        warmup=o.warmup, draws=o.draws, target_accept=float(o.target_accept),
        dense_mass=o.dense_mass, max_tree_depth=o.max_tree_depth, progress=bool(o.progress)),
        method=o.chain_method, workers=cores(), progress=progress)
    key_mcmc, key_init, key_recover, key_pp = jax.random.split(jax.random.key(o.seed), 4)
    n_draws = o.chains * o.draws
    keys = jax.random.split(key_recover, n_draws)
    shaped = anchored_priors(assembled, None) if o.init == "ml" else assembled.internal_priors()
    start = start_shapes(assembled, shaped)
    recovery = lower_recovery(assembled, shaped, start, keys[:o.draws], o.log_likelihood)
    compilers = [*runner.compilers(assembled.data, shaped, start, key_mcmc), recovery.compile]
    timings: dict[str, float] = {}
    # A background thread compiles the chain programs (while the ML start runs) and then the
    # recovery (while the chains run; it is called as compiled, a chain's draws at a time).
    # (Tracing stays on this thread: NumPyro's effect handlers are not thread-safe.)
    with ThreadPoolExecutor(max_workers=1) as pool:
        compiled = [pool.submit(compile_) for compile_ in compilers]
        t0 = time.perf_counter()
        ml = None
        if o.init == "ml":
            with progress.stage("ML start", "maximizing the likelihood over "
                                f"{assembled.layout.n_theta()} covariance parameters"):
                ml = _fit_ml(assembled)
        # which levels are sampled centered: data of the compiled programs, chosen now
        assembled = centered(assembled, choose(assembled, ml, o.centering))
        if ml is not None:
            assembled = newton_start(assembled, ml)
            priors = anchored_priors(assembled, ml)
            init = ml_init(assembled, priors, ml, o.chains, key_init)
        else:
            priors = shaped
            init = prior_init(assembled, priors, o.chains, key_init)
        timings["init"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _wait(compiled[:-1], progress, "compiling the sampler")
        timings["compile_wait"] = time.perf_counter() - t0  # what the ML start did not cover
        t0 = time.perf_counter()
        samples, stats = runner.run(assembled.data, priors, init, key_mcmc)
        timings["sampling"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _wait(compiled[-1:], progress, "compiling the recovery")
    samples = assembled.units.to_external(samples)
    gradients = {"warmup": int(np.sum(stats.pop(WARMUP_STEPS))),
                 "sampling": int(np.sum(stats["num_steps"]))}
    flat = jax.tree.map(lambda a: jnp.asarray(a.reshape((n_draws,) + a.shape[2:])), samples)
    what = "random effects" + (" and log-likelihood" if o.log_likelihood else "")
    with progress.stage("recovery", f"{what} of {n_draws} draws"):
        effects, loglik = recover_all(recovery, assembled, flat, keys,
                                      batch=o.draws, workers=cores())
    timings["recovery"] = time.perf_counter() - t0
    yrep = None
    if o.posterior_predictive:
        with progress.stage("posterior predictive", f"{n_draws} replicated data sets"):
            yrep = jax.block_until_ready(posterior_predictive(assembled, flat, effects, key_pp))
    idata = to_inference_data(assembled, samples, effects, loglik, yrep, stats)
    result = FitResult(idata=idata, model=model, assembled=assembled, options=o,
                       timings=timings, gradients=gradients, ml=ml)
    with progress.stage("diagnostics", "R-hat and ESS of every parameter and random effect"):
        problems = result.diagnostics.problems()
    if problems:
        warn("the fit may not have converged: " + "; ".join(problems)
             + " (FitResult.diagnostics has the figures)", ConvergenceWarning)
    return result


def _fit_ml(assembled: AssembledModel):
    """The ML start: lme4's ``lmer`` fit, or ``glmer``'s Laplace fit for a non-Gaussian
    family."""
    if assembled.layout.gaussian:
        return fit_ml(assembled.design, starts=1, kernel=assembled.ml_kernel)
    return fit_laplace(assembled.design, assembled.likelihood, starts=1,
                       kernel=assembled.ml_kernel)


def _wait(jobs: list, progress: Progress, what: str) -> None:
    """Wait for background compilations, reported as a stage when they are not done yet."""
    if all(job.done() for job in jobs):
        for job in jobs:
            job.result()  # raise a compilation error here
        return
    with progress.stage(what):
        for job in jobs:
            job.result()
