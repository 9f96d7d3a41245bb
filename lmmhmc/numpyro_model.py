"""The NumPyro model of an assembled model, and the JAX routines that share its algebra.

Everything here is a pure function of a hashable [`Structure`][lmmhmc.numpyro_model.Structure] (the
static part: layout, likelihood, number of observations) and a data pytree (arrays and the
prepared kernel), so that one compiled program serves every data set of the same shapes.

Every scalar parameter is sampled on its internal scale, ``theta = loc + unit * t``
(`lmmhmc.scaling`; ``data["units"]``), with its prior carried there by
`lmmhmc.reparam.Scaled`. For a posterior draw (fixed effects ``beta``, ``sigma``,
per-term sds ``s_k`` and correlation Cholesky factors ``L_k``)::

    Lambda_k = diag(s_k) L_k,                  G_k = Lambda_k Lambda_k^T
    u_kj = Lambda_k v_kj,  v_kj ~ N(0, I)      (sampled terms: non-centered levels)
    u_kj = v_kj - m_kj,  v_kj ~ N(m_kj, G_k)   (centered levels, data["centered"][k][j]:
                                                the site is the level's whole coefficient,
                                                m_kj = S_k beta + u_m,p(j) (`centered_mean`),
                                                S_k = data["level_mean"][k] picking the
                                                fixed effects of the term's columns, u_m the
                                                effects of a sampled parent term; see
                                                `lmmhmc.centering`)
    mu = X beta + o + sum_k Z_k u_k            (`linear_predictor`; o the known offset)
    sigma_i = exp(X_s gamma + sum_k Z_sk v_k)  (distributional models, `with_residual_sd`;
                                                v_kj centered (around S_sk gamma) or not as
                                                u_kj, by data["sigma_centered"][k][j])
    log p(y | theta, u_sampled) = likelihood with the marginalized terms integrated out
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .laplace import reparameterized
from .layout import SIGMA, Layout
from .likelihood import Gaussian
from .marginal import Affine, batched_solve
from .predictor import linear_predictor

__all__ = ["Structure", "centered_log_density", "centered_mean", "factors", "fixed_effects",
           "laplace_effects", "level_effects", "linear_predictor", "make_model", "mean",
           "pointwise_log_likelihood", "posterior_predictive", "recover", "residual",
           "sampled_effects", "sigma_effects", "with_residual_sd"]


@dataclass(frozen=True)
class Structure:
    """The static part of an assembled model (hashable: a cache key for compiled programs)."""

    layout: Layout
    likelihood: Gaussian
    n_obs: int


def factors(layout: Layout, params: dict, terms=None) -> list[jax.Array]:
    """``Lambda_k = diag(s_k) L_k`` of every term (of ``terms``, the mean's by default) from
    a (single) draw."""
    out = []
    for t in layout.terms if terms is None else terms:
        sds = jnp.stack([params[name] for name in t.sds])
        chol = params[t.corr] if t.correlated else jnp.eye(t.d)
        out.append(sds[:, None] * chol)
    return out


def sigma_effects(layout: Layout, data: dict, params: dict) -> list[jax.Array]:
    """A distributional model's random effects of log sigma: ``v_kj = Lambda_k z_kj``, or the
    site less ``S_k gamma`` at the levels sampled centered (``data["sigma_centered"][k][j]``)."""
    lams = factors(layout, params, layout.sigma_terms)
    gamma = _coefficients(params, layout.sigma_fixed)
    means = data["sigma_part"]["level_mean"] if layout.sigma_terms else ()
    return [level_effects(params[t.offset], lam, mask, s @ gamma)
            for t, lam, mask, s in zip(layout.sigma_terms, lams, data["sigma_centered"],
                                       means, strict=True)]


def level_effects(v: jax.Array, lam: jax.Array, centered: jax.Array,
                  mean: jax.Array) -> jax.Array:
    """One term's random effects from its site ``v`` (levels x d): ``Lambda v_j``, or
    ``v_j - mean`` at the ``centered`` levels (whose site is the level's whole coefficient,
    ``mean`` its fixed part)."""
    return jnp.where(centered[:, None], v - mean, v @ lam.T)


def with_residual_sd(layout: Layout, data: dict, params: dict) -> dict:
    """``params`` with the residual sd the likelihood reads: for a distributional model one
    per training row, ``sigma_i = exp(X_s gamma + sum_k Z_sk v_k)``; else unchanged."""
    if not layout.distributional:
        return params
    gamma = _coefficients(params, layout.sigma_fixed)
    part = data["sigma_part"]
    log_sd = linear_predictor(part["X"], gamma, 0.0, part["index"], part["block"],
                              dict(enumerate(sigma_effects(layout, data, params))))
    return {**params, SIGMA: jnp.exp(log_sd)}


def fixed_effects(layout: Layout, params: dict) -> jax.Array:
    """The fixed effects of a draw as one vector (design column order)."""
    return _coefficients(params, layout.fixed)


def _coefficients(params: dict, names: tuple[str, ...]) -> jax.Array:
    """The draw's parameters ``names`` as one vector (empty without any)."""
    return jnp.stack([params[n] for n in names]) if names else jnp.zeros(0)


def sampled_effects(layout: Layout, data: dict, params: dict,
                    lams: list[jax.Array]) -> dict:
    """``u_kj`` of every sampled term ``k`` of one draw (`level_effects`: ``Lambda_k v_kj``,
    or ``v_kj`` less `centered_mean` at the levels ``data["centered"][k]``); a parent's
    effects are formed before its children's."""
    beta = fixed_effects(layout, params)
    effects: dict = {}
    for k in sorted(layout.sampled, key=lambda k: layout.terms[k].n_levels):
        effects[k] = level_effects(params[layout.terms[k].offset], lams[k],
                                   data["centered"][k], centered_mean(layout, data, beta,
                                                                      effects, k))
    return {k: effects[k] for k in layout.sampled}


def centered_mean(layout: Layout, data: dict, beta: jax.Array, effects: dict,
                  k: int) -> jax.Array:
    """The prior mean of a centered level's site of sampled term ``k``: ``S_k beta``, plus
    ``u_m,p(j)`` (levels x d) when the term has a sampled parent ``m`` (``p(j)`` the parent's
    level of level ``j``, ``data["parent_level"][k]``; ``effects`` holds ``u_m``)."""
    mean = data["level_mean"][k] @ beta
    parent = layout.terms[k].parent
    return mean if parent is None else mean + effects[parent][data["parent_level"][k]]


def centered_log_density(v: jax.Array, lam: jax.Array, centered: jax.Array,
                         mean: jax.Array) -> jax.Array:
    """``sum_j [log N(v_j; mean, Lambda Lambda^T) - log N(v_j; 0, I)]`` over the centered
    levels: what turns the sites' standard-normal density into the centered levels' prior.

    ``Lambda^-1`` by unrolled substitution for a small ``d`` (`lmmhmc.marginal.batched_solve`):
    with LAPACK's solve of the 1 x 1 factor against InstEval's 1,128 instructors, one value
    and gradient of its log density took 1.9-2.0 ms alone against 1.2 ms (interleaved, 2026-12-03;
    inside two parallel chains the time per gradient did not change measurably)."""
    x = batched_solve(lam, (v - mean).T)  # Lambda^-1 u_j, column per level
    per_level = (0.5 * jnp.sum(v * v, axis=1) - 0.5 * jnp.sum(x * x, axis=0)
                 - jnp.sum(jnp.log(jnp.abs(jnp.diagonal(lam)))))
    return jnp.sum(jnp.where(centered, per_level, 0.0))


def residual(structure: Structure, data: dict, params: dict, effects: dict):
    """``r = y - X beta - o - sum_k Z_k u_k`` over the sampled terms' ``effects``.

    When the kernel precomputed the projections of the columns ``[X, y - o]`` and of every
    sampled term (`lmmhmc.marginal.prepare`), the residual is returned as `Affine`
    coefficients ``[-beta, 1]`` and the effects, so that the marginal likelihood costs
    nothing per observation (InstEval with ``(1 | s)`` marginalized: one value and gradient
    of the kernel 0.24 against 0.96 ms row by row, 2026-12-03).
    """
    kernel = data["kernel"]
    if kernel is not None and len(kernel.static.sampled) == len(effects):
        beta = fixed_effects(structure.layout, params)
        return Affine(jnp.concatenate([-beta, jnp.ones(1)]),
                      tuple(effects[k] for k in structure.layout.sampled))
    return data["y"] - mean(structure, data, params, effects)


def make_model(structure: Structure):
    """The NumPyro model function ``model(data, priors)`` for ``structure``."""
    layout, likelihood = structure.layout, structure.likelihood

    def model(data: dict, priors: dict) -> None:
        params = {}
        # standard-normal sites: the sampled terms' (or their centered levels' scaled ones),
        # log sigma's, and a non-Gaussian family's reparameterized terms' z
        offsets = layout.effect_sites()
        loc, unit = data["units"]["loc"], data["units"]["unit"]
        for name, shape in layout.site_shapes().items():
            prior = (dist.Normal(0.0, 1.0).expand(shape).to_event(len(shape))
                     if name in offsets else priors[name])
            value = numpyro.sample(name, prior)
            params[name] = loc[name] + unit[name] * value if name in unit else value
        lams = factors(layout, params)
        beta = fixed_effects(layout, params)
        effects = sampled_effects(layout, data, params, lams)
        for k in layout.sampled:
            numpyro.factor(f"centered[{k}]", centered_log_density(
                params[layout.terms[k].offset], lams[k], data["centered"][k],
                centered_mean(layout, data, beta, effects, k)))
        sigma_lams = factors(layout, params, layout.sigma_terms)
        gamma = _coefficients(params, layout.sigma_fixed)
        for k, (t, lam) in enumerate(zip(layout.sigma_terms, sigma_lams, strict=True)):
            numpyro.factor(f"sigma_centered[{k}]", centered_log_density(
                params[t.offset], lam, data["sigma_centered"][k],
                data["sigma_part"]["level_mean"][k] @ gamma))
        if not layout.gaussian:
            numpyro.factor("loglik", laplace_effects(structure, data, params, effects, lams)[1])
            return
        resid = residual(structure, data, params, effects)
        params = with_residual_sd(layout, data, params)
        if data["kernel"] is None:
            numpyro.factor("loglik", jnp.sum(
                likelihood.log_prob(resid, jnp.zeros_like(resid), params, data["w"])))
        else:
            marg = [lams[k] for k in layout.marginalized]
            numpyro.factor("marginal",
                           likelihood.marginal_log_density(data["kernel"], resid, params, marg))

    return model


def recover(structure: Structure, data: dict, params: dict, key: jax.Array) -> dict:
    """All random effects of one draw: sampled ones transformed, marginalized ones drawn.

    The marginalized terms are drawn jointly from their exact conditional given ``params``
    and the sampled terms (see
    [`lmmhmc.marginal.MarginalKernel.draw()`][lmmhmc.marginal.MarginalKernel.draw]).
    """
    layout = structure.layout
    lams = factors(layout, params)
    effects = sampled_effects(layout, data, params, lams)
    kernel = data["kernel"]
    if not layout.gaussian:
        return laplace_effects(structure, data, params, effects, lams)[0]
    if kernel is not None:
        r = residual(structure, data, params, effects)
        params = with_residual_sd(layout, data, params)
        keys = jax.random.split(key, len(layout.marginalized))
        shapes = kernel.noise_shapes()
        noise = [jax.random.normal(kk, s) for kk, s in zip(keys, shapes, strict=True)]
        marg = [lams[k] for k in layout.marginalized]
        drawn = structure.likelihood.conditional_draw(kernel, r, params, marg, noise)
        effects.update(dict(zip(layout.marginalized, drawn, strict=True)))
    return effects


def laplace_effects(structure: Structure, data: dict, params: dict, effects: dict,
                    lams: list[jax.Array]) -> tuple[dict, jax.Array]:
    """A non-Gaussian family: every random effect of a draw and ``log p(y | .)`` plus the
    reparameterization's terms.

    The reparameterized (plan-marginalized) terms' effects are ``u(psi, z)`` of
    `lmmhmc.laplace.reparameterized` (the family's ``newton_steps`` Newton steps from
    ``data["newton_start"]``, ``z`` the terms' standard-normal sites), and the returned
    density is that of `lmmhmc.laplace.reparameterized` less ``log N(z; 0, I)``, which the
    model's sites contribute: with the priors it is the exact log density of the sampled
    ``(psi, z)`` (for a Gaussian response, the marginal likelihood). Without such terms it is
    the likelihood given the non-centered ``effects``.
    """
    layout, family = structure.layout, structure.likelihood
    if data["kernel"] is None:
        mu = mean(structure, data, params, effects)
        return effects, jnp.sum(family.log_prob(data["y"], mu, params, data["w"]))
    marg = layout.marginalized
    eta0 = mean(structure, data, params, effects)
    z = [params[layout.terms[k].offset] for k in marg]
    us, density = reparameterized(
        data["kernel"], family, data["y"], data["w"], eta0,
        [data["index"][k] for k in marg], [data["block"][k] for k in marg],
        [lams[k] for k in marg], z, family.newton_steps, params, data["newton_start"])
    # the z sites' standard-normal prior is the model's already: not twice
    normal = sum(jnp.sum(dist.Normal(0.0, 1.0).log_prob(zk)) for zk in z)
    return {**effects, **dict(zip(marg, us, strict=True))}, density - normal


def mean(structure: Structure, data: dict, params: dict, effects: dict) -> jax.Array:
    """The linear predictor of the training rows (offset included) for one draw and its
    random effects."""
    beta = fixed_effects(structure.layout, params)
    return linear_predictor(data["X"], beta, data["offset"], data["index"], data["block"],
                            effects)


def pointwise_log_likelihood(structure: Structure, data: dict, params: dict,
                             effects: dict) -> jax.Array:
    """The likelihood of every observation given one draw and its random effects."""
    mu = mean(structure, data, params, effects)
    params = with_residual_sd(structure.layout, data, params)
    return structure.likelihood.log_prob(data["y"], mu, params, data["w"])


def posterior_predictive(structure: Structure, data: dict, params: dict, effects: dict,
                         key: jax.Array) -> jax.Array:
    """One replicated response vector for one draw and its random effects."""
    mu = mean(structure, data, params, effects)
    params = with_residual_sd(structure.layout, data, params)
    return structure.likelihood.sample(key, mu, params, data["w"])

