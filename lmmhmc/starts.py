"""Where the chains start: near the maximum-likelihood estimate, or at draws from the prior.

With ``init="ml"`` every standard deviation is sampled on a softplus scale anchored at its ML
estimate (`lmmhmc.reparam`); the chains start at the estimate (the sds off the boundary
0), with the sampled terms' random effects at their conditional means (their sites
whitened, or not for centered levels: `lmmhmc.centering`), jittered per chain.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import init_to_sample
from numpyro.infer.util import initialize_model, unconstrain_fn

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .assembled import AssembledModel
from .chains import PriorSpec
from .laplace import mode
from .marginal import Affine
from .ml import MLResult
from .numpyro_model import Structure, centered_mean, factors, make_model
from .reparam import anchor_priors, starts
from .scaling import response_sd

__all__ = ["anchored_priors", "ml_init", "ml_sds", "newton_start", "prior_init",
           "residual_estimates", "start_shapes"]

#: Jitter (on the unconstrained scale) of the starting points of parameters without a
#: standard error.
JITTER = 0.1
#: Shrinkage of an ML correlation matrix towards the identity at the start (keeps it inside).
CORR_SHRINK = 0.8
#: Start of the sds of a distributional model's random effects of log sigma (10 % spread).
LOG_SIGMA_SD = 0.1


def ml_sds(assembled: AssembledModel, ml: MLResult) -> dict[str, float]:
    """ML estimate of every random-effect standard deviation, by parameter name."""
    out = {}
    for t, lam in zip(assembled.layout.terms, ml.factors, strict=True):
        sd = np.sqrt(np.diag(lam @ lam.T))
        out.update({name: float(s) for name, s in zip(t.sds, sd, strict=True)})
    return out


def residual_estimates(assembled: AssembledModel, ml: MLResult) -> tuple[dict, float]:
    """ML estimates of the residual-sd parameters (by name; none for ``y | se(s)``) and the
    residual scale that floors every sd's start and anchor.

    With known standard errors the ML fit has weights ``1 / s_i^2`` and lme4's multiplicative
    ``sigma_m``: the scale is ``sigma_m rms(s)`` and ``se(s, sigma = TRUE)``'s additive sigma
    starts at ``rms(s) sqrt(max(sigma_m^2 - 1, 0))`` (then floored).
    """
    layout, se = assembled.layout, assembled.design.se
    if layout.sigma is None and se is None:  # distributional: see `log_sigma_start`
        return {}, ml.sigma
    if se is None:
        return {layout.sigma: ml.sigma}, ml.sigma
    rms = float(np.sqrt(np.mean(se**2)))
    extra = rms * float(np.sqrt(max(ml.sigma**2 - 1.0, 0.0)))
    return ({} if layout.sigma is None else {layout.sigma: extra}), ml.sigma * rms


def anchored_priors(assembled: AssembledModel, ml: MLResult | None) -> dict:
    """The priors as the sampler sees them: on the internal scale, every sd anchored at its ML
    estimate, or, without an ML fit, at one unit (the shapes and types of the compiled
    program's arguments)."""
    priors, unit, layout = assembled.internal_priors(), assembled.units.unit, assembled.layout
    if ml is None:  # (the link scale's unit is 1 for a non-Gaussian family)
        return anchor_priors(priors, {name: unit[name] for name in layout.sd_names()},
                             response_sd(assembled.design) if layout.gaussian else 1.0, unit)
    residual, scale = residual_estimates(assembled, ml)
    return anchor_priors(priors, {**residual, **ml_sds(assembled, ml)}, scale, unit)


def _ml_params(assembled: AssembledModel, ml: MLResult) -> dict:
    """The ML estimate as constrained parameters (sds off 0, correlations shrunk inwards,
    sampled terms' offsets at the random effects' conditional means)."""
    layout = assembled.layout
    params = {name: jnp.asarray(ml.beta[name]) for name in layout.fixed}
    residual, scale = residual_estimates(assembled, ml)
    start = starts({**residual, **ml_sds(assembled, ml)}, scale)  # the sds, off the boundary 0
    params.update({name: jnp.asarray(start[name]) for name in residual})
    for t, lam in zip(layout.terms, ml.factors, strict=True):
        params.update({name: jnp.asarray(start[name]) for name in t.sds})
        if t.correlated:
            g = lam @ lam.T
            sd = np.sqrt(np.diag(g))
            with np.errstate(invalid="ignore", divide="ignore"):  # an sd of 0 at the boundary
                corr = np.nan_to_num(g / np.outer(sd, sd))
            np.fill_diagonal(corr, 1.0)
            params[t.corr] = jnp.asarray(
                np.linalg.cholesky(CORR_SHRINK * corr + (1 - CORR_SHRINK) * np.eye(t.d)))
    params.update(log_sigma_start(assembled, ml))
    if layout.sampled:
        lams = factors(layout, params)
        modes = conditional_modes(assembled, ml)
        beta = jnp.asarray(ml.beta.values)
        effects = {k: jnp.asarray(modes[k]) for k in layout.sampled}
        for k in layout.sampled:  # centered levels' sites: their coefficients m_kj + u_j
            whitened = np.linalg.solve(lams[k], modes[k].T).T
            centered = np.asarray(assembled.data["centered"][k])[:, None]
            whole = modes[k] + np.asarray(
                centered_mean(layout, assembled.data, beta, effects, k))
            params[layout.terms[k].offset] = jnp.asarray(np.where(centered, whole, whitened))
    if not layout.gaussian:  # the reparameterized terms start at z = 0, u at its Newton point
        for k in layout.marginalized:
            params[layout.terms[k].offset] = jnp.zeros((layout.terms[k].n_levels,
                                                        layout.terms[k].d))
    return params


def log_sigma_start(assembled: AssembledModel, ml: MLResult) -> dict:
    """A distributional model's start of log sigma: the homoscedastic ML fit's
    ``log sigma`` as the intercept, slopes and effects 0 (a centered level's site at its
    fixed part), their sds `LOG_SIGMA_SD` (in units of ``1 / s_x``) and correlations 0."""
    layout, part = assembled.layout, assembled.design.sigma_part
    if part is None:
        return {}
    unit, data = assembled.units.unit, assembled.data
    gamma = np.array([0.0 if s_x > 0 else np.log(ml.sigma) for s_x in part.X.std(axis=0)])
    out = {name: jnp.asarray(g) for name, g in zip(layout.sigma_fixed, gamma, strict=True)}
    for k, t in enumerate(layout.sigma_terms):
        out.update({name: jnp.asarray(LOG_SIGMA_SD * unit[name]) for name in t.sds})
        if t.correlated:
            out[t.corr] = jnp.eye(t.d)
        whole = np.asarray(data["sigma_part"]["level_mean"][k]) @ gamma  # centered levels'
        out[t.offset] = jnp.asarray(np.where(np.asarray(data["sigma_centered"][k])[:, None],
                                             whole, 0.0) * np.ones((t.n_levels, t.d)))
    return out


def conditional_modes(assembled: AssembledModel, ml: MLResult) -> list[np.ndarray]:
    """Conditional means (for a non-Gaussian family, modes) of every term's random effects
    at the ML estimate."""
    kernel = assembled.ml_kernel
    if not assembled.layout.gaussian:
        data, zeros = assembled.data, [jnp.zeros(s) for s in kernel.noise_shapes()]
        eta0 = data["X"] @ jnp.asarray(ml.beta.values) + data["offset"]
        _, modes = jax.jit(lambda k, *a: mode(k, assembled.likelihood, *a, (zeros, zeros)))(
            kernel, data["y"], data["w"], eta0, data["index"], data["block"], ml.factors)
        return [np.asarray(u) for u in modes]
    coef = np.concatenate([-np.asarray(ml.beta.values), np.ones(1)])  # r = [X, y - o] coef
    zeros = [np.zeros(s) for s in kernel.noise_shapes()]
    modes = jax.jit(lambda k, c, *a: k.draw(Affine(c), *a))(kernel, coef, ml.sigma,
                                                            ml.factors, zeros)
    return [np.asarray(u) for u in modes]


def newton_start(assembled: AssembledModel, ml: MLResult) -> AssembledModel:
    """``assembled`` with a non-Gaussian family's Newton iteration starting at the ML fit's
    conditional modes of the reparameterized terms (``data["newton_start"]``; a constant
    of the model, so the reparameterization stays an exact bijection). Unchanged for a
    Gaussian response."""
    if assembled.layout.gaussian or not assembled.layout.marginalized:
        return assembled
    modes = conditional_modes(assembled, ml)
    start = tuple(jnp.asarray(modes[k]) for k in assembled.layout.marginalized)
    return replace(assembled, data={**assembled.data, "newton_start": start})


def ml_init(assembled: AssembledModel, priors: dict, ml: MLResult, chains: int,
            key: jax.Array) -> dict:
    """Unconstrained starting points near the ML estimate, jittered per chain (by the fixed
    effects' standard errors, `JITTER` for the rest, times the sd for centered random
    effects), on the internal scale."""
    units = assembled.units
    params = units.to_internal(_ml_params(assembled, ml))
    spec, leaves = PriorSpec.of(priors)
    unconstrained = _unconstrain(assembled.structure, spec, assembled.data, leaves, params)
    scale = {name: float(ml.se[name]) / units.unit[name] for name in assembled.layout.fixed}
    for k in assembled.layout.sampled:  # centered levels: jitter in units of the term's sds
        sd = np.sqrt(np.diag(ml.factors[k] @ ml.factors[k].T))
        centered = np.asarray(assembled.data["centered"][k])[:, None]
        scale[assembled.layout.terms[k].offset] = JITTER * np.where(centered, sd, 1.0)
    names = sorted(unconstrained)
    return dict(zip(names, _jittered(key, [unconstrained[n] for n in names],
                                     [scale.get(n, JITTER) for n in names], chains),
                    strict=True))


@partial(jax.jit, static_argnums=3)
def _jittered(key: jax.Array, values: list, scales: list, chains: int) -> list:
    """``chains`` copies of each value plus ``scale`` times standard normal noise (one program:
    a dozen eager operations would each compile in a new process)."""
    keys = jax.random.split(key, len(values))
    return [v + s * jax.random.normal(k, (chains,) + jnp.shape(v))
            for k, v, s in zip(keys, values, scales, strict=True)]


@partial(jax.jit, static_argnums=(0, 1))
def _unconstrain(structure: Structure, spec: PriorSpec, data: dict, leaves, params: dict):
    """The model's unconstrained coordinates of ``params`` (priors as canonical leaves)."""
    return unconstrain_fn(make_model(structure), (data, spec.unflatten(leaves)), {}, params)


def prior_init(assembled: AssembledModel, priors: dict, chains: int, key: jax.Array) -> dict:
    """Unconstrained starting points drawn from the prior, one per chain."""
    model = assembled.numpyro_model()
    points = []
    for kk in jax.random.split(key, chains):
        info, *_ = initialize_model(kk, model, init_strategy=init_to_sample,
                                    model_args=(assembled.data, priors))
        points.append(info.z)
    return jax.tree.map(lambda *a: jnp.stack(a), *points)


def start_shapes(assembled: AssembledModel, priors: dict) -> dict:
    """Shapes of one chain's unconstrained starting point (``jax.ShapeDtypeStruct`` by site)."""
    params = {name: jax.ShapeDtypeStruct(shape, jnp.float64)
              for name, shape in assembled.layout.site_shapes().items()}
    model = assembled.numpyro_model()
    return jax.eval_shape(lambda p: unconstrain_fn(model, (assembled.data, priors), {}, p),
                          params)
