"""fit(): NUTS on the marginalized model, exact recovery of the random effects, ArviZ output."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.infer import init_to_sample
from numpyro.infer.util import constrain_fn, initialize_model, unconstrain_fn

from . import numpyro_model as nm
from .chains import WARMUP_STEPS, Settings, lower_program, run_chains
from .design import Design
from .errors import LmmhmcError
from .marginal import prepare
from .ml import MLResult, fit_ml
from .plan import gradient_cost, make_plan
from .priors import resolve_priors
from .reparam import anchor_priors, starts
from .results import FitResult
from .runtime import enable_compilation_cache, single_threaded_blas

#: Sampled dimension up to which a dense mass matrix is adapted (``dense_mass=None``).
DENSE_MASS_MAX_DIM = 60
#: Largest ``draws x observations`` for which the pointwise log-likelihood is stored by default.
LOG_LIK_MAX_CELLS = 5e7
#: Flops above which the ML start does not compute the random effects' conditional means.
INIT_MAX_FLOPS = 1e10


def fit_model(
    model,
    *,
    priors: Mapping[str, dist.Distribution] | None = None,
    marginalize: str | Sequence[str] = "auto",
    chains: int = 4,
    draws: int = 1000,
    warmup: int = 1000,
    seed: int = 0,
    target_accept: float = 0.8,
    progress: bool = True,
    init: str = "ml",
    dense_mass: bool | None = None,
    max_tree_depth: int = 10,
    chain_method: str = "auto",
    log_likelihood: bool | None = None,
    posterior_predictive: bool = False,
) -> FitResult:
    """Sample the posterior of ``model`` (a :class:`lmmhmc.Model`); see :func:`lmmhmc.fit`."""
    with single_threaded_blas():
        return _fit_model(**locals())


def _fit_model(
    model, *, priors, marginalize, chains, draws, warmup, seed, target_accept, progress, init,
    dense_mass, max_tree_depth, chain_method, log_likelihood, posterior_predictive,
) -> FitResult:
    _check_settings(chains, draws, warmup, target_accept, init)
    enable_compilation_cache()
    design: Design = model.design
    prior_set = resolve_priors(design, priors)
    plan = make_plan(design, marginalize)
    structure, data = nm.build(design, plan)
    timings: dict[str, float] = {}
    if dense_mass is None:
        dense_mass = plan.sampled_dims <= DENSE_MASS_MAX_DIM
    if chain_method == "auto":
        chain_method = "parallel" if jax.local_device_count() >= chains > 1 else "sequential"
    parallel = chain_method == "parallel"
    settings = Settings(warmup=warmup, draws=draws, target_accept=float(target_accept),
                        dense_mass=bool(dense_mass), max_tree_depth=int(max_tree_depth),
                        progress=bool(progress))
    key_mcmc, key_init, key_recover, key_pp = jax.random.split(jax.random.key(seed), 4)
    n_draws = chains * draws
    if log_likelihood is None:
        log_likelihood = n_draws * design.n_obs <= LOG_LIK_MAX_CELLS
    keys = jax.random.split(key_recover, n_draws)
    priors_tree = dict(prior_set)
    if init == "ml":  # the sds are sampled on a softplus scale anchored at their ML estimates
        shaped = anchor_priors(priors_tree, dict.fromkeys(_sd_names(structure), 1.0), 1.0)
    else:
        shaped = priors_tree
    start = _start_shapes(structure, data, shaped)
    lowered = [
        lower_program(structure, settings, data, shaped, start, key_mcmc, parallel=parallel),
        _lower_recovery(structure, data, shaped, start, keys, bool(log_likelihood)),
    ]

    # A background thread compiles the chain program (while the ML start runs) and then the
    # recovery (while the chains run); the calls below find both in JAX's cache. On a machine
    # with a spare core, compilation is then mostly off the clock. (Tracing stays on this
    # thread: NumPyro's effect handlers are not thread-safe.)
    with ThreadPoolExecutor(max_workers=1) as pool:
        chain_program, recovery = (pool.submit(low.compile) if low is not None else None
                                   for low in lowered)
        t0 = time.perf_counter()
        ml = fit_ml(design, starts=1) if init == "ml" else None
        if ml is not None:
            priors_tree = anchor_priors(priors_tree, _ml_sds(structure, ml), ml.sigma)
            init_params = _ml_init(structure, design, data, priors_tree, ml, chains, key_init)
        else:
            init_params = _prior_init(structure, data, priors_tree, chains, key_init)
        timings["init"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if chain_program is not None:
            chain_program.result()
        samples, stats = run_chains(structure, settings, data, priors_tree, init_params,
                                    key_mcmc, parallel=parallel)
        timings["sampling"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        recovery.result()
    gradients = {"warmup": int(np.sum(stats.pop(WARMUP_STEPS))),
                 "sampling": int(np.sum(stats["num_steps"]))}

    flat = jax.tree.map(lambda a: jnp.asarray(a.reshape((n_draws,) + a.shape[2:])), samples)
    effects, loglik = _recover_all(structure, data, flat, keys, bool(log_likelihood))
    effects, loglik = jax.block_until_ready((effects, loglik))
    timings["recovery"] = time.perf_counter() - t0

    yrep = None
    if posterior_predictive:
        yrep = jax.jit(_posterior_predictive, static_argnums=0)(
            structure, data, flat, effects, key_pp
        )
    idata = _to_inference_data(
        structure, design, samples, effects, loglik, yrep,
        stats, chains, draws,
    )
    settings = dict(chains=chains, draws=draws, warmup=warmup, seed=seed,
                    target_accept=target_accept, init=init, dense_mass=bool(dense_mass),
                    max_tree_depth=max_tree_depth, chain_method=chain_method)
    return FitResult(idata=idata, model=model, plan=plan, priors=prior_set, settings=settings,
                     timings=timings, gradients=gradients, ml=ml)


def _check_settings(chains, draws, warmup, target_accept, init) -> None:
    for name, value, low in (("chains", chains, 1), ("draws", draws, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int | np.integer) or value < low:
            raise LmmhmcError(f"{name} must be an integer >= {low}, got {value!r}")
    if not 0.0 < target_accept < 1.0:
        raise LmmhmcError(f"target_accept must be in (0, 1), got {target_accept!r}")
    if init not in ("ml", "prior"):
        raise LmmhmcError(f"init must be 'ml' or 'prior', got {init!r}")


def _ml_sds(structure, ml: MLResult) -> dict[str, float]:
    """ML estimate of every random-effect standard deviation, by parameter name."""
    out = {}
    for t, lam in zip(structure.terms, ml.factors, strict=True):
        sd = np.sqrt(np.diag(lam @ lam.T))
        out.update({f"{c}_sigma": float(s) for c, s in zip(t.columns, sd, strict=True)})
    return out


def _ml_init(structure, design, data, priors, ml: MLResult, chains, key) -> dict:
    """Unconstrained starting points near the ML estimate, jittered per chain."""
    params = {name: jnp.asarray(ml.beta[name]) for name in structure.x_names}
    params["sigma"] = jnp.asarray(ml.sigma)
    start = starts(_ml_sds(structure, ml), ml.sigma)  # the sds, off the boundary 0
    lams = []
    for t, lam in zip(structure.terms, ml.factors, strict=True):
        g = lam @ lam.T
        sd = np.array([start[f"{c}_sigma"] for c in t.columns])
        for c, s in zip(t.columns, sd, strict=True):
            params[f"{c}_sigma"] = jnp.asarray(s)
        chol = np.eye(t.d)
        if t.correlated:
            sd_ml = np.sqrt(np.diag(g))
            with np.errstate(invalid="ignore", divide="ignore"):  # an sd of 0 at the boundary
                corr = np.nan_to_num(g / np.outer(sd_ml, sd_ml))
            np.fill_diagonal(corr, 1.0)
            chol = np.linalg.cholesky(0.8 * corr + 0.2 * np.eye(t.d))
            params[t.corr] = jnp.asarray(chol)
        lams.append(sd[:, None] * chol)
    sampled = [k for k, t in enumerate(structure.terms) if not t.marginalized]
    if sampled:
        modes = _conditional_modes(design, ml)
        for k in sampled:
            t = structure.terms[k]
            z = np.linalg.solve(lams[k], modes[k].T).T if modes else np.zeros((t.n_levels, t.d))
            params[t.offset] = jnp.asarray(z)
    model = nm.make_model(structure)
    unconstrained = jax.jit(lambda a, p: unconstrain_fn(model, a, {}, p))((data, priors), params)
    scale = {name: float(ml.se[name]) for name in structure.x_names}
    keys = jax.random.split(key, len(unconstrained))
    out = {}
    for kk, (name, value) in zip(keys, sorted(unconstrained.items()), strict=True):
        noise = jax.random.normal(kk, (chains,) + jnp.shape(value))
        out[name] = value + scale.get(name, 0.1) * noise
    return out


def _prior_init(structure, data, priors, chains, key) -> dict:
    """Unconstrained starting points drawn from the prior, one per chain."""
    model = nm.make_model(structure)
    starts = []
    for kk in jax.random.split(key, chains):
        info, *_ = initialize_model(kk, model, init_strategy=init_to_sample,
                                    model_args=(data, priors))
        starts.append(info.z)
    return jax.tree.map(lambda *a: jnp.stack(a), *starts)


def _conditional_modes(design: Design, ml: MLResult) -> list[np.ndarray] | None:
    """Conditional means of all random effects at the ML estimate (None if too costly)."""
    every = tuple(range(len(design.terms)))
    if gradient_cost(design, every)[0] > INIT_MAX_FLOPS:
        return None
    kernel = prepare(design.terms, design.weights)
    resid = design.y - design.X @ ml.beta.values
    zeros = [np.zeros(s) for s in kernel.noise_shapes()]
    modes = jax.jit(lambda k, *a: k.draw(*a))(kernel, resid, ml.sigma, ml.factors, zeros)
    return [np.asarray(u) for u in modes]


def _sd_names(structure) -> list[str]:
    """Names of every random-effect standard deviation."""
    return [f"{c}_sigma" for t in structure.terms for c in t.columns]


def _start_shapes(structure, data, priors) -> dict:
    """Shapes of one chain's unconstrained starting point (``jax.ShapeDtypeStruct`` by site)."""
    scalar = jax.ShapeDtypeStruct((), jnp.float64)
    params = dict.fromkeys([*structure.x_names, "sigma", *_sd_names(structure)], scalar)
    for t in structure.terms:
        if t.correlated:
            params[t.corr] = jax.ShapeDtypeStruct((t.d, t.d), jnp.float64)
        if not t.marginalized:
            params[t.offset] = jax.ShapeDtypeStruct((t.n_levels, t.d), jnp.float64)
    model = nm.make_model(structure)
    return jax.eval_shape(lambda p: unconstrain_fn(model, (data, priors), {}, p), params)


