"""Which grouping terms to integrate out: a cost model over subsets of terms.

For a set ``M`` of marginalized terms (``q`` effects), one gradient of the log-density costs
about (floating-point operations; the factor 3 is the reverse pass)::

    projections   (p + 1) (q + q_S) + sum_{m in M, k in S} P_mk d_m d_k
                                      + sum_{k <= l in S} P_kl d_k d_l
                                      (precomputed, see marginal.Affine: q_S the sampled
                                      effects, P_jk the distinct level pairs of terms j and k
                                      among the observations, `Design.level_pair_counts`)
                  N (p + 1 + sum_k d_k + p_s + 3 d_M^2)   when the residual sd differs per
                                      observation with the draw (``sigma ~ ...`` with p_s
                                      columns of log sigma; ``se(s, sigma = TRUE)``): the
                                      weighted Gram blocks of the d_M = sum_{k in M} d_k
                                      marginalized columns are recomputed per gradient
    + 3 min( L_e d_e^3 + schur(e) + q_2^2 dbar + 3 q_2^3 / 3,     eliminate the largest term e
             q^2 dbar + 3 q^3 / 3 )                              one dense joint system
    + 3 sum_i L_i (d_i^3 + d_i D_i (d_i + D_i))                    nested terms (D_i: sum of the
                                                                  d_j of the coarser terms)

For a non-Gaussian family the marginalized terms are reparameterized instead
(`lmmhmc.laplace`): each of the ``K`` Newton steps per gradient recomputes the linear
predictor, the family's weights and the weighted Gram blocks per row, and factors the
joint precision::

    K [ N (p + sum_k d_k + 3 d_M^2) + kernel ]      (kernel: the terms below)

``schur(e)`` is the Schur-complement update ([`schur_cost()`][lmmhmc.plan.schur_cost]), ``q_2`` the
effects of the other marginalized terms. ``"auto"`` marginalizes every term when that costs at
most ``budget`` operations ([`device_budget()`][lmmhmc.plan.device_budget]: `BUDGET` on a
CPU, from a measured calibration on an accelerator); otherwise the affordable subset that
removes the most sampled dimensions (ties: the cheaper one). Terms not marginalized are sampled
(centered or non-centered, `lmmhmc.centering`).

This module owns all costing: the kernel ([`lmmhmc.marginal.prepare()`][lmmhmc.marginal.prepare])
factors the terms in the [`Elimination`][lmmhmc.marginal.Elimination] order it is given, which
[`elimination()`][lmmhmc.plan.elimination] chooses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import jax
import numpy as np

from . import (
    _x64,  # noqa: F401  (float64 before any JAX array)
    calibration,
)
from .design import Design
from .errors import LmmhmcError
from .families import get_family
from .layout import SIGMA
from .marginal import Elimination, TermData, nested_order
from .pairs import level_pairs

#: Budget in floating-point operations per gradient on a CPU (about a millisecond on one core).
BUDGET = 1.0e7
#: Sizes of the dense system timed on an accelerator (`device_budget`).
DEVICE_SIZES = (128, 256, 512, 1024, 2048, 4096)
#: Cost of the dense solve's reverse mode (explicit inverse) relative to its Cholesky.
GRADIENT_FACTOR = 3.0
#: Operations a column pair of the pair-wise Schur update is counted as (per unit of d_1).
PAIR_COST = 50.0
#: Largest ``q_1 q_2`` for which the Schur update's cross matrix is kept dense.
DENSE_CROSS_MAX = 2e7


@dataclass(frozen=True)
class Plan:
    """The chosen marginalization.

    Attributes
    ----------
    marginalized : tuple of int
        Positions (in ``design.terms``) of the integrated-out terms.
    elimination : Elimination or None
        How the kernel factors the marginalized terms (positions among them), None when none
        is marginalized.
    labels : tuple of str
        Text of every term, for display.
    flops : float
        Estimated operations per gradient evaluation.
    sampled_dims : int
        Dimension of the space HMC explores.
    reason : str
        Why this plan was chosen.
    sigma_labels : tuple of str
        A distributional model's terms of log sigma (``"sigma: 1 | g"``), which are always
        sampled.
    """

    marginalized: tuple[int, ...]
    elimination: Elimination | None
    labels: tuple[str, ...]
    flops: float
    sampled_dims: int
    reason: str
    sigma_labels: tuple[str, ...] = ()

    @property
    def sampled(self) -> tuple[int, ...]:
        """Positions of the terms sampled non-centered."""
        return tuple(k for k in range(len(self.labels)) if k not in self.marginalized)

    def __str__(self) -> str:
        marg = ", ".join(f"({self.labels[k]})" for k in self.marginalized) or "none"
        samp = ", ".join([f"({self.labels[k]})" for k in self.sampled]
                         + [f"({label})" for label in self.sigma_labels]) or "none"
        return (
            f"marginalized: {marg}; sampled: {samp}; "
            f"{self.sampled_dims} sampled dims, ~{self.flops:.2g} flops/gradient ({self.reason})"
        )


def kernel_cost(terms: Sequence[TermData]) -> tuple[Elimination, float]:
    """The cheapest factorization of marginalizing ``terms`` jointly, and its operations.

    Nested terms are eliminated block-diagonally one after the other. Otherwise both ways of
    factoring the joint system are costed: eliminating the largest term first (block-diagonal
    part, then the Schur complement of the others), or one dense system of all ``q`` effects.
    The operations include the reverse pass (module docstring).
    """
    d = [np.asarray(t.block).shape[1] for t in terms]
    chain = nested_order(terms)
    if chain is not None:
        nested = 0.0
        for i, j in enumerate(chain):
            coarser = sum(d[k] for k in chain[i + 1 :])
            nested += terms[j].n_levels * (d[j] ** 3 + d[j] * coarser * (d[j] + coarser))
        return Elimination.nested(chain), 3.0 * nested
    sizes = [t.n_levels * dk for t, dk in zip(terms, d, strict=True)]
    q = sum(sizes)
    e = max(range(len(terms)), key=lambda j: (sizes[j], -j))
    q2 = q - sizes[e]
    dbar = np.mean([dk for j, dk in enumerate(d) if j != e]) if q2 else 0.0
    cross, schur = schur_cost(terms, e)
    eliminated = terms[e].n_levels * d[e] ** 3 + schur + q2**2 * dbar + GRADIENT_FACTOR * q2**3 / 3
    dense = _dense_system(q, float(np.mean(d)))
    if dense < eliminated:
        return Elimination.dense(len(terms)), 3.0 * dense
    return Elimination.first(e, len(terms), cross), 3.0 * eliminated


def dense_cost(q: int, dbar: float = 1.0) -> float:
    """Operations per gradient of one dense joint system of ``q`` effects (mean block width
    ``dbar``), the reverse pass included (module docstring)."""
    return 3.0 * _dense_system(q, dbar)


def _dense_system(q: int, dbar: float) -> float:
    """Forming (``q^2 dbar``) and factoring a dense system with its explicit-inverse gradient
    (``GRADIENT_FACTOR q^3 / 3``), before the reverse pass's factor 3."""
    return q**2 * dbar + GRADIENT_FACTOR * q**3 / 3.0


