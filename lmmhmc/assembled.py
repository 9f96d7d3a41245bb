"""The assembled model: everything a fit derives from the design, the plan and the priors, once.

::

    formula + data -> Design -> Plan -> AssembledModel -> chains -> recovery -> FitResult

[`assemble()`][lmmhmc.assembled.assemble] builds it; it is immutable, and every later stage (the ML
start, the starting points, the chains, recovery, the ArviZ assembly, ``predict``) takes it instead
of re-deriving names, kernels or orders. It holds

- the parameter [`Layout`][lmmhmc.layout.Layout] (every name, shape and coordinate);
- the marginal kernel of the plan's terms, prepared once in the plan's elimination order, and
  the kernel of every term that maximum likelihood profiles (the same object when the plan
  marginalizes every term);
- the likelihood ([`lmmhmc.likelihood`][lmmhmc.likelihood]);
- the NumPyro model's static [`Structure`][lmmhmc.numpyro_model.Structure] and its data pytree,
  with the units of the sampler's internal scale (`lmmhmc.scaling`).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .design import Design
from .families import get_family
from .layout import Layout, parameter_layout
from .likelihood import Gaussian, for_design, observation_weights
from .marginal import MarginalKernel, prepare
from .numpyro_model import Structure, make_model
from .plan import Plan, elimination, per_observation_sd
from .priors import Priors
from .reparam import Scaled
from .scaling import Units, units

__all__ = ["AssembledModel", "assemble", "profile_kernel"]


@dataclass(frozen=True, eq=False)
class AssembledModel:
    """A model ready to fit (see the module docstring). Build it with
    [`assemble()`][lmmhmc.assembled.assemble].

    Attributes
    ----------
    design : Design
    plan : Plan
    priors : Priors
    structure : Structure
        Layout, likelihood and number of observations (the compiled programs' static key).
    data : dict
        The NumPyro model's data pytree: ``y``, ``X``, ``offset`` (zeros without one), ``w``,
        per-term ``index`` and ``block``, ``sigma_part`` (a distributional model's ``X``,
        ``index`` and ``block`` of log sigma, or None),
        ``kernel`` (the plan's marginal kernel, or None), ``units`` (``loc`` and ``unit`` of
        every scalar parameter), ``centered`` (per sampled term, which levels are sampled
        centered: none here, see `lmmhmc.centering`), ``level_mean`` (per sampled term, the
        ``d x p`` selection ``S_k`` of the fixed effects inside a centered level's site,
        `lmmhmc.design.Design.level_means`), ``parent_level`` (per sampled term with a
        sampled parent, the parent's level of each of its levels, `Design.parents`) and
        ``sigma_centered`` (which levels of a
        distributional model's terms of log sigma are centered, a tuple; empty without any).
    ml_kernel : MarginalKernel
        Every term, for the profiled likelihood of ML and the conditional modes (for a
        non-Gaussian family, the Laplace ML of `lmmhmc.laplace_ml`).
    """

    design: Design
    plan: Plan
    priors: Priors
    structure: Structure
    data: dict
    ml_kernel: MarginalKernel

    @property
    def layout(self) -> Layout:
        """The parameter layout."""
        return self.structure.layout

    @property
    def likelihood(self) -> Gaussian:
        """The response distribution."""
        return self.structure.likelihood

    @property
    def units(self) -> Units:
        """The sampler's internal scale of every scalar parameter."""
        u = self.data["units"]
        return Units({k: float(v) for k, v in u["loc"].items()},
                     {k: float(v) for k, v in u["unit"].items()})

    def internal_priors(self) -> dict:
        """The priors as the sampler sees them: on the internal scale (same probabilities)."""
        u = self.data["units"]
        return {name: Scaled(prior, u["loc"][name], u["unit"][name]) if name in u["unit"]
                else prior for name, prior in self.priors.items()}

    @property
    def kernel(self) -> MarginalKernel | None:
        """The plan's marginal kernel (None when no term is marginalized)."""
        return self.data["kernel"]

    def numpyro_model(self):
        """The NumPyro model function ``model(data, priors)``."""
        return make_model(self.structure)


def fixed_columns(design: Design) -> np.ndarray:
    """The columns ``[X, y - o]`` whose projections every kernel precomputes.

    The offset ``o`` (`Design.offset`) shifts the response, so the Gaussian algebra of
    the kernels, of maximum likelihood and of recovery sees ``y - o`` throughout.
    """
    return np.column_stack([design.X, design.shifted_y])


def profile_kernel(design: Design, order=None) -> MarginalKernel:
    """The kernel of every term that ML profiles, with columns ``[X, y - o]`` precomputed.

    ``order`` is the elimination ([`lmmhmc.plan.elimination()`][lmmhmc.plan.elimination] of the
    terms by default).
    """
    design.require_terms()
    order = elimination(design.terms) if order is None else order
    return prepare(design.terms, observation_weights(design), order,
                   fixed=fixed_columns(design))


def assemble(design: Design, plan: Plan, priors: Priors,
             likelihood: Gaussian | None = None, family: str = "gaussian") -> AssembledModel:
    """Build the [`AssembledModel`][lmmhmc.assembled.AssembledModel] of ``design`` under ``plan``
    and ``priors``.

    For a non-Gaussian ``family`` the plan's marginalized terms are the Laplace-reparameterized
    ones (`lmmhmc.laplace`): their kernel has no precomputed columns (its weights change with
    every draw), and ``data["w"]`` holds the family's per-observation data (the trials of a
    binomial response, else ones).
    """
    every = tuple(range(len(design.terms)))
    if family != "gaussian":
        likelihood = get_family(family)
        if plan.marginalized == every:
            kernel = ml_kernel = prepare(design.terms, None, plan.elimination)
        else:
            ml_kernel = prepare(design.terms, None, elimination(design.terms))
            kernel = None
            if plan.marginalized:
                kernel = prepare([design.terms[k] for k in plan.marginalized], None,
                                 plan.elimination)
    elif plan.marginalized == every:
        kernel = ml_kernel = profile_kernel(design, plan.elimination)
    else:
        ml_kernel = profile_kernel(design)
        kernel = None
        if plan.marginalized:
            # the sampled terms' cross products, unless the weights change with the draw
            sampled = () if per_observation_sd(design) else plan.sampled
            kernel = prepare([design.terms[k] for k in plan.marginalized],
                             observation_weights(design), plan.elimination,
                             fixed=fixed_columns(design),
                             sampled=[design.terms[k] for k in sampled])
    layout = parameter_layout(design, plan.marginalized, family)
    structure = Structure(layout, likelihood or for_design(design), design.n_obs)
    # the family's per-observation data: known weights (Gaussian) or trials (binomial)
    w = observation_weights(design) if family == "gaussian" else design.trials
    w = np.ones(design.n_obs) if w is None else w
    scale = units(design, family)
    parents = design.parents()
    means = design.level_means([k for k in layout.sampled if layout.terms[k].parent is None])
    data = {
        "y": jnp.asarray(design.y),
        "X": jnp.asarray(design.X),
        "offset": jnp.asarray(design.offset),
        "w": jnp.asarray(w),
        "index": tuple(jnp.asarray(t.index) for t in design.terms),
        "block": tuple(jnp.asarray(t.block) for t in design.terms),
        "kernel": kernel,
        "sigma_part": _sigma_data(design),
        "units": {"loc": {k: jnp.asarray(v) for k, v in scale.loc.items()},
                  "unit": {k: jnp.asarray(v) for k, v in scale.unit.items()}},
        "centered": {k: jnp.zeros(design.terms[k].levels.size, bool) for k in layout.sampled},
        # where a non-Gaussian family's Newton iteration starts (lmmhmc.laplace), per
        # reparameterized term: zeros, or the ML fit's modes (`lmmhmc.starts.newton_start`)
        "newton_start": tuple(jnp.zeros((design.terms[k].n_levels, design.terms[k].d))
                              for k in plan.marginalized) if family != "gaussian" else (),
        "sigma_centered": tuple(jnp.zeros(t.n_levels, bool) for t in layout.sigma_terms),
        # a centered level's site is its whole coefficient: the fixed part S_k beta plus u_kj
        "level_mean": {k: jnp.asarray(means[k]) for k in layout.sampled},
        # and the effect of its sampled parent's level (`Design.parents`)
        "parent_level": {k: jnp.asarray(parents[k][1]) for k in layout.sampled
                         if layout.terms[k].parent is not None},
    }
    return AssembledModel(design, plan, priors, structure, data, ml_kernel)


def _sigma_data(design: Design) -> dict | None:
    """A distributional model's design of log sigma (``X``, per-term ``index``, ``block`` and
    ``level_mean``), or None."""
    part = design.sigma_part
    if part is None:
        return None
    return {"X": jnp.asarray(part.X),
            "index": tuple(jnp.asarray(t.index) for t in part.terms),
            "block": tuple(jnp.asarray(t.block) for t in part.terms),
            "level_mean": tuple(jnp.asarray(s) for s in part.level_means())}