def _lower_recovery(structure, data, priors, start, keys, with_loglik: bool):
    """:func:`_recover_all` lowered for the draws to come, from the shapes of a start."""
    model = nm.make_model(structure)
    draw = jax.eval_shape(lambda z: constrain_fn(model, (data, priors), {}, z), start)
    flat = jax.tree.map(lambda a: jax.ShapeDtypeStruct((keys.shape[0],) + a.shape, a.dtype), draw)
    return _recover_all.lower(structure, data, flat, keys, with_loglik)


@partial(jax.jit, static_argnums=(0, 4))
def _recover_all(structure, data, flat, keys, with_loglik: bool):
    """Random effects (and pointwise log-likelihood) for every draw, one at a time (lax.map).

    Unbatched: a vmapped batch of the kernels' small factorizations compiles several times
    slower and runs no faster on CPU.
    """

    def one(args):
        params, key = args
        effects = nm.recover(structure, data, params, key)
        ll = nm.pointwise_log_likelihood(structure, data, params, effects) if with_loglik else None
        return [effects[k] for k in range(len(structure.terms))], ll

    return jax.lax.map(one, (flat, keys))


def _to_inference_data(structure, design, samples, effects, loglik, yrep, extra, chains, draws):
    def grouped(a):
        a = np.asarray(a)
        return a.reshape((chains, draws) + a.shape[1:])

    posterior, dims, coords = {}, {}, {}
    for name in structure.x_names:
        posterior[name] = np.asarray(samples[name])
    posterior["sigma"] = np.asarray(samples["sigma"])
    for k, t in enumerate(structure.terms):
        for c in t.columns:
            posterior[f"{c}_sigma"] = np.asarray(samples[f"{c}_sigma"])
        if t.correlated:
            chol = np.asarray(samples[t.corr])
            corr = chol @ np.swapaxes(chol, -1, -2)
            rows, cols = np.tril_indices(t.d, -1)
            posterior[t.corr] = corr[..., rows, cols]
            dims[t.corr] = [f"{t.corr}_dim"]
            coords[f"{t.corr}_dim"] = [f"{t.columns[j]}, {t.columns[i]}"
                                       for i, j in zip(rows, cols, strict=True)]
        level_dim = f"{t.factor}__factor_dim"
        coords[level_dim] = [str(v) for v in design.terms[k].levels]
        u = grouped(effects[k])
        for j, c in enumerate(t.columns):
            posterior[c] = u[..., j]
            dims[c] = [level_dim]
    n_steps = np.asarray(extra["num_steps"])
    sample_stats = {
        "diverging": np.asarray(extra["diverging"]),
        "n_steps": n_steps,
        "tree_depth": np.floor(np.log2(np.maximum(n_steps, 1))).astype(int) + 1,
        "step_size": np.asarray(extra["step_size"]),
        "energy": np.asarray(extra["energy"]),
        "lp": -np.asarray(extra["potential_energy"]),
        "acceptance_rate": np.asarray(extra["accept_prob"]),
    }
    obs_dim = "__obs__"
    coords[obs_dim] = np.arange(design.n_obs)
    response = design.response
    dims[response] = [obs_dim]
    groups = {"posterior": posterior, "sample_stats": sample_stats,
              "observed_data": {response: design.y}}
    if loglik is not None:
        groups["log_likelihood"] = {response: grouped(loglik)}
    if yrep is not None:
        groups["posterior_predictive"] = {response: grouped(yrep)}
    return az.from_dict(**groups, coords=coords, dims=dims)


def _posterior_predictive(structure, data, flat, effects, key):
    """Replicated responses ``y_rep ~ N(X beta + Z u, sigma^2 / w)``, one per draw."""

    def one(args):
        params, eff, kk = args
        mu = nm.fixed_part(structure, data, params) + nm.random_part(data, dict(enumerate(eff)))
        scale = params["sigma"] / jnp.sqrt(data["w"])
        return mu + scale * jax.random.normal(kk, mu.shape)

    keys = jax.random.split(key, jax.tree.leaves(flat)[0].shape[0])
    return jax.lax.map(one, (flat, list(effects), keys), batch_size=64)
