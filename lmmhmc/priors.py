"""Default priors scaled by the data (as brms and bambi do), and user overrides by name.

Parameter names are those of the posterior ([`lmmhmc.layout`][lmmhmc.layout]): the fixed effects'
column names, ``sigma``, the random-effect sds (``1|Subject_sigma``) and the correlations
(``Subject_corr``, an LKJ prior on the Cholesky factor of the correlation matrix).

Defaults, with ``s_y = sd(y)`` and ``s_x = sd(x)`` of each non-constant column (population sds,
``ddof = 0``; `lmmhmc.scaling` holds them as the parameters' units)::

    slope b_x            ~ Normal(0, 2.5 s_y / s_x)
    Intercept            ~ Normal(mean(y), sqrt((2.5 s_y)^2 + sum_x (2.5 s_y mean(x) / s_x)^2))
    sigma                ~ Half-Student-t(3, 0, 2.5 s_y)
    sd of column x       ~ Half-Student-t(3, 0, 2.5 s_y / s_x)   (s_x = 1 for the intercept)
    correlations         ~ LKJ(eta = 2)

With an offset ``o``, ``y`` stands for ``y - o`` throughout (`lmmhmc.scaling`).

A distributional model's log sigma (``sigma ~ ...``; brms's defaults beside)::

    sigma_Intercept      ~ Student-t(3, log s_y, 2.5)        brms: Student-t(3, 0, 2.5)
    slope sigma_x        ~ Normal(0, 2.5 / s_x)              brms: flat
    sd of column x       ~ Half-Student-t(3, 0, 2.5 / s_x)   brms: Half-Student-t(3, 0, 2.5)
    correlations         ~ LKJ(eta = 2)                      brms: LKJ(1)

For a non-Gaussian family (bernoulli, binomial, poisson) the same rules apply on the link
scale with ``s_y = 1`` and the intercept centred at the link of the mean response (as
rstanarm's default ``normal(0, 2.5 / sd(x))`` slopes; brms leaves slopes flat and gives the
intercept and the sds ``student_t(3, 0, 2.5)``): slopes ``Normal(0, 2.5 / s_x)``, sds
``Half-Student-t(3, 0, 2.5 / s_x)``; there is no ``sigma``.

The intercept's scale is the spread of ``mean(y) - sum_x b_x mean(x)`` implied by the slope
priors, so it stays weakly informative when predictors are not centred.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpyro.distributions as dist

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .design import Design
from .errors import LmmhmcError
from .layout import parameter_layout
from .reparam import positive_support
from .scaling import response_sd, units

STUDENT_T_DF = 3.0
SCALE = 2.5
LKJ_ETA = 2.0


def half_student_t(df: float, scale: float) -> dist.Distribution:
    """Half-Student-t(df, 0, scale): a Student-t folded at zero."""
    return dist.FoldedDistribution(dist.StudentT(df, 0.0, scale))


def describe(d: dist.Distribution) -> str:
    """Short readable form of a distribution, e.g. ``Normal(0, 25.1)``."""
    if isinstance(d, dist.FoldedDistribution) and isinstance(d.base_dist, dist.StudentT):
        b = d.base_dist
        return f"HalfStudentT({_fmt(b.df)}, {_fmt(b.scale)})"
    params = {
        dist.Normal: ("loc", "scale"),
        dist.HalfNormal: ("scale",),
        dist.HalfCauchy: ("scale",),
        dist.Exponential: ("rate",),
        dist.StudentT: ("df", "loc", "scale"),
        dist.LKJCholesky: ("dimension", "concentration"),
        dist.Gamma: ("concentration", "rate"),
        dist.Uniform: ("low", "high"),
    }.get(type(d))
    if params is None:
        return type(d).__name__
    return f"{type(d).__name__}({', '.join(_fmt(getattr(d, p)) for p in params)})"


def _fmt(x) -> str:
    return f"{float(np.asarray(x)):.4g}"


class Priors(Mapping):
    """Ordered mapping from parameter name to NumPyro distribution.

    ``print(priors)`` lists them; ``priors["sigma"]`` gets one.
    """

    def __init__(self, items: dict[str, dist.Distribution]):
        self._items = dict(items)

    def __getitem__(self, key: str) -> dist.Distribution:
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        width = max((len(k) for k in self._items), default=0)
        return "\n".join(f"{k:<{width}} ~ {describe(v)}" for k, v in self._items.items())


def default_priors(design: Design, family: str = "gaussian") -> Priors:
    """Data-scaled default priors for every parameter of ``design`` (see module docstring).

    The scales are `SCALE` times the parameters' units (`lmmhmc.scaling.units()`).
    """
    scale = units(design, family)
    u = scale.unit
    x = design.X
    items: dict[str, dist.Distribution] = {}
    means, sds = x.mean(axis=0), x.std(axis=0)
    slopes = sds > 0
    layout = parameter_layout(design, family=family)
    s_y = response_sd(design) if layout.gaussian else 1.0
    intercept_var = (SCALE * s_y) ** 2 + float(
        np.sum((SCALE * s_y * means[slopes] / sds[slopes]) ** 2)
    )
    for j, name in enumerate(layout.fixed):
        if slopes[j]:
            items[name] = dist.Normal(0.0, SCALE * u[name])
        else:  # the intercept (a constant column)
            items[name] = dist.Normal(scale.loc[name], float(np.sqrt(intercept_var)))
    if layout.sigma is not None:
        items[layout.sigma] = half_student_t(STUDENT_T_DF, SCALE * s_y)
    if design.sigma_part is not None:  # log sigma: the intercept at log s_y, slopes by s_x
        for name, s_x in zip(layout.sigma_fixed, design.sigma_part.X.std(axis=0), strict=True):
            items[name] = (dist.Normal(0.0, SCALE * u[name]) if s_x > 0
                           else dist.StudentT(STUDENT_T_DF, scale.loc[name], SCALE))
    for term in (*layout.terms, *layout.sigma_terms):
        items.update({name: half_student_t(STUDENT_T_DF, SCALE * u[name]) for name in term.sds})
        if term.correlated:
            items[term.corr] = dist.LKJCholesky(term.d, LKJ_ETA)
    return Priors(items)


def resolve_priors(design: Design, overrides: Mapping[str, dist.Distribution] | None,
                   family: str = "gaussian") -> Priors:
    """Defaults with the user's ``overrides`` applied; unknown names are an error."""
    priors = dict(default_priors(design, family))
    for name, value in (overrides or {}).items():
        if name not in priors:
            raise LmmhmcError(
                f"prior given for unknown parameter '{name}'; parameters are: "
                + ", ".join(priors)
            )
        if not isinstance(value, dist.Distribution):
            raise LmmhmcError(
                f"prior for '{name}' must be a numpyro distribution, got {type(value).__name__}"
            )
        default = priors[name]
        if isinstance(default, dist.LKJCholesky) and (
            not isinstance(value, dist.LKJCholesky) or value.dimension != default.dimension
        ):
            raise LmmhmcError(
                f"prior for '{name}' must be numpyro's LKJCholesky({default.dimension}, eta)"
            )
        if isinstance(default, dist.FoldedDistribution) and not positive_support(value):
            raise LmmhmcError(
                f"prior for '{name}' must have positive support (e.g. HalfNormal, Exponential)"
            )
        priors[name] = value
    return Priors(priors)