def device_budget(device: jax.Device | None = None) -> float:
    """The budget ``"auto"`` plans with on ``device`` (default: JAX's first device).

    On a CPU, `BUDGET`. On an accelerator, the operations of the largest dense system in
    `DEVICE_SIZES` whose value and gradient the device computes in at most the time a CPU core
    of this machine takes for a system of `BUDGET` operations (`device_calibration`), and at
    least `BUDGET`: a smaller kernel costs an accelerator its launch latency rather than its
    operations, so sampling more terms would not make it cheaper.
    """
    return calibrated_budget(device_calibration(device or jax.devices()[0]))


def calibrated_budget(timings: dict | None) -> float:
    """`device_budget` from a `device_calibration` (`BUDGET` for None)."""
    if timings is None:
        return BUDGET
    return max([BUDGET] + [dense_cost(int(n)) for n, t in timings["device_s"].items()
                           if t <= timings["cpu_s"]])


def device_calibration(device: jax.Device) -> dict | None:
    """``{"cpu_n": n, "cpu_s": t, "device_s": {"n": t_n}}``: the seconds of the dense system of
    size ``n`` (the smallest of at least `BUDGET` operations) on a CPU core of this machine, and
    of the `DEVICE_SIZES` systems on ``device`` up to the first one slower than that
    (`lmmhmc.calibration`, measured once per device; the sizes are JSON's string keys).
    None on a CPU, or when JAX started without its CPU backend (no reference to scale by)."""
    if device.platform == "cpu":
        return None
    try:
        cpu = jax.devices("cpu")[0]
    except RuntimeError:
        return None
    reference = next(n for n in range(1, 10**4) if dense_cost(n) >= BUDGET)

    def measure() -> dict:
        allowed = calibration.dense_seconds([reference], cpu)[reference]
        return {"cpu_n": reference, "cpu_s": allowed,
                "device_s": calibration.dense_seconds(DEVICE_SIZES, device, limit=allowed)}

    return calibration.remembered(device, f"n {reference}, sizes {DEVICE_SIZES}", measure)


