"""Convergence diagnostics of a fit, over every parameter and every random effect.

With Stan's thresholds (the defaults of its ``check_hmc_diagnostics`` and of
``posterior::summarise_draws``): a fit is suspect when

- the rank-normalized split R-hat of any scalar exceeds `RHAT_MAX` (1.01);
- the bulk or tail effective sample size of any scalar is below `ESS_PER_CHAIN` (100)
  per chain;
- any transition after warm-up diverged;
- any draw hit the maximum tree depth (the sampler stopped its trajectory early);
- the energy Bayesian fraction of missing information (E-BFMI) of a chain is below
  `EBFMI_MIN` (0.3).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import arviz as az
import numpy as np
import xarray as xr

from .convergence import rhat_and_ess

__all__ = ["Diagnostics", "diagnose"]

#: Largest acceptable R-hat.
RHAT_MAX = 1.01
#: Smallest acceptable bulk and tail ESS per chain.
ESS_PER_CHAIN = 100
#: Smallest acceptable E-BFMI of a chain.
EBFMI_MIN = 0.3


@dataclass(frozen=True)
class Diagnostics:
    """The convergence figures of a fit (see the module docstring for the thresholds).

    Attributes
    ----------
    max_r_hat : float
        Largest rank-normalized split R-hat over every scalar, at ``worst_r_hat``.
    min_ess_bulk, min_ess_tail : float
        Smallest bulk and tail ESS, at ``worst_ess_bulk`` and ``worst_ess_tail``.
    divergences : int
        Divergent transitions after warm-up, of ``n_draws``.
    tree_depth_hits : int
        Draws whose trajectory hit ``max_tree_depth``.
    ebfmi : tuple of float
        E-BFMI of each chain.
    chains : int
    """

    max_r_hat: float
    worst_r_hat: str
    min_ess_bulk: float
    worst_ess_bulk: str
    min_ess_tail: float
    worst_ess_tail: str
    divergences: int
    n_draws: int
    tree_depth_hits: int
    max_tree_depth: int
    ebfmi: tuple[float, ...]
    chains: int

    @property
    def ess_min(self) -> float:
        """The smallest acceptable ESS for this many chains."""
        return ESS_PER_CHAIN * self.chains

    def problems(self, transitions: bool = True) -> list[str]:
        """One sentence per failed check, naming the parameter and the remedy.

        ``transitions=False`` leaves out divergences and tree-depth hits (the header reports
        those on lines of their own).
        """
        out = []
        if not self.max_r_hat <= RHAT_MAX:  # also NaN
            out.append(f"max R-hat {self.max_r_hat:.3f} > {RHAT_MAX} (at '{self.worst_r_hat}'): "
                       "the chains disagree; run longer chains (more warmup and draws)")
        for kind, value, where in (("bulk", self.min_ess_bulk, self.worst_ess_bulk),
                                   ("tail", self.min_ess_tail, self.worst_ess_tail)):
            if not value >= self.ess_min:
                out.append(f"min {kind} ESS {value:.0f} < {self.ess_min:.0f} ({ESS_PER_CHAIN} "
                           f"per chain; at '{where}'): run more draws")
        if self.divergences and transitions:
            out.append(f"{self.divergences} of {self.n_draws} transitions diverged: the "
                       "posterior may be biased; refit with a higher target_accept (e.g. 0.95) "
                       "or marginalize more terms")
        if self.tree_depth_hits and transitions:
            out.append(f"{self.tree_depth_hits} of {self.n_draws} draws hit "
                       f"max_tree_depth={self.max_tree_depth}: refit with a larger "
                       "max_tree_depth")
        low = [f"{v:.2f} (chain {c + 1})" for c, v in enumerate(self.ebfmi) if v < EBFMI_MIN]
        if low:
            out.append(f"E-BFMI below {EBFMI_MIN}: {', '.join(low)}: the sampler explores the "
                       "energy poorly; consider other priors or marginalizing more terms")
        return out

    @property
    def converged(self) -> bool:
        """Whether every check passed."""
        return not self.problems()

    def __str__(self) -> str:
        return (f"max R-hat {self.max_r_hat:.3f}, min bulk ESS {self.min_ess_bulk:.0f}, "
                f"min tail ESS {self.min_ess_tail:.0f}, min E-BFMI {min(self.ebfmi):.2f}")


def diagnose(idata: az.InferenceData, var_names: list[str],
             max_tree_depth: int) -> Diagnostics:
    """The `Diagnostics` of the posterior variables ``var_names`` of ``idata``."""
    post = idata.posterior[var_names]
    stats = idata.sample_stats
    draws, labels = _columns(post)
    r_hat, bulk, tail = rhat_and_ess(draws)
    r_hat, r_where = _extreme(r_hat, labels, np.nanargmax)
    bulk, bulk_where = _extreme(bulk, labels, np.nanargmin)
    tail, tail_where = _extreme(tail, labels, np.nanargmin)
    return Diagnostics(
        max_r_hat=r_hat, worst_r_hat=r_where,
        min_ess_bulk=bulk, worst_ess_bulk=bulk_where,
        min_ess_tail=tail, worst_ess_tail=tail_where,
        divergences=int(stats["diverging"].values.sum()),
        n_draws=int(stats["diverging"].size),
        tree_depth_hits=int(np.sum(stats["tree_depth"].values >= max_tree_depth)),
        max_tree_depth=max_tree_depth,
        ebfmi=tuple(float(v) for v in np.atleast_1d(az.bfmi(idata))),
        chains=int(post.sizes["chain"]),
    )


def _columns(post: xr.Dataset) -> tuple[np.ndarray, list[str]]:
    """Every scalar of every variable as one ``(chain, draw, K)`` array, with its label
    (``"name"`` or ``"name[label]"`` as in `arviz.summary()`)."""
    blocks, labels = [], []
    for name, arr in post.data_vars.items():
        values = np.asarray(arr.values, dtype=float)
        blocks.append(values.reshape(values.shape[:2] + (-1,)))
        extra = arr.dims[2:]
        if not extra:
            labels.append(str(name))
            continue
        coords = [[str(v) for v in arr.coords[d].values] for d in extra]
        labels += [f"{name}[{', '.join(c)}]" for c in itertools.product(*coords)]
    return np.concatenate(blocks, axis=2), labels


def _extreme(values: np.ndarray, labels: list[str], pick) -> tuple[float, str]:
    """The extreme value (the first, on ties) and its label; NaN and "" when every value is
    NaN."""
    if values.size == 0 or np.all(np.isnan(values)):
        return float("nan"), ""
    i = int(pick(values))
    return float(values[i]), labels[i]
