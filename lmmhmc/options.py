"""FitOptions: the sampler's options and their defaults, in one place.

[`lmmhmc.fit()`][lmmhmc.fit], [`lmmhmc.Model.fit()`][lmmhmc.Model.fit], the command line and the
documentation read the defaults from `DEFAULTS`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from .errors import LmmhmcError

__all__ = ["DEFAULTS", "FitOptions"]

#: ``chain_method`` values.
CHAIN_METHODS = ("auto", "parallel", "sequential", "vectorized")
#: ``init`` values.
INITS = ("ml", "prior")
#: ``centering`` values.
CENTERINGS = ("auto", "none", "all")
#: Starting points of an ML fit (``Model.fit_ml(starts=...)``) by default: one, lme4's start,
#: as lme4 and MixedModels.jl have it (every lme4 reference case reaches lme4's optimum from it).
ML_STARTS = 1


@dataclass(frozen=True)
class FitOptions:
    """How a model is fitted.

    Attributes
    ----------
    marginalize : "auto", "all", "none" or sequence of str
        Grouping terms to integrate out (see [`lmmhmc.plan.make_plan()`][lmmhmc.plan.make_plan]).
    chains, draws, warmup : int
        Markov chains, draws per chain kept after warm-up, warm-up iterations per chain.
    seed : int
        Seed of every random choice of the fit (chains, starting points, recovery).
    target_accept : float
        NUTS target acceptance probability, in (0, 1).
    progress : bool
        Report progress on stderr: a bar per chain in a terminal or a notebook, one line per
        chain phase and per long stage (ML start, recovery, ...) otherwise, e.g. in a log
        (see `lmmhmc.progress`).
    init : {"ml", "prior"}
        Start the chains near the maximum-likelihood estimate (and sample the sds on a scale
        anchored at it, see `lmmhmc.reparam`), or at draws from the prior.
    dense_mass : bool or None
        Adapt a dense mass matrix (True) or a diagonal one (False). None: dense up to
        `DENSE_MASS_MAX_DIM` sampled dimensions; above, a dense block over the parameters
        (fixed effects, sds, correlations, sigma) when they are at most
        `DENSE_MASS_MAX_DIM`, and diagonal over the random effects (NumPyro's structured mass
        matrix). A fit records the choice: a tuple of site names is that dense block.
    max_tree_depth : int
        NUTS maximum tree depth.
    chain_method : {"auto", "parallel", "sequential", "vectorized"}
        ``"parallel"`` runs as many chains at a time as there are CPU cores, on threads calling
        one compiled program; ``"sequential"`` one after another; ``"vectorized"`` all in one
        batched program (for a GPU). ``"auto"``: parallel on CPU, vectorized on a GPU (see
        `lmmhmc.runtime.resolve_chain_method`).
    centering : {"auto", "none", "all"}
        How the sampled (not marginalized) terms' random effects are sampled: ``"auto"``
        centers each level whose data dominate its prior at the ML estimate and samples the
        others non-centered (see `lmmhmc.centering`); ``"none"``: every level non-centered;
        ``"all"``: every level centered, a distributional model's terms of log sigma included
        (which ``"auto"`` samples non-centered).
    log_likelihood : bool or None
        Store the pointwise log-likelihood (for LOO); None: when draws x observations is at
        most `LOG_LIK_MAX_CELLS`.
    posterior_predictive : bool
        Store replicated responses, one per draw.
    """

    marginalize: str | tuple[str, ...] = "auto"
    chains: int = 4
    draws: int = 1000
    warmup: int = 1000
    seed: int = 0
    target_accept: float = 0.8
    progress: bool = True
    init: str = "ml"
    dense_mass: bool | tuple[str, ...] | None = None
    max_tree_depth: int = 10
    chain_method: str = "auto"
    centering: str = "auto"
    log_likelihood: bool | None = None
    posterior_predictive: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.marginalize, str):
            if not isinstance(self.marginalize, Sequence):
                raise LmmhmcError("marginalize must be 'auto', 'all', 'none' or a list of terms, "
                                  f"got {self.marginalize!r}")
            object.__setattr__(self, "marginalize", tuple(self.marginalize))
        for name, low in (("chains", 1), ("draws", 1), ("warmup", 0), ("max_tree_depth", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise LmmhmcError(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(self.seed, numbers.Integral):
            raise LmmhmcError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.target_accept, numbers.Real) or not 0.0 < self.target_accept < 1.0:
            raise LmmhmcError(f"target_accept must be in (0, 1), got {self.target_accept!r}")
        if isinstance(self.dense_mass, list):  # a saved fit's dense block (JSON)
            object.__setattr__(self, "dense_mass", tuple(self.dense_mass))
        _one_of("init", self.init, INITS)
        _one_of("chain_method", self.chain_method, CHAIN_METHODS)
        _one_of("centering", self.centering, CENTERINGS)

    def replace(self, **changes) -> FitOptions:
        """A copy with ``changes`` applied (and checked)."""
        return replace(self, **changes)

    def as_dict(self) -> dict:
        """The options as a plain dict."""
        return asdict(self)


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise LmmhmcError(f"{name} must be one of {', '.join(map(repr, allowed))}, "
                          f"got {value!r}")


#: The defaults.
DEFAULTS = FitOptions()
#: Sampled dimension up to which a dense mass matrix is adapted (``dense_mass=None``).
DENSE_MASS_MAX_DIM = 60
#: Largest ``draws x observations`` for which the pointwise log-likelihood is stored by default.
LOG_LIK_MAX_CELLS = 5e7
#: Default probability mass of the highest-density intervals of the summaries (ArviZ's default).
HDI_PROB = 0.94