def elimination(terms: Sequence[TermData]) -> Elimination:
    """The factorization [`lmmhmc.marginal.prepare()`][lmmhmc.marginal.prepare] should use for
    ``terms``."""
    return kernel_cost(terms)[0]


def gradient_cost(design: Design, subset: Sequence[int],
                  family: str = "gaussian") -> tuple[float, Elimination | None]:
    """Estimated operations per gradient of marginalizing ``subset`` (reparameterizing it, for
    a non-Gaussian ``family``), and its factorization.

    The factorization's positions refer to ``subset`` (the kernel's list of terms).
    """
    terms = design.terms
    n, p = design.X.shape
    sampled = [k for k in range(len(terms)) if k not in subset]
    if not subset:
        return float(n * (p + sum(terms[k].d for k in sampled))), None
    q = sum(terms[k].n_levels * terms[k].d for k in subset)
    order, flops = kernel_cost([terms[k] for k in subset])
    if family != "gaussian":
        d = sum(terms[k].d for k in subset)
        rows = n * (p + sum(t.d for t in terms) + GRADIENT_FACTOR * d * d)
        return float(get_family(family).newton_steps * (rows + flops)), order
    if per_observation_sd(design):
        # the weighted Gram blocks per gradient: a (sum_k d_k)^2 outer product per row, and
        # the residual, log sigma's predictor and the projections per row
        d = sum(terms[k].d for k in subset)
        part = design.sigma_part
        log_sigma = 0 if part is None else part.X.shape[1] + sum(t.d for t in part.terms)
        rows = n * (p + 1 + sum(t.d for t in terms) + log_sigma + GRADIENT_FACTOR * d * d)
        return float(rows + flops), order
    # projections Z^T W r and r^T W r, precomputed (Affine): the fixed columns', and the
    # sampled terms' cross products over their level pairs (a gather, a small product and a
    # scatter per pair)
    pairs = design.level_pair_counts
    cross = sum(pairs[m, k] * terms[m].d * terms[k].d for k in sampled
                for m in (*subset, *(j for j in sampled if j >= k)))
    base = (p + 1) * (q + sum(terms[k].n_levels * terms[k].d for k in sampled)) + cross
    return float(base + flops), order


def per_observation_sd(design: Design) -> bool:
    """Whether the residual sd differs per observation with the draw (``sigma ~ ...``, or
    ``se(s, sigma = TRUE)``), so that the kernel's Gram blocks are recomputed per gradient."""
    return design.sigma_part is not None or (design.se is not None and design.se_sigma)


