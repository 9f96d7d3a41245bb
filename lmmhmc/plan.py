"""Which grouping terms to integrate out: a cost model over subsets of terms.

For a set ``M`` of marginalized terms (``q`` effects), one gradient of the log-density costs
about (floating-point operations; the factor 3 is the reverse pass)::

    projections   N (p + sum_k d_k)   if some terms are sampled (they enter the residual),
                  (p + 1) q           otherwise (precomputed: see marginal.Affine)
    + 3 min( L_e d_e^3 + schur(e) + q_2^2 dbar + 3 q_2^3 / 3,     eliminate the largest term e
             q^2 dbar + 3 q^3 / 3 )                              one dense joint system
    + 3 sum_i L_i (d_i^3 + d_i D_i (d_i + D_i))                    nested terms (D_i: sum of the
                                                                  d_j of the coarser terms)

``schur(e)`` is the Schur-complement update (:func:`lmmhmc.marginal.schur_cost`), ``q_2`` the
effects of the other marginalized terms. ``"auto"`` marginalizes every term when that costs at
most ``budget`` operations; otherwise the affordable subset that removes the most sampled
dimensions (ties: the cheaper one). Terms not marginalized are sampled non-centered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from .design import Design
from .errors import LmmhmcError
from .marginal import nested_order, schur_cost

#: Default budget in floating-point operations per gradient (a few milliseconds on one core).
BUDGET = 1.0e7
#: Cost of the dense solve's reverse mode (explicit inverse) relative to its Cholesky.
GRADIENT_FACTOR = 3.0


@dataclass(frozen=True)
class Plan:
    """The chosen marginalization.

    Attributes
    ----------
    marginalized : tuple of int
        Positions (in ``design.terms``) of the integrated-out terms.
    eliminate : int, "nested" or None
        Position of the term eliminated first (block-diagonal part), if any are marginalized;
        ``"nested"`` when the marginalized terms are nested and all eliminated block-diagonally.
    labels : tuple of str
        Text of every term, for display.
    flops : float
        Estimated operations per gradient evaluation.
    sampled_dims : int
        Dimension of the space HMC explores.
    reason : str
        Why this plan was chosen.
    """

    marginalized: tuple[int, ...]
    eliminate: int | None
    labels: tuple[str, ...]
    flops: float
    sampled_dims: int
    reason: str

    @property
    def sampled(self) -> tuple[int, ...]:
        """Positions of the terms sampled non-centered."""
        return tuple(k for k in range(len(self.labels)) if k not in self.marginalized)

    def __str__(self) -> str:
        marg = ", ".join(f"({self.labels[k]})" for k in self.marginalized) or "none"
        samp = ", ".join(f"({self.labels[k]})" for k in self.sampled) or "none"
        return (
            f"marginalized: {marg}; sampled: {samp}; "
            f"{self.sampled_dims} sampled dims, ~{self.flops:.2g} flops/gradient ({self.reason})"
        )


def gradient_cost(design: Design, subset: Sequence[int]) -> tuple[float, int | str | None]:
    """Estimated operations per gradient of marginalizing ``subset``, and the term to eliminate.

    Nested terms are eliminated block-diagonally one after the other (``"nested"``). Otherwise
    both ways of factoring the joint system are costed: eliminating the largest term first
    (block-diagonal part, then the Schur complement of the others), or one dense system of all
    ``q`` effects (``eliminate=None``); the cheaper is returned.
    """
    terms = design.terms
    n, p = design.X.shape
    sampled = [k for k in range(len(terms)) if k not in subset]
    if not subset:
        return float(n * (p + sum(terms[k].d for k in sampled))), None
    q = sum(terms[k].n_levels * terms[k].d for k in subset)
    # projections Z^T W r: per observation when sampled terms enter r, else precomputed (Affine)
    base = n * (p + sum(t.d for t in terms)) if sampled else (p + 1) * q
    marg = [terms[k] for k in subset]
    chain = nested_order(marg)
    if chain is not None:
        nested = 0.0
        for i, j in enumerate(chain):
            d, coarser = marg[j].d, sum(marg[k].d for k in chain[i + 1 :])
            nested += marg[j].n_levels * (d**3 + d * coarser * (d + coarser))
        return float(base + 3.0 * nested), "nested" if len(subset) > 1 else subset[0]
    e = max(range(len(subset)), key=lambda j: (marg[j].n_levels * marg[j].d, -j))
    te = marg[e]
    q2 = q - te.n_levels * te.d
    dbar = np.mean([t.d for j, t in enumerate(marg) if j != e]) if q2 else 0.0
    eliminated = (
        te.n_levels * te.d**3
        + schur_cost(marg, e)[1]
        + q2**2 * dbar
        + GRADIENT_FACTOR * q2**3 / 3.0
    )
    dense = q**2 * np.mean([t.d for t in marg]) + GRADIENT_FACTOR * q**3 / 3.0
    if dense < eliminated:
        return float(base + 3.0 * dense), None
    return float(base + 3.0 * eliminated), subset[e]


def _sampled_dims(design: Design, subset: Sequence[int]) -> int:
    n_cov = sum(t.d + (t.d * (t.d - 1)) // 2 * t.correlated for t in design.terms)
    n_re = sum(t.n_levels * t.d for k, t in enumerate(design.terms) if k not in subset)
    return design.X.shape[1] + 1 + n_cov + n_re


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
    budget: float = BUDGET,
) -> Plan:
    """Choose the terms to marginalize.

    Parameters
    ----------
    design : Design
    marginalize : "auto", "all", "none" or list of term names
        ``"auto"`` uses the cost model; ``"all"``/``"none"`` force either extreme; a list names
        terms by their text (``"1 + cond | subj"``) or factor (``"subj"``).
    budget : float
        Operations per gradient that ``"auto"`` may spend on the joint kernel.
    """
    design.require_terms()
    labels = tuple(t.text for t in design.terms)
    every = tuple(range(len(design.terms)))

    def plan(subset, reason):
        flops, e = gradient_cost(design, subset)
        return Plan(tuple(sorted(subset)), e, labels, flops, _sampled_dims(design, subset), reason)

    if isinstance(marginalize, str):
        if marginalize == "none":
            return plan((), "user: none")
        if marginalize == "all":
            return plan(every, "user: all")
        if marginalize != "auto":
            return plan((resolve_term(design, marginalize),), "user")
    else:
        chosen = sorted({resolve_term(design, m) for m in marginalize})
        return plan(tuple(chosen), "user")
    if gradient_cost(design, every)[0] <= budget:
        return plan(every, "auto: joint kernel within budget")
    best, best_key = (), (0, 0.0)
    for size in range(len(every) - 1, 0, -1):
        for subset in combinations(every, size):
            flops = gradient_cost(design, subset)[0]
            if flops > budget:
                continue
            gain = sum(design.terms[k].n_levels * design.terms[k].d for k in subset)
            if gain > best_key[0] or (gain == best_key[0] and flops < best_key[1]):
                best, best_key = subset, (gain, flops)
    if not best:  # even one term is over budget: marginalize the largest one (always linear)
        best = (max(every, key=lambda k: design.terms[k].n_levels * design.terms[k].d),)
    return plan(best, "auto: largest affordable subset")
