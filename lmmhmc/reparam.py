"""How HMC sees the standard deviations: an anchored softplus instead of the logarithm.

NumPyro maps a positive parameter ``s`` to the real line by ``u = log s``. When ``s`` is
well identified, its posterior is close to symmetric on the natural scale, and the logarithm
turns it into a skewed density with a long left tail (towards ``s = 0``): NUTS then needs
small steps and long trajectories. lmmhmc samples every standard deviation (``sigma`` and the
random-effect sds) as::

    s = a * softplus(u),    softplus(u) = log(1 + exp(u)),

with the anchor ``a`` a fraction `ANCHOR_SCALE` of the ML estimate of ``s``, floored at
`ANCHOR_FLOOR` times the residual sd. From about ``a`` upwards the map is close to linear,
so the posterior keeps its shape; towards ``s = 0`` it behaves like the logarithm, so the
boundary stays out of reach. The anchor sits below the estimate, near the posterior's spread:
an sd whose posterior reaches towards 0 then gets a short left tail (of about ``a``) instead of
the logarithm's long one.
The model and its posterior are unchanged: the prior's density is the user's, and NumPyro adds
the transform's Jacobian.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import (
    AffineTransform,
    ComposeTransform,
    SoftplusTransform,
    biject_to,
)

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .layout import SIGMA

#: Floor of an anchor and of a starting sd, as a fraction of the residual sd (ML estimates can
#: be 0).
ANCHOR_FLOOR = 0.05
#: Anchor of an sd as a fraction of its ML estimate (0.3 gave the highest minimum ESS per
#: gradient over 0.15, 0.3, 0.5 and 1 on the crossed paper data sets; see docs/priors.md).
ANCHOR_SCALE = 0.3


class AnchoredPositive(constraints.Constraint):
    """The positive reals, mapped from the real line by ``anchor * softplus(u)``."""

    event_dim = 0

    def __init__(self, anchor):
        self.anchor = anchor
        self.lower_bound = 0.0

    def __call__(self, x):
        xp = jnp if isinstance(x, jax.Array) else np
        return xp.greater(x, 0.0)

    def feasible_like(self, prototype):
        return jnp.broadcast_to(jnp.asarray(self.anchor, dtype=float), jnp.shape(prototype))

    def tree_flatten(self):
        return (self.anchor,), (("anchor",), {})

    def eq(self, other, static: bool = False):
        return isinstance(other, AnchoredPositive) and np.array_equal(
            np.asarray(self.anchor), np.asarray(other.anchor)
        )


@biject_to.register(AnchoredPositive)
def _anchored_softplus(constraint: AnchoredPositive):
    return ComposeTransform([SoftplusTransform(), AffineTransform(0.0, constraint.anchor)])


class Anchored(dist.Distribution):
    """A positive prior ``base`` whose support is `AnchoredPositive` (same density)."""

    pytree_data_fields = ("base", "anchor")

    def __init__(self, base: dist.Distribution, anchor):
        self.base = base
        self.anchor = anchor
        super().__init__(batch_shape=base.batch_shape, event_shape=base.event_shape)

    @property
    def support(self) -> AnchoredPositive:
        return AnchoredPositive(self.anchor)

    def sample(self, key, sample_shape=()):
        return self.base.sample(key, sample_shape)

    def log_prob(self, value):
        return self.base.log_prob(value)


class Scaled(dist.Distribution):
    """A prior for ``theta`` seen on the internal scale ``t = (theta - loc) / unit``.

    ``log p(t) = log p_base(loc + unit t) + log unit``: the same probabilities, so the
    posterior of ``theta`` is unchanged (see `lmmhmc.scaling`). A prior on the positive
    reals is one on ``t > -loc / unit``; any other is a prior on the real line.
    """

    pytree_data_fields = ("base", "loc", "unit")
    pytree_aux_fields = ("positive",)

    def __init__(self, base: dist.Distribution, loc, unit):
        self.base = base
        self.loc = loc
        self.unit = unit
        self.positive = positive_support(base)
        super().__init__(batch_shape=base.batch_shape, event_shape=base.event_shape)

    @property
    def support(self) -> constraints.Constraint:
        if self.positive:
            return constraints.greater_than(-self.loc / self.unit)
        return constraints.real

    def sample(self, key, sample_shape=()):
        return (self.base.sample(key, sample_shape) - self.loc) / self.unit

    def log_prob(self, value):
        return self.base.log_prob(self.loc + self.unit * value) + jnp.log(self.unit)


def positive_support(d: dist.Distribution) -> bool:
    """Whether ``d`` is a distribution on the non-negative reals."""
    lower = getattr(d.support, "lower_bound", None)
    return lower is not None and float(np.asarray(lower)) >= 0.0


def starts(sds: Mapping[str, float], sigma: float) -> dict[str, float]:
    """Where the chains start ``sigma`` and every sd in ``sds`` (name -> ML estimate).

    ``max(estimate, ANCHOR_FLOOR * sigma)``: the ML estimate, off the boundary 0.
    """
    return _floored(sds, sigma, 1.0)


def anchors(sds: Mapping[str, float], sigma: float) -> dict[str, float]:
    """Anchor of ``sigma`` and of every sd in ``sds`` (name -> ML estimate).

    ``max(ANCHOR_SCALE * estimate, ANCHOR_FLOOR * sigma)``.
    """
    return _floored(sds, sigma, ANCHOR_SCALE)


def _floored(sds: Mapping[str, float], sigma: float, scale: float) -> dict[str, float]:
    """``max(scale * estimate, ANCHOR_FLOOR * sigma)`` for ``sigma`` and every sd in ``sds``
    (an estimate of ``sigma`` in ``sds``, as with known standard errors, replaces ``sigma``,
    which then is only the residual scale)."""
    floor = ANCHOR_FLOOR * sigma
    return {name: max(scale * float(value), floor)
            for name, value in {SIGMA: sigma, **sds}.items()}


def anchor_priors(
    priors: Mapping[str, dist.Distribution], sds: Mapping[str, float], sigma: float,
    unit: Mapping[str, float] | None = None,
) -> dict[str, dist.Distribution]:
    """``priors`` with ``sigma`` and every sd in ``sds`` anchored (see `anchors()`).

    With ``unit``, the priors are on the sampler's internal scale (`lmmhmc.scaling`) and
    each anchor is divided by its parameter's unit.
    """
    out = dict(priors)
    for name, anchor in anchors(sds, sigma).items():
        if name in priors:  # (no sigma with known standard errors or a non-Gaussian family)
            out[name] = Anchored(priors[name], anchor / (1.0 if unit is None else unit[name]))
    return out