def schur_cost(terms: Sequence[TermData], eliminate: int) -> tuple[str, float]:
    """How the Schur complement update is formed, and its operations per evaluation.

    ``"dense"`` keeps ``N_12`` as an ``(L_1 d_1) x q_2`` matrix (``T = E^T E`` costs
    ``q_1 q_2^2``); ``"pairs"`` accumulates over the column pairs sharing a level of the
    eliminated term (gathers and a scatter per pair: counted as ``PAIR_COST d_1`` operations,
    since scattered updates run far below the speed of dense matrix products on CPU).
    With a single term there is no update.
    """
    if len(terms) == 1:
        return "dense", 0.0
    d1 = np.asarray(terms[eliminate].block).shape[1]
    q1 = terms[eliminate].n_levels * d1
    q2 = sum(t.n_levels * np.asarray(t.block).shape[1] for k, t in enumerate(terms)
             if k != eliminate)
    dense = float(q1) * q2 * q2
    pairs = PAIR_COST * d1 * pair_count(terms, eliminate)
    if dense <= pairs and q1 * q2 <= DENSE_CROSS_MAX:
        return "dense", dense
    return "pairs", pairs


def pair_count(terms: Sequence[TermData], eliminate: int) -> int:
    """Number of column pairs the Schur complement accumulates when ``eliminate`` goes first.

    A cheap data-only cost estimate (no arrays of that size are built).
    """
    first = terms[eliminate]
    others = [t for k, t in enumerate(terms) if k != eliminate]
    if not others:
        return 0
    total = np.zeros(first.n_levels, dtype=np.int64)
    for t in others:
        d = np.asarray(t.block).shape[1]
        total += d * np.bincount(level_pairs(first, t)[0], minlength=first.n_levels)
    return int(np.sum(total * (total + 1) // 2))


def _sampled_dims(design: Design, subset: Sequence[int]) -> int:
    """Fixed effects, sigma (when it is one parameter), covariance parameters, the sampled
    terms' effects, and a distributional model's log sigma (all sampled)."""
    part = design.sigma_part
    n_sigma = int((design.se is None or design.se_sigma) and part is None)
    dims = design.X.shape[1] + n_sigma + _term_dims(design.terms, subset)
    if part is not None:
        dims += part.X.shape[1] + _term_dims(part.terms, ())
    return dims


def _term_dims(terms, marginalized: Sequence[int]) -> int:
    """Covariance parameters of ``terms`` and the effects of those not marginalized."""
    n_cov = sum(t.d + (t.d * (t.d - 1)) // 2 * t.correlated for t in terms)
    return n_cov + sum(t.n_levels * t.d for k, t in enumerate(terms) if k not in marginalized)


def resolve_term(design: Design, name: str) -> int:
    """Position of the term a user names by its text (``"1 | subj"``) or unique factor."""
    key = name.replace(" ", "")
    by_text = [k for k, t in enumerate(design.terms) if t.text.replace(" ", "") == key]
    by_factor = [k for k, t in enumerate(design.terms) if t.factor.replace(" ", "") == key]
    by_column = [
        k for k, t in enumerate(design.terms) if key in [c.replace(" ", "") for c in t.columns]
    ]
    for found in (by_text, by_factor, by_column):
        if len(found) == 1:
            return found[0]
    texts = ", ".join(f"'{t.text}'" for t in design.terms)
    if len(by_factor) > 1:
        raise LmmhmcError(f"'{name}' names several terms; use the term text, one of {texts}")
    raise LmmhmcError(f"no grouping term '{name}' in the model; terms are {texts}")


def make_plan(
    design: Design,
    marginalize: str | Sequence[str] = "auto",
    budget: float | None = None,
    family: str = "gaussian",
) -> Plan:
    """Choose the terms to marginalize.

    Parameters
    ----------
    design : Design
    marginalize : "auto", "all", "none" or list of term names
        ``"auto"`` uses the cost model; ``"all"``/``"none"`` force either extreme; a list names
        terms by their text (``"1 + cond | subj"``) or factor (``"subj"``).
    budget : float, optional
        Operations per gradient that ``"auto"`` may spend on the joint kernel; default
        `device_budget()`: `BUDGET` (1e7) on a CPU, a measured calibration on an accelerator.
    family : str, default "gaussian"
        The response family: a non-Gaussian one's terms are reparameterized, at the cost of
        the family's ``newton_steps`` Newton steps per gradient.
    """
    design.require_terms()
    labels = tuple(t.text for t in design.terms)
    part = design.sigma_part
    sigma_labels = tuple(f"{SIGMA}: {t.text}" for t in (part.terms if part else ()))
    every = tuple(range(len(design.terms)))

    def plan(subset, reason):
        subset = tuple(sorted(subset))
        flops, order = gradient_cost(design, subset, family)
        return Plan(subset, order, labels, flops, _sampled_dims(design, subset), reason,
                    sigma_labels)

    if isinstance(marginalize, str):
        if marginalize == "none":
            return plan((), "user: none")
        if marginalize == "all":
            return plan(every, "user: all")
        if marginalize != "auto":
            return plan((_marginalized_term(design, marginalize),), "user")
    else:
        return plan({_marginalized_term(design, m) for m in marginalize}, "user")
    if budget is None:
        budget = device_budget()
    amount = "" if budget == BUDGET else f" {budget:.2g}"  # named when not the CPU's
    if gradient_cost(design, every, family)[0] <= budget:
        return plan(every, f"auto: joint kernel within budget{amount}")
    return plan(_affordable_subset(design, budget, family),
                f"auto: largest affordable subset{amount and ' within budget' + amount}")


def _marginalized_term(design: Design, name: object) -> int:
    """`resolve_term` for ``marginalize=``, whose error also lists its keywords."""
    if not isinstance(name, str):
        raise LmmhmcError(f"marginalize takes term names (str), got {name!r}")
    try:
        return resolve_term(design, name)
    except LmmhmcError as exc:
        raise LmmhmcError(
            f"marginalize={name!r}: {exc}; marginalize takes 'auto', 'all', 'none' or a list "
            "of these terms (by text or factor)") from None


def _affordable_subset(design: Design, budget: float, family: str) -> tuple[int, ...]:
    """The proper subset of terms within ``budget`` that removes the most sampled dimensions
    (ties: the cheaper); the largest term alone when none is affordable (always linear).

    For a Gaussian response (whose data-dominated levels are centered), a subset that
    marginalizes a term but samples one of its children
    (`lmmhmc.design.Design.parents`: ``(1 | d)`` within ``(1 | dept)``) is not considered:
    the child's effects of one parent level and the parent's effect then enter the data only
    through their sum, a ridge in the sampled effects that a centered child cannot cross and a
    diagonal metric crosses slowly (InstEval with ``(1 | s)`` and ``(1 | dept)``
    marginalized: min ESS 129 for 2000 draws, on the departments). A sampled parent is
    instead the mean of its children's centered levels.
    """
    every = tuple(range(len(design.terms)))
    size_of = [t.n_levels * t.d for t in design.terms]
    parents = [p[0] for p in design.parents() if p is not None]
    children = [k for k, p in enumerate(design.parents()) if p is not None]
    best, best_key = (), (0, 0.0)
    for size in range(len(every) - 1, 0, -1):
        for subset in combinations(every, size):
            if family == "gaussian" and any(m in subset and k not in subset
                                            for k, m in zip(children, parents, strict=True)):
                continue  # a marginalized parent of a sampled child: a ridge (docstring)
            flops = gradient_cost(design, subset, family)[0]
            gain = sum(size_of[k] for k in subset)
            if flops <= budget and (gain, -flops) > (best_key[0], -best_key[1]):
                best, best_key = subset, (gain, flops)
    return best or (max(every, key=lambda k: size_of[k]),)
