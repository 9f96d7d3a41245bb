"""Centered or non-centered sampling of each level of a sampled term, chosen from the ML fit.

A sampled term's effects ``u_j`` (level ``j``, ``d`` columns, prior ``N(0, G)`` with
``G = Lambda Lambda^T``) are sampled either non-centered, ``u_j = Lambda z_j`` with
``z_j ~ N(0, I)``, or centered, ``u_j`` itself. The non-centered form mixes well when the data
say little about ``u_j`` (the prior dominates), the centered form when they say much
(Papaspiliopoulos, Roberts & Skoeld 2007: for the Gaussian hierarchy the two forms' Gibbs
convergence rates are ``r`` and ``1 - r``, with ``r`` the ratio below).

For each level, at the ML estimate, the ratio of the posterior variance of ``u_j`` (given every
other parameter) to its prior variance, averaged over the level's ``d`` directions::

    A_j = Lambda^T (sum_{i in j} w_i b_i b_i^T) Lambda / sigma^2,     r_j = tr((I + A_j)^-1) / d

(``b_i`` the term's covariate row of observation ``i``, ``w_i`` its weight). ``centering="auto"``
centers level ``j`` when ``r_j < 1/2``: the data dominate its prior.

The choice enters the sampler as data (one boolean per level, ``data["centered"]``), not as
part of the compiled program, so it costs no compilation and is made after the ML fit, while
the programs compile ahead.
"""

from __future__ import annotations

from dataclasses import replace

import jax.numpy as jnp
import numpy as np

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .assembled import AssembledModel
from .design import Design
from .layout import SIGMA
from .ml import MLResult

__all__ = ["CENTER_BELOW", "centered", "level_ratios", "choose", "describe"]

#: A level is centered when its posterior-to-prior variance ratio is below this.
CENTER_BELOW = 0.5


def level_ratios(design: Design, k: int, lam: np.ndarray, sigma: float) -> np.ndarray:
    """``r_j`` of every level of term ``k`` (see the module docstring), at the factor
    ``lam`` (``Lambda``, d x d) and residual sd ``sigma``."""
    term = design.terms[k]
    w = np.ones(design.n_obs) if design.weights is None else np.asarray(design.weights)
    block = np.asarray(term.block, dtype=float)
    outer = w[:, None, None] * block[:, :, None] * block[:, None, :]
    info = np.zeros((len(term.levels), block.shape[1], block.shape[1]))
    np.add.at(info, np.asarray(term.index), outer)  # sum_i w_i b_i b_i^T per level
    a = np.einsum("ji,ljk,km->lim", lam, info, lam) / sigma**2  # Lambda^T S_j Lambda / sigma^2
    d = a.shape[-1]
    return np.trace(np.linalg.inv(np.eye(d) + a), axis1=1, axis2=2) / d


def choose(assembled: AssembledModel, ml: MLResult | None, centering: str) -> dict:
    """Which levels of each sampled term to center: term position -> boolean per level, and
    under ``"sigma"`` a tuple of the same for a distributional model's terms of log sigma.

    ``centering``: ``"auto"`` (levels with ``r_j < CENTER_BELOW``; none without an ML fit, and
    none for a non-Gaussian family, whose information per observation is not ``w_i /
    sigma^2``), ``"none"`` or ``"all"``. Log sigma's terms are centered with ``"all"`` only:
    the homoscedastic ML start has no estimate of their sds, and on the paper's stroop model
    centering them did not raise the smallest ESS (that of ``sigma_Intercept``;
    benchmarks/results/distributional.md).
    """
    design = assembled.design
    out: dict = {SIGMA: tuple(np.full(t.n_levels, centering == "all")
                              for t in assembled.layout.sigma_terms)}
    for k in assembled.layout.sampled:
        n = len(design.terms[k].levels)
        if centering == "all":
            out[k] = np.ones(n, bool)
        elif centering == "auto" and ml is not None and assembled.layout.gaussian:
            out[k] = level_ratios(design, k, np.asarray(ml.factors[k]), ml.sigma) < CENTER_BELOW
        else:
            out[k] = np.zeros(n, bool)
    return out


def centered(assembled: AssembledModel, levels: dict) -> AssembledModel:
    """``assembled`` with the sampled terms' ``levels`` (from `choose`) centered (log sigma's
    unchanged when ``levels`` has no ``"sigma"`` entry)."""
    masks = {k: jnp.asarray(levels[k], bool) for k in assembled.layout.sampled}
    sigma = tuple(jnp.asarray(m, bool) for m in levels.get(SIGMA,
                                                            assembled.data["sigma_centered"]))
    return replace(assembled, data={**assembled.data, "centered": masks,
                                    "sigma_centered": sigma})


def describe(assembled: AssembledModel) -> str:
    """``"(1 | d): 1128 of 1128 levels centered"`` per sampled term (log sigma's too, as
    ``(sigma: 1 | d)``); empty without any."""
    layout, masks = assembled.layout, assembled.data["centered"]
    labels = [f"({assembled.plan.labels[k]})" for k in layout.sampled]
    labels += [f"({t.label})" for t in layout.sigma_terms]
    counts = [masks[k] for k in layout.sampled] + list(assembled.data["sigma_centered"])
    return ", ".join(f"{label}: {int(np.sum(m))} of {m.size} levels centered"
                     for label, m in zip(labels, counts, strict=True))
