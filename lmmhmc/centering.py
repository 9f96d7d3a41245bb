"""Centered or non-centered sampling of each level of a sampled term, chosen from the ML fit.

A sampled term's effects ``u_j`` (level ``j``, ``d`` columns, prior ``N(0, G)`` with
``G = Lambda Lambda^T``) are sampled either non-centered, ``u_j = Lambda z_j`` with
``z_j ~ N(0, I)``, or centered, ``u_j`` itself. The non-centered form mixes well when the data
say little about ``u_j`` (the prior dominates), the centered form when they say much
(Papaspiliopoulos, Roberts & Skoeld 2007: for the Gaussian hierarchy the two forms' Gibbs
convergence rates are ``r`` and ``1 - r``, with ``r`` the ratio below).

For each level, at the ML estimate, the ratio of the posterior variance of ``u_j`` (given every
other parameter) to its prior variance, in the level's least informed direction::

    A_j = Lambda^T (sum_{i in j} f_i b_i b_i^T) Lambda,     r_j = max eig (I + A_j)^-1

(``b_i`` the term's covariate row of observation ``i``, ``f_i`` the Fisher information of one
observation about its linear predictor: ``w_i / sigma^2`` for the mean, ``w_i`` its weight, and
2 for log sigma of a distributional model). ``centering="auto"`` centers level ``j`` when
``r_j < 1/2``: the data dominate its prior in every direction. For log sigma's terms, which
the homoscedastic ML fit does not estimate, ``Lambda`` is diagonal, from a moment estimate of
their sds (`log_sigma_sds`), floored at the sds' start (`lmmhmc.starts.LOG_SIGMA_SD`).

A centered level's site is its whole coefficient, fixed part included (hierarchical
centering; Gelfand, Sahu & Carlin 1995): ``v_j = S beta + u_j ~ N(S beta, G)``, with ``S``
selecting the fixed effects of the term's columns that no other term has
(`lmmhmc.design.Design.level_means`: ``(1 + c | subj)`` beside ``Intercept`` and ``c``; not the
intercept of crossed terms). Centering ``u_j`` alone leaves the fixed effect and the levels'
common shift on a ridge that only the prior bounds; with the fixed part inside, ``beta`` is
located by the level sites' mean.

A term nested in a sampled parent with the same columns (`lmmhmc.design.Design.parents`:
instructors ``(1 | d)`` within departments ``(1 | dept)``) is centered around the parent's
effect as well: ``v_j = S beta + u_p(j) + u_j ~ N(S beta + u_p(j), G)``, ``S`` counted among the
sampled terms without a sampled parent (the intercept belongs to the departments, so that
``v_j`` is the instructor's whole coefficient). Centered only around ``S beta``, the
instructors' mean within a department and the department's effect would lie on a ridge, as
the fixed effect and the levels' common shift do without hierarchical centering; for the same
reason ``"auto"`` never marginalizes a parent while sampling its child (`lmmhmc.plan`).

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
from .design import Design, GroupTerm
from .layout import SIGMA
from .ml import MLResult
from .predictor import linear_predictor
from .starts import LOG_SIGMA_SD, conditional_modes

__all__ = ["CENTER_BELOW", "centered", "level_ratios", "log_sigma_sds", "choose", "describe"]

#: A level is centered when its posterior-to-prior variance ratio is below this.
CENTER_BELOW = 0.5
#: ``-E[log chi^2_1]`` (Euler's gamma + log 2): ``log(r^2) + LOG_CHI2_BIAS`` is unbiased for
#: ``2 log sigma`` when ``r ~ N(0, sigma^2)``.
LOG_CHI2_BIAS = 1.2703628454614782


def level_ratios(term: GroupTerm, information: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``r_j`` of every level of ``term`` (see the module docstring), at the factor ``lam``
    (``Lambda``, d x d), with ``information`` the ``f_i`` of every observation."""
    block = np.asarray(term.block, dtype=float)
    outer = information[:, None, None] * block[:, :, None] * block[:, None, :]
    info = np.zeros((len(term.levels), block.shape[1], block.shape[1]))
    np.add.at(info, np.asarray(term.index), outer)  # sum_i f_i b_i b_i^T per level
    a = np.einsum("ji,ljk,km->lim", lam, info, lam)  # Lambda^T (...) Lambda
    return 1.0 / (1.0 + np.linalg.eigvalsh(a)[:, 0])  # largest eigenvalue of (I + A_j)^-1


