"""The NumPyro model: priors, non-centered sampled terms, and the marginal likelihood.

The model's static structure (names, shapes, which terms are marginalized) is fixed by
:class:`Structure`; the data and the prior distributions are passed as arguments (pytrees), so
that one compiled sampler serves every data set of the same shapes.

For a posterior draw ``theta`` (fixed effects ``beta``, ``sigma``, per-term sds ``s_k`` and
correlation Cholesky factors ``L_k``)::

    Lambda_k = diag(s_k) L_k,                  G_k = Lambda_k Lambda_k^T
    u_k = z_k Lambda_k^T,  z_k ~ N(0, I)       (sampled terms, non-centered)
    r = y - X beta - sum_{k sampled} Z_k u_k
    log p(y | theta, u_sampled) = log N(r | 0, sigma^2 W^-1 + sum_{k marginalized} Z_k G_k Z_k^T)
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .design import Design
from .marginal import Affine, MarginalKernel, prepare
from .plan import Plan
from .priors import corr_name


@dataclass(frozen=True)
class TermSpec:
    """Static description of one grouping term."""

    text: str
    factor: str
    columns: tuple[str, ...]
    n_levels: int
    correlated: bool
    corr: str | None  # name of the correlation parameter
    marginalized: bool

    @property
    def d(self) -> int:
        return len(self.columns)

    @property
    def offset(self) -> str:
        """Name of the standard-normal site of a sampled (non-centered) term."""
        return f"{self.text}_offset"


@dataclass(frozen=True)
class Structure:
    """Everything static about the model (hashable: a cache key for compiled samplers)."""

    x_names: tuple[str, ...]
    terms: tuple[TermSpec, ...]
    n_obs: int

    @property
    def marginalized(self) -> tuple[int, ...]:
        return tuple(k for k, t in enumerate(self.terms) if t.marginalized)


def build(design: Design, plan: Plan) -> tuple[Structure, dict]:
    """Static structure and the data pytree (arrays + marginalization kernel) for ``plan``."""
    terms = tuple(
        TermSpec(
            text=t.text,
            factor=t.factor,
            columns=tuple(t.columns),
            n_levels=t.n_levels,
            correlated=t.correlated,
            corr=corr_name(design, k) if t.correlated else None,
            marginalized=k in plan.marginalized,
        )
        for k, t in enumerate(design.terms)
    )
    structure = Structure(tuple(design.x_names), terms, design.n_obs)
    kernel = None
    if plan.marginalized:
        marg = [design.terms[k] for k in plan.marginalized]
        eliminate = plan.eliminate
        if isinstance(eliminate, int):  # a position among the marginalized terms
            eliminate = plan.marginalized.index(eliminate)
        kernel = prepare(marg, design.weights, eliminate=eliminate,
                         fixed=np.column_stack([design.y, design.X]))
    w = np.ones(design.n_obs) if design.weights is None else design.weights
    data = {
        "y": jnp.asarray(design.y),
        "X": jnp.asarray(design.X),
        "w": jnp.asarray(w),
        "index": tuple(jnp.asarray(t.index) for t in design.terms),
        "block": tuple(jnp.asarray(t.block) for t in design.terms),
        "kernel": kernel,
    }
    return structure, data


def factors(structure: Structure, params: dict) -> list[jax.Array]:
    """``Lambda_k = diag(s_k) L_k`` of every term from a (single) draw."""
    out = []
    for t in structure.terms:
        sds = jnp.stack([params[f"{c}_sigma"] for c in t.columns])
        chol = params[t.corr] if t.correlated else jnp.eye(t.d)
        out.append(sds[:, None] * chol)
    return out


def fixed_part(structure: Structure, data: dict, params: dict) -> jax.Array:
    """``X beta`` for one draw."""
    if not structure.x_names:
        return jnp.zeros(structure.n_obs)
    beta = jnp.stack([params[n] for n in structure.x_names])
    return data["X"] @ beta


def random_part(data: dict, effects: dict[int, jax.Array]) -> jax.Array:
    """``sum_k Z_k u_k`` over the terms in ``effects`` (position -> (n_levels, d) array)."""
    total = jnp.zeros(data["y"].shape[0])
    for k, u in effects.items():
        total = total + jnp.sum(u[data["index"][k]] * data["block"][k], axis=-1)
    return total


def sampled_effects(structure: Structure, params: dict, lams: list[jax.Array]) -> dict:
    """``u_k = z_k Lambda_k^T`` for every sampled term of one draw."""
    return {
        k: params[t.offset] @ lams[k].T
        for k, t in enumerate(structure.terms)
        if not t.marginalized
    }


def residual(structure: Structure, data: dict, params: dict, effects: dict):
    """``r = y - X beta - sum_k Z_k u_k`` over the sampled terms' ``effects``.

    With no sampled terms the residual is returned as :class:`Affine` coefficients
    ``[1, -beta]`` of the kernel's precomputed columns ``[y, X]``, so that the marginal
    likelihood costs nothing per observation.
    """
    if not effects and data["kernel"] is not None:
        beta = jnp.stack([params[n] for n in structure.x_names]) if structure.x_names else None
        coef = jnp.ones(1) if beta is None else jnp.concatenate([jnp.ones(1), -beta])
        return Affine(coef)
    return data["y"] - fixed_part(structure, data, params) - random_part(data, effects)


def make_model(structure: Structure):
    """The NumPyro model function ``model(data, priors)`` for ``structure``."""

    def model(data: dict, priors: dict) -> None:
        params = {name: numpyro.sample(name, priors[name]) for name in structure.x_names}
        params["sigma"] = numpyro.sample("sigma", priors["sigma"])
        for t in structure.terms:
            for c in t.columns:
                params[f"{c}_sigma"] = numpyro.sample(f"{c}_sigma", priors[f"{c}_sigma"])
            if t.correlated:
                params[t.corr] = numpyro.sample(t.corr, priors[t.corr])
            if not t.marginalized:
                params[t.offset] = numpyro.sample(
                    t.offset, dist.Normal(0.0, 1.0).expand((t.n_levels, t.d)).to_event(2)
                )
        lams = factors(structure, params)
        resid = residual(structure, data, params, sampled_effects(structure, params, lams))
        kernel: MarginalKernel | None = data["kernel"]
        if kernel is None:
            scale = params["sigma"] / jnp.sqrt(data["w"])
            numpyro.sample("resid", dist.Normal(0.0, scale).to_event(1), obs=resid)
        else:
            marg = [lams[k] for k in structure.marginalized]
            numpyro.factor("marginal", kernel.log_density(resid, params["sigma"], marg))

    return model


def recover(structure: Structure, data: dict, params: dict, key: jax.Array) -> dict:
    """All random effects of one draw: sampled ones transformed, marginalized ones drawn.

    The marginalized terms are drawn jointly from their exact conditional given ``params``
    and the sampled terms (see :meth:`MarginalKernel.draw`).
    """
    lams = factors(structure, params)
    effects = sampled_effects(structure, params, lams)
    kernel: MarginalKernel | None = data["kernel"]
    if kernel is not None:
        r = residual(structure, data, params, effects)
        keys = jax.random.split(key, len(structure.marginalized))
        shapes = kernel.noise_shapes()
        noise = [jax.random.normal(kk, s) for kk, s in zip(keys, shapes, strict=True)]
        marg = [lams[k] for k in structure.marginalized]
        drawn = kernel.draw(r, params["sigma"], marg, noise)
        effects.update(dict(zip(structure.marginalized, drawn, strict=True)))
    return effects


def pointwise_log_likelihood(
    structure: Structure, data: dict, params: dict, effects: dict
) -> jax.Array:
    """``log N(y_i | x_i beta + z_i u, sigma^2 / w_i)`` for every observation of one draw."""
    mu = fixed_part(structure, data, params) + random_part(data, effects)
    scale = params["sigma"] / jnp.sqrt(data["w"])
    return dist.Normal(mu, scale).log_prob(data["y"])
