"""lmmhmc: Bayesian linear mixed models with random effects marginalized inside NumPyro HMC.

Importing the package switches JAX to double precision (``jax_enable_x64``): the marginal
likelihood kernels need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax

jax.config.update("jax_enable_x64", True)

from lmmhmc import datasets  # noqa: E402  (after enabling float64)
from lmmhmc.io import load, save  # noqa: E402
from lmmhmc.model import Model  # noqa: E402
from lmmhmc.options import DEFAULTS, FitOptions  # noqa: E402
from lmmhmc.results import FitResult, compare  # noqa: E402


def fit(
    formula: str,
    data,
    *,
    weights=None,
    na_action: str = "drop",
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
    log_likelihood: bool | None = DEFAULTS.log_likelihood,
    posterior_predictive: bool = DEFAULTS.posterior_predictive,
) -> FitResult:
    """Fit a linear mixed model by NUTS with the random effects marginalized.

    The defaults of the sampler's options are those of
    [`lmmhmc.options.FitOptions`][lmmhmc.options.FitOptions].

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"rt ~ cond + (1 + cond | subject) + (1 | item)"``.
    data : pandas.DataFrame
        The observations.
    weights : str or array-like, optional
        Column name or vector of positive observation weights (as for
        [`Model`][lmmhmc.Model]).
    na_action : {"drop", "raise"}, default "drop"
        What to do with rows that have missing values in the used columns (as for
        [`Model`][lmmhmc.Model]).
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
        Show progress bars.
    init : {"ml", "prior"}, default "ml"
        Start near the ML estimate (sds sampled on a scale anchored at it) or at prior draws.
    dense_mass : bool or None, default None
        Dense mass matrix; None: dense up to 60 sampled dimensions.
    max_tree_depth : int, default 10
        NUTS maximum tree depth.
    chain_method : {"auto", "parallel", "sequential"}, default "auto"
        Chains side by side on JAX devices, or one after the other; ``"auto"``: parallel when
        JAX sees at least ``chains`` devices.
    log_likelihood : bool or None, default None
        Keep the pointwise log-likelihood (for LOO); None: when draws x observations is at most
        5e7.
    posterior_predictive : bool, default False
        Keep replicated responses, one per draw.

    Returns
    -------
    FitResult
    """
    return Model(formula, data, weights=weights, na_action=na_action).fit(
        priors=priors, marginalize=marginalize, chains=chains, draws=draws, warmup=warmup,
        seed=seed, target_accept=target_accept, progress=progress, init=init,
        dense_mass=dense_mass, max_tree_depth=max_tree_depth, chain_method=chain_method,
        log_likelihood=log_likelihood, posterior_predictive=posterior_predictive)


__version__ = "0.1.0"

__all__ = ["FitOptions", "FitResult", "Model", "__version__", "compare", "datasets", "fit",
           "load", "save"]
