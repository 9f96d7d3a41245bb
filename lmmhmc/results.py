"""FitResult: the posterior of a fitted model and what a user reads from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd

from .ml import MLResult
from .plan import Plan
from .priors import Priors


@dataclass
class FitResult:
    """Posterior draws of a linear mixed model (all random effects included).

    Attributes
    ----------
    idata : arviz.InferenceData
        Groups posterior, sample_stats, log_likelihood (pointwise, conditional on the random
        effects), observed_data and, on request, posterior_predictive.
    model : lmmhmc.Model
        The model (formula, data, design).
    plan : Plan
        Which grouping terms were marginalized.
    priors : Priors
        The priors used.
    settings : dict
        Sampler settings (chains, draws, warmup, seed, ...).
    timings : dict
        Wall-clock seconds of the ML start, sampling (compilation included) and recovery.
    ml : MLResult or None
        The maximum-likelihood estimate used as the starting point.
    """

    idata: az.InferenceData
    model: object
    plan: Plan
    priors: Priors
    settings: dict
    timings: dict
    ml: MLResult | None = field(default=None, repr=False)

    @property
    def design(self):
        """The model's design."""
        return self.model.design

    @property
    def n_divergences(self) -> int:
        """Number of divergent transitions after warm-up."""
        return int(np.sum(self.idata.sample_stats["diverging"].values))

    def parameter_names(self, random_effects: bool = True) -> list[str]:
        """Posterior variable names: fixed effects, sigma, sds, correlations, random effects."""
        names = list(self.idata.posterior.data_vars)
        if random_effects:
            return names
        columns = {c for t in self.design.terms for c in t.columns}
        return [n for n in names if n not in columns]

    def summary(self, random_effects: bool = False, hdi_prob: float = 0.94) -> pd.DataFrame:
        """ArviZ summary (mean, sd, HDI, MCSE, ESS, R-hat) of the parameters.

        Parameters
        ----------
        random_effects : bool
            Include every random effect (one row per level and column).
        hdi_prob : float
            Probability mass of the highest-density intervals.
        """
        return az.summary(self.idata, var_names=self.parameter_names(random_effects),
                          hdi_prob=hdi_prob)

    def header(self) -> str:
        """Formula, plan, sampler settings and divergences, as printed above the summary."""
        s = self.settings
        lines = [
            f"Formula: {self.design.formula}",
            f"Observations: {self.design.n_obs}",
            f"Plan: {self.plan}",
            f"Sampler: NUTS, {s['chains']} chains x {s['draws']} draws "
            f"(warm-up {s['warmup']}), target_accept={s['target_accept']}, seed={s['seed']}",
            f"Divergences: {self.n_divergences}",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{self.header()}\n\n{self.summary().to_string()}"
