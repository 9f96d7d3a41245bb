"""The sampler's units: every scalar parameter is sampled on a scale set by the data.

HMC adapts its step size and mass matrix, but some of its numbers are absolute (the
regularization of the adapted mass matrix towards the identity, the finite-difference steps of
the starting metric, the first step size). A model of a response in nanoseconds and the same
model in seconds should nevertheless be sampled identically. So the sampler sees every scalar
parameter ``theta`` as ``theta = loc + unit * internal``, with units from the data::

    fixed effect of column x     unit s_y / s_x         (s: standard deviations, ddof = 0)
    intercept (constant column)  unit s_y, loc mean(y)
    sigma                        unit s_y
    sd of random column x        unit s_y / s_x         (s_x = 1 for a constant column)
    log sigma's slope, sd of x   unit 1 / s_x           (distributional models: log scale)
    log sigma's intercept        unit 1, loc log(s_y)

With an offset ``o`` the response's location and scale are those of ``y - o`` (the part of the
response that the parameters explain): ``s_y = sd(y - o)`` and the intercept's ``loc`` is
``mean(y - o)``, so that a fit with an offset is the fit of ``y - o`` without it.

For a non-Gaussian family the parameters act on the link scale (log-odds, log-rate), whose
natural unit is 1: ``s_y = 1``, and the intercept's ``loc`` is the link of the mean response
(``logit(sum y / sum n)``, ``log(mean y)``) less the mean offset.

The posterior is unchanged: the priors are the user's, carried to the internal scale by
`lmmhmc.reparam.Scaled`, and the draws are reported on the data's scale. The default
priors ([`lmmhmc.priors`][lmmhmc.priors]) are stated in the same units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .design import Design
from .errors import DataError
from .layout import parameter_layout

__all__ = ["Units", "link_mean", "response_sd", "units"]


@dataclass(frozen=True)
class Units:
    """``theta = loc + unit * internal`` for every scalar parameter, by name."""

    loc: dict[str, float]
    unit: dict[str, float]

    def to_internal(self, params: dict) -> dict:
        """Parameters (any of them; others pass through) on the internal scale."""
        return {k: (v - self.loc[k]) / self.unit[k] if k in self.unit else v
                for k, v in params.items()}

    def to_external(self, params: dict) -> dict:
        """Parameters (any of them; others pass through) on the data's scale."""
        return {k: self.loc[k] + self.unit[k] * v if k in self.unit else v
                for k, v in params.items()}


def response_sd(design: Design) -> float:
    """``sd(y - o)`` (ddof = 0; ``o`` the offset, 0 without one); an error when constant."""
    s_y = float(np.std(design.shifted_y))
    if not np.isfinite(s_y) or s_y <= 0:
        minus = " minus the offset" if design.has_offset else ""
        raise DataError(
            f"response '{design.response}'{minus} is constant: there is nothing to model")
    return s_y


def link_mean(design: Design, family: str) -> float:
    """The link of the mean response of a non-Gaussian family, less the mean offset."""
    n = design.trials if design.trials is not None else np.ones(design.n_obs)
    mean = np.clip(np.sum(design.y) / np.sum(n), 1e-6, None)
    link = np.log(mean) if family == "poisson" else np.log(mean / max(1.0 - mean, 1e-6))
    return float(link - np.mean(design.offset))


def units(design: Design, family: str = "gaussian") -> Units:
    """The units of every scalar parameter of ``design`` (module docstring)."""
    layout = parameter_layout(design, family=family)
    s_y = response_sd(design) if layout.gaussian else 1.0
    intercept = float(np.mean(design.shifted_y)) if layout.gaussian else link_mean(design,
                                                                                     family)
    loc: dict[str, float] = {}
    unit: dict[str, float] = {}
    for name, s_x in zip(layout.fixed, design.X.std(axis=0), strict=True):
        constant = not s_x > 0
        loc[name] = intercept if constant else 0.0
        unit[name] = s_y if constant else s_y / float(s_x)
    if layout.sigma is not None:
        loc[layout.sigma], unit[layout.sigma] = 0.0, s_y
    for term, names in zip(design.terms, layout.terms, strict=True):
        for name, s_x in zip(names.sds, term.block.std(axis=0), strict=True):
            loc[name], unit[name] = 0.0, s_y / (float(s_x) if s_x > 0 else 1.0)
    if design.sigma_part is not None:
        _log_sigma_units(design.sigma_part, layout, np.log(s_y), loc, unit)
    return Units(loc, unit)


def _log_sigma_units(part: Design, layout, log_s_y: float, loc: dict, unit: dict) -> None:
    """Units of a distributional model's log-sigma parameters (dimensionless, log scale):
    ``1 / s_x`` for a slope and the sd of a random column ``x``, 1 with ``loc = log s_y``
    for the intercept."""
    for name, s_x in zip(layout.sigma_fixed, part.X.std(axis=0), strict=True):
        constant = not s_x > 0
        loc[name], unit[name] = (log_s_y, 1.0) if constant else (0.0, 1.0 / float(s_x))
    for term, names in zip(part.terms, layout.sigma_terms, strict=True):
        for name, s_x in zip(names.sds, term.block.std(axis=0), strict=True):
            loc[name], unit[name] = 0.0, 1.0 / (float(s_x) if s_x > 0 else 1.0)