def log_sigma_sds(assembled: AssembledModel, ml: MLResult) -> list[np.ndarray]:
    """A moment estimate of the sds of each term of log sigma (one per column), from the
    homoscedastic ML fit's residuals ``r_i`` (conditional modes included).

    ``z_i = log(w_i r_i^2) + LOG_CHI2_BIAS`` estimates ``2 log sigma_i`` with variance
    ``pi^2 / 2`` (those of ``log chi^2_1``). Per level ``j`` with more rows than columns (and
    columns of full rank), least squares of ``z`` on the term's columns gives ``g_j`` with
    sampling covariance ``(pi^2 / 2) (B_j^T B_j)^-1``; the between-level variance of ``g_j``
    less the mean sampling variance, halved in sd, is each column's sd (0 when negative).
    """
    design, part = assembled.design, assembled.design.sigma_part
    effects = dict(enumerate(conditional_modes(assembled, ml)))
    fitted = np.asarray(linear_predictor(design.X, np.asarray(ml.beta.values), design.offset,
                                         [t.index for t in design.terms],
                                         [t.block for t in design.terms], effects))
    z = np.log(np.maximum(_weights(design) * (design.y - fitted) ** 2, 1e-300)) + LOG_CHI2_BIAS
    out = []
    for t in part.terms if part else ():
        block, index = np.asarray(t.block, dtype=float), np.asarray(t.index)
        gram = np.zeros((t.n_levels, t.d, t.d))
        np.add.at(gram, index, block[:, :, None] * block[:, None, :])  # B_j^T B_j
        bz = np.zeros((t.n_levels, t.d))
        np.add.at(bz, index, block * z[:, None])  # B_j^T z_j
        ok = (np.bincount(index, minlength=t.n_levels) > t.d) & (
            np.linalg.matrix_rank(gram) == t.d)
        if ok.sum() < 2:
            out.append(np.zeros(t.d))
            continue
        inv = np.linalg.inv(gram[ok])
        coefs = np.einsum("lij,lj->li", inv, bz[ok])
        noise = np.pi**2 / 2 * np.diagonal(inv, axis1=1, axis2=2)
        var = np.var(coefs, axis=0, ddof=1) - np.mean(noise, axis=0)
        out.append(np.sqrt(np.maximum(var, 0.0)) / 2.0)
    return out


def _weights(design: Design) -> np.ndarray:
    """The ``weights=`` of every observation (ones without)."""
    return np.ones(design.n_obs) if design.weights is None else np.asarray(design.weights)


def _information(design: Design, sigma: float) -> np.ndarray:
    """``f_i = w_i / sigma^2``: an observation's information about its mean."""
    return _weights(design) / sigma**2


def choose(assembled: AssembledModel, ml: MLResult | None, centering: str) -> dict:
    """Which levels of each sampled term to center: term position -> boolean per level, and
    under ``"sigma"`` a tuple of the same for a distributional model's terms of log sigma.

    ``centering``: ``"auto"`` (levels with ``r_j < CENTER_BELOW``; none without an ML fit, and
    none of the mean's for a non-Gaussian family, whose information per observation is not
    ``w_i / sigma^2``), ``"none"`` or ``"all"``.
    """
    design, layout = assembled.design, assembled.layout
    auto = centering == "auto" and ml is not None

    def levels(term: GroupTerm, information: np.ndarray | None, lam: np.ndarray) -> np.ndarray:
        if centering == "all":
            return np.ones(term.n_levels, bool)
        if auto and information is not None:
            return level_ratios(term, information, lam) < CENTER_BELOW
        return np.zeros(term.n_levels, bool)

    out: dict = {k: levels(design.terms[k],
                           _information(design, ml.sigma) if auto and layout.gaussian else None,
                           np.asarray(ml.factors[k]) if auto else None)
                 for k in layout.sampled}
    part, unit = design.sigma_part, assembled.units.unit
    sds = log_sigma_sds(assembled, ml) if auto and part else [None] * len(layout.sigma_terms)
    out[SIGMA] = tuple(
        levels(term, np.full(design.n_obs, 2.0), None if sd is None else np.diag(
            np.maximum(sd, [LOG_SIGMA_SD * float(unit[name]) for name in t.sds])))
        for term, t, sd in zip(part.terms if part else (), layout.sigma_terms, sds,
                               strict=True))
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
    ``(sigma: 1 | d)``), with `` around (1 | dept)`` for a term with a sampled parent; empty
    without any."""
    layout, masks, labels = assembled.layout, assembled.data["centered"], []
    for k in layout.sampled:
        parent = layout.terms[k].parent
        around = "" if parent is None else f" around ({assembled.plan.labels[parent]})"
        labels.append(f"({assembled.plan.labels[k]}){around}")
    labels += [f"({t.label})" for t in layout.sigma_terms]
    counts = [masks[k] for k in layout.sampled] + list(assembled.data["sigma_centered"])
    return ", ".join(f"{label}: {int(np.sum(m))} of {m.size} levels centered"
                     for label, m in zip(labels, counts, strict=True))
