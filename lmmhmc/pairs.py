"""The distinct pairs of levels of two grouping terms among the observations (NumPy only).

They give the blocks of the marginal kernel's cross products of sampled terms
(`lmmhmc.marginal.prepare`) and their count (`lmmhmc.design.Design.level_pair_counts`), tell
whether terms are nested (`lmmhmc.marginal.nested_order`) and count the Schur update's pairs
(`lmmhmc.plan.pair_count`). A module without JAX, so that the design does not import it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["level_pairs"]


def level_pairs(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct pairs (level of ``a``, level of ``b``) of the observations, sorted, and
    the pair of every observation: ``(a_level, b_level, inverse)``.

    ``a`` and ``b`` are grouping terms: ``index`` (N,) and ``n_levels``
    (`lmmhmc.marginal.TermData`).
    """
    key = np.asarray(a.index, dtype=np.int64) * b.n_levels + np.asarray(b.index)
    uniq, inverse = np.unique(key, return_inverse=True)
    return uniq // b.n_levels, uniq % b.n_levels, inverse
