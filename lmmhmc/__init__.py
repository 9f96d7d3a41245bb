"""lmmhmc: Bayesian linear mixed models with random effects marginalized inside NumPyro HMC.

``import lmmhmc`` is light: it does not import JAX, NumPyro or ArviZ. The names below are
loaded on first use (PEP 562), so that ``lmmhmc.Model`` (formula and data only) and the
command line's ``--help``, ``datasets`` and ``describe`` start in a fraction of a second. JAX is
switched to double precision (``jax_enable_x64``), which the marginal likelihood kernels need,
by `lmmhmc._x64`, whenever lmmhmc imports JAX (a fit, an ML estimate, a prediction,
`load`), or right away when JAX was imported before lmmhmc.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from lmmhmc.errors import checked_arguments
from lmmhmc.options import DEFAULTS, FitOptions

if "jax" in sys.modules:  # JAX is loaded anyway: float64 at once, for the user's arrays too
    from lmmhmc import _x64  # noqa: F401

if TYPE_CHECKING:
    from lmmhmc import datasets
    from lmmhmc.io import load, save
    from lmmhmc.model import Model
    from lmmhmc.results import FitResult, compare

#: Public name -> the module that defines it, imported on first access.
_LAZY = {
    "FitResult": "lmmhmc.results",
    "Model": "lmmhmc.model",
    "compare": "lmmhmc.results",
    "datasets": "lmmhmc.datasets",
    "load": "lmmhmc.io",
    "save": "lmmhmc.io",
}


def __getattr__(name: str):
    """Import a public name's module on first access (PEP 562); ``lmmhmc.results`` and
    the other submodules are imported on first access too, as when the package imported them."""
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__ == f"lmmhmc.{name}" else getattr(module, name)
    elif not name.startswith("_") and importlib.util.find_spec(f"lmmhmc.{name}") is not None:
        value = importlib.import_module(f"lmmhmc.{name}")
    else:
        raise AttributeError(f"module 'lmmhmc' has no attribute '{name}'")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


@checked_arguments
def fit(
    formula: str | Sequence[str],
    data,
    *,
    weights=None,
    offset=None,
    na_action: str = "drop",
    allow_one_per_level: bool = False,
    family: str = "gaussian",
    priors: Mapping | None = None,
    marginalize: str | Sequence[str] = DEFAULTS.marginalize,
    chains: int = DEFAULTS.chains,
    draws: int = DEFAULTS.draws,
    warmup: int = DEFAULTS.warmup,
    seed: int = DEFAULTS.seed,
    target_accept: float = DEFAULTS.target_accept,
    progress: bool = DEFAULTS.progress,
    init: str = DEFAULTS.init,
    dense_mass: bool | None = DEFAULTS.dense_mass,
    max_tree_depth: int = DEFAULTS.max_tree_depth,
    chain_method: str = DEFAULTS.chain_method,
    centering: str = DEFAULTS.centering,
    log_likelihood: bool | None = DEFAULTS.log_likelihood,
    posterior_predictive: bool = DEFAULTS.posterior_predictive,
) -> FitResult:
    """Fit a linear mixed model by NUTS with the random effects marginalized.

    The defaults of the sampler's options are those of
    [`lmmhmc.options.FitOptions`][lmmhmc.options.FitOptions].

    Parameters
    ----------
    formula : str or list of str
        lme4 syntax, e.g. ``"rt ~ cond + (1 + cond | subject) + (1 | item)"``; or the mean
        formula and ``"sigma ~ ..."`` for a distributional model (see
        [`lmmhmc.Model`][lmmhmc.Model]).
    data : pandas.DataFrame
        The observations.
    weights : str or array-like, optional
        Column name or vector of positive observation weights (as for
        [`Model`][lmmhmc.Model]).
    offset : str or array-like, optional
        Column name or vector of a known offset of the linear predictor, added to the
        formula's ``offset(...)`` terms.
    na_action : {"drop", "raise"}, default "drop"
        What to do with rows that have missing values in the used columns.
    allow_one_per_level : bool, default False
        Fit a grouping factor with one observation per level (with a warning) instead of
        refusing it, as lme4 does.
    family : {"gaussian", "bernoulli", "binomial", "poisson"}, default "gaussian"
        The response distribution (canonical links), as for [`Model`][lmmhmc.Model].
    priors : dict, optional
        Parameter name -> numpyro distribution, replacing the defaults
        ([`lmmhmc.priors.default_priors()`][lmmhmc.priors.default_priors]).
    marginalize : "auto", "all", "none" or list of str, default "auto"
        Grouping terms to integrate out; ``"auto"`` lets the cost model choose.
    chains : int, default 4
        Markov chains.
    draws : int, default 1000
        Draws kept per chain.
    warmup : int, default 1000
        Warm-up iterations per chain.
    seed : int, default 0
        Seed of the fit (chains, starting points, recovery).
    target_accept : float, default 0.8
        NUTS target acceptance probability.
    progress : bool, default True
        Report progress on stderr: bars in a terminal or a notebook, one line per stage
        otherwise (see `lmmhmc.progress`).
    init : {"ml", "prior"}, default "ml"
        Start near the ML estimate (sds sampled on a scale anchored at it) or at prior draws.
    dense_mass : bool or None, default None
        Dense mass matrix; None: dense up to 60 sampled dimensions.
    max_tree_depth : int, default 10
        NUTS maximum tree depth.
    chain_method : {"auto", "parallel", "sequential", "vectorized"}, default "auto"
        ``"parallel"``: as many chains at a time as CPU cores; ``"sequential"``: one after
        another; ``"vectorized"``: all in one batch (GPU); ``"auto"``: parallel on CPU,
        vectorized on a GPU.
    centering : {"auto", "none", "all"}, default "auto"
        Sampled terms' random effects: centered per level where the data dominate the prior
        at the ML estimate (``"auto"``), all non-centered, or all centered (``"all"``, log
        sigma's terms of a distributional model too).
    log_likelihood : bool or None, default None
        Keep the pointwise log-likelihood (for LOO); None: when draws x observations is at most
        5e7.
    posterior_predictive : bool, default False
        Keep replicated responses, one per draw.

    Returns
    -------
    FitResult
    """
    from lmmhmc.model import Model

    model = Model(formula, data, weights=weights, offset=offset, na_action=na_action,
                  allow_one_per_level=allow_one_per_level, family=family)
    return model.fit(
        priors=priors, marginalize=marginalize, chains=chains, draws=draws, warmup=warmup,
        seed=seed, target_accept=target_accept, progress=progress, init=init,
        dense_mass=dense_mass, max_tree_depth=max_tree_depth, chain_method=chain_method,
        centering=centering,
        log_likelihood=log_likelihood, posterior_predictive=posterior_predictive)


__version__ = "0.1.0"

__all__ = ["FitOptions", "FitResult", "Model", "__version__", "compare", "datasets", "fit",
           "load", "save"]
