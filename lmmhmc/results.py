"""FitResult: the posterior of a fitted model and what a user reads from it.

Tidy tables (:meth:`FitResult.fixef`, :meth:`FitResult.ranef`, :meth:`FitResult.varcorr`) share
the columns ``mean``, ``sd`` (posterior standard deviation, ``ddof=1`` as ArviZ),
``hdi_lower`` and ``hdi_upper`` (highest-density interval of probability ``hdi_prob``, kept in
``DataFrame.attrs["hdi_prob"]``); the numbers are those of :func:`arviz.summary`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from os import PathLike

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from . import plots, storage
from .assembled import AssembledModel
from .diagnostics import Diagnostics, diagnose
from .errors import LmmhmcError
from .layout import Layout
from .ml import MLResult
from .options import FitOptions
from .plan import Plan
from .predict import predict
from .priors import Priors

__all__ = ["FitResult", "compare"]

#: Columns of the statistics in the tidy tables.
STAT_COLUMNS = ["mean", "sd", "hdi_lower", "hdi_upper"]
#: Default probability mass of the highest-density intervals (ArviZ's default).
HDI_PROB = 0.94


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
    assembled : AssembledModel
        The assembled model that was fitted (layout, plan, priors, kernel, likelihood).
    options : FitOptions
        The options of the fit, automatic choices resolved.
    timings : dict
        Wall-clock seconds of the ML start, sampling (compilation included) and recovery.
    gradients : dict
        Gradient evaluations (leapfrog steps) of all chains: ``{"warmup": n, "sampling": n}``.
    ml : MLResult or None
        The maximum-likelihood estimate used as the starting point.
    """

    idata: az.InferenceData
    model: object
    assembled: AssembledModel
    options: FitOptions
    timings: dict
    gradients: dict = field(default_factory=dict)
    ml: MLResult | None = field(default=None, repr=False)

    @property
    def design(self):
        """The model's design (the one the assembled model was built from)."""
        return self.model.design

    @property
    def layout(self) -> Layout:
        """Names, shapes and coordinates of the parameters."""
        return self.assembled.layout

    @property
    def plan(self) -> Plan:
        """Which grouping terms were marginalized."""
        return self.assembled.plan

    @property
    def priors(self) -> Priors:
        """The priors used."""
        return self.assembled.priors

    @property
    def settings(self) -> dict:
        """The options of the fit as a dict (chains, draws, warmup, seed, ...)."""
        return self.options.as_dict()

    @property
    def n_divergences(self) -> int:
        """Number of divergent transitions after warm-up."""
        return int(np.sum(self.idata.sample_stats["diverging"].values))

    def parameter_names(self, random_effects: bool = True) -> list[str]:
        """Posterior variable names: fixed effects, sigma, sds, correlations, random effects."""
        names = list(self.idata.posterior.data_vars)
        if random_effects:
            return names
        columns = set(self.layout.effect_names())
        return [n for n in names if n not in columns]

    # ------------------------------------------------------------------ summaries

    def summary(self, random_effects: bool = False, hdi_prob: float = HDI_PROB) -> pd.DataFrame:
        """ArviZ summary (mean, sd, HDI, MCSE, bulk and tail ESS, R-hat) of the parameters.

        Parameters
        ----------
        random_effects : bool
            Include every random effect (one row per level and column).
        hdi_prob : float
            Probability mass of the highest-density intervals.

        Returns
        -------
        pandas.DataFrame
            One row per parameter (``"Subject_corr[1|Subject, Days|Subject]"`` for a
            correlation, ``"1|Subject[308]"`` for a random effect), as :func:`arviz.summary`.
        """
        return az.summary(self.idata, var_names=self.parameter_names(random_effects),
                          hdi_prob=hdi_prob)

    @cached_property
    def diagnostics(self) -> Diagnostics:
        """Convergence figures over every parameter and random effect (R-hat, bulk and tail
        ESS, divergences, tree-depth hits, E-BFMI per chain); see :mod:`lmmhmc.diagnostics`."""
        return diagnose(self.idata, self.parameter_names(True), self.options.max_tree_depth)

    def header(self) -> str:
        """Formula, plan, sampler settings, divergences and convergence, as printed above the
        summary.

        Divergent transitions, draws that hit the maximum tree depth and failed convergence
        checks come with advice.
        """
        s = self.settings
        lines = [
            f"Formula: {self.design.formula}",
            f"Observations: {self.design.n_obs}",
            f"Plan: {self.plan}",
            f"Sampler: NUTS, {s['chains']} chains x {s['draws']} draws "
            f"(warm-up {s['warmup']}), target_accept={s['target_accept']}, seed={s['seed']}",
            f"Divergences: {self._divergence_line()}",
        ]
        saturated = int(np.sum(self.idata.sample_stats["tree_depth"].values
                               >= s["max_tree_depth"]))
        if saturated:
            lines.append(
                f"Tree depth: {saturated} draws hit max_tree_depth={s['max_tree_depth']}; "
                "sampling may be inefficient: refit with a larger max_tree_depth"
            )
        problems = self.diagnostics.problems(transitions=False)
        verdict = "; ".join(problems) if problems else "ok"
        lines.append(f"Convergence: {self.diagnostics} ({verdict})")
        return "\n".join(lines)

    def _divergence_line(self) -> str:
        n = self.n_divergences
        if not n:
            return "0"
        total = self.idata.sample_stats["diverging"].size
        return (
            f"{n} of {total} draws ({100 * n / total:.1f}%): the posterior may be biased. "
            "Refit with a higher target_accept (e.g. 0.95 or 0.99); if divergences remain, "
            "marginalize more terms (marginalize='all') or use tighter priors on the "
            "random-effect standard deviations"
        )

    def print_summary(self, random_effects: bool = False, hdi_prob: float = HDI_PROB) -> None:
        """Print :meth:`header` and :meth:`summary` (arguments as for :meth:`summary`)."""
        print(f"{self.header()}\n\n{self.summary(random_effects, hdi_prob).to_string()}")

    def fixef(self, hdi_prob: float = HDI_PROB) -> pd.DataFrame:
        """Posterior summaries of the fixed effects.

        Parameters
        ----------
        hdi_prob : float
            Probability mass of the highest-density intervals.

        Returns
        -------
        pandas.DataFrame
            Columns ``term`` (design column name, e.g. ``"Days"``), ``mean``, ``sd``,
            ``hdi_lower``, ``hdi_upper``; one row per fixed effect in design order.
        """
        return _table([_rows(self.idata.posterior[name], hdi_prob, term=name)
                       for name in self.layout.fixed], hdi_prob, ["term"])

    def ranef(self, hdi_prob: float = HDI_PROB) -> pd.DataFrame:
        """Posterior summaries of every random effect, one row per term, column and level.

        Parameters
        ----------
        hdi_prob : float
            Probability mass of the highest-density intervals.

        Returns
        -------
        pandas.DataFrame
            Columns ``term`` (e.g. ``"Days | Subject"``), ``group`` (the grouping factor),
            ``level`` (its label), ``column`` (the posterior variable, e.g. ``"Days|Subject"``),
            ``mean``, ``sd``, ``hdi_lower``, ``hdi_upper``; ordered by term, column, level.
        """
        return _table([
            _rows(self.idata.posterior[c], hdi_prob, term=t.text, group=t.factor,
                  level=list(t.levels), column=c)
            for t in self.design.terms for c in t.columns
        ], hdi_prob, ["term", "group", "level", "column"])

    def varcorr(self, hdi_prob: float = HDI_PROB) -> pd.DataFrame:
        """Random-effect standard deviations and correlations, and the residual sd.

        Parameters
        ----------
        hdi_prob : float
            Probability mass of the highest-density intervals.

        Returns
        -------
        pandas.DataFrame
            Columns ``group`` (grouping factor, ``"Residual"`` for sigma), ``term``, ``kind``
            (``"sd"`` or ``"corr"``), ``var1``, ``var2`` (the random-effect columns; ``var2``
            only for correlations), ``parameter`` (the row name in :meth:`summary`), ``mean``,
            ``sd``, ``hdi_lower``, ``hdi_upper``.
        """
        post = self.idata.posterior
        parts = []
        for t in self.layout.terms:
            parts += [_rows(post[sd], hdi_prob, group=t.factor, term=t.text, kind="sd",
                            var1=c, var2=None, parameter=sd)
                      for c, sd in zip(t.columns, t.sds, strict=True)]
            if t.correlated:
                rows, cols = t.pairs()  # the pair order of the posterior
                parts.append(_rows(post[t.corr], hdi_prob, group=t.factor, term=t.text,
                                   kind="corr", var1=[t.columns[j] for j in cols],
                                   var2=[t.columns[i] for i in rows],
                                   parameter=t.pair_names()))
        sigma = self.layout.sigma
        parts.append(_rows(post[sigma], hdi_prob, group="Residual", term=None, kind="sd",
                           var1=sigma, var2=None, parameter=sigma))
        return _table(parts, hdi_prob)

    def __repr__(self) -> str:
        fixed = self.fixef().set_index("term").rename_axis(None)
        vc = self.varcorr().set_index("parameter").rename_axis(None)
        return "\n".join([
            self.header(), "",
            f"Fixed effects (posterior mean, sd, {HDI_PROB:.0%} HDI):",
            fixed.to_string(float_format="{:.4g}".format), "",
            "Random effects and residual:",
            vc[STAT_COLUMNS].to_string(float_format="{:.4g}".format), "",
            "summary() adds MCSE, ESS and R-hat; ranef() gives the random effects per level.",
        ])

    # ------------------------------------------------------------------ prediction, LOO

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        *,
        kind: str = "mean",
        include_random: bool = True,
        new_levels: str = "sample",
        draws: int | None = None,
        seed: int = 0,
        weights: str | np.ndarray | None = None,
    ) -> np.ndarray:
        """Posterior draws of the linear predictor or of new observations.

        See :func:`lmmhmc.predict.predict` for the arguments.

        Returns
        -------
        numpy.ndarray
            Shape ``(draws, rows)``.
        """
        return predict(self, newdata, kind=kind, include_random=include_random,
                       new_levels=new_levels, draws=draws, seed=seed, weights=weights)

    def loo(self, pointwise: bool | None = None, scale: str | None = None) -> az.ELPDData:
        """PSIS leave-one-out cross-validation (:func:`arviz.loo`).

        Uses the pointwise log-likelihood conditional on the random effects: it estimates how
        well new observations of the *same* groups are predicted. Its Pareto k diagnostics are
        often high for groups with few observations.

        Parameters
        ----------
        pointwise : bool, optional
            Also return the pointwise values (ArviZ's default when omitted).
        scale : {"log", "negative_log", "deviance"}, optional
            Scale of the result (ArviZ's default, ``"log"``, when omitted).

        Returns
        -------
        arviz.ELPDData
            ``elpd_loo``, its standard error ``se``, ``p_loo``, Pareto k diagnostics.

        Raises
        ------
        LmmhmcError
            If the fit has no pointwise log-likelihood (``log_likelihood=False``).
        """
        return az.loo(_with_log_likelihood(self), pointwise=pointwise, scale=scale)

    def waic(self, pointwise: bool | None = None, scale: str | None = None) -> az.ELPDData:
        """Widely applicable information criterion (:func:`arviz.waic`); see :meth:`loo`."""
        return az.waic(_with_log_likelihood(self), pointwise=pointwise, scale=scale)

    # ------------------------------------------------------------------ plots, saving

    def plot_trace(self, var_names: list[str] | None = None, kind: str = "trace") -> Figure:
        """Trace or rank plot of the parameters; see :func:`lmmhmc.plots.plot_trace`."""
        return plots.plot_trace(self, var_names=var_names, kind=kind)

    def plot_forest(self, var_names: list[str] | None = None,
                    hdi_prob: float = HDI_PROB) -> Figure:
        """Forest plot of the parameters; see :func:`lmmhmc.plots.plot_forest`."""
        return plots.plot_forest(self, var_names=var_names, hdi_prob=hdi_prob)

    def plot_ranef(self, term: str | None = None, hdi_prob: float = HDI_PROB) -> Figure:
        """Caterpillar plot of the random effects; see :func:`lmmhmc.plots.plot_ranef`."""
        return plots.plot_ranef(self, term=term, hdi_prob=hdi_prob)

    def plot_conditional(self, var: str, hdi_prob: float = HDI_PROB,
                         n_points: int = 100) -> Figure:
        """Conditional-effects plot; see :func:`lmmhmc.plots.plot_conditional`."""
        return plots.plot_conditional(self, var, hdi_prob=hdi_prob, n_points=n_points)

    def save(self, path: str | PathLike) -> None:
        """Write the fit to a netCDF file that :func:`lmmhmc.load` reads back.

        The file is an ArviZ netCDF file plus the metadata that rebuilds the model (see
        :mod:`lmmhmc.storage`); :func:`lmmhmc.save` does the same.
        """
        model = self.model
        weights = model.weights
        if weights is not None and not isinstance(weights, str):
            weights = np.asarray(weights, dtype=np.float64)
        storage.write(self.idata, {
            "formula": model.formula,
            "data": model.data,
            "weights": weights,
            "na_action": model.na_action,
            "plan": self.plan,
            "priors": self.priors,
            "options": self.options.as_dict(),
            "timings": self.timings,
            "gradients": self.gradients,
            "ml": self.ml,
        }, path)


def compare(results: Mapping[str, FitResult], **kwargs) -> pd.DataFrame:
    """Rank fits of the same observations by expected predictive accuracy (:func:`arviz.compare`).

    Parameters
    ----------
    results : mapping of str to FitResult
        Named fits; each needs its pointwise log-likelihood.
    **kwargs
        Passed to :func:`arviz.compare` (``ic="loo"`` or ``"waic"``, ``method``, ``scale``).

    Returns
    -------
    pandas.DataFrame
        ArviZ's comparison table, best model first.
    """
    return az.compare({name: _with_log_likelihood(r) for name, r in results.items()}, **kwargs)


def _with_log_likelihood(result: FitResult) -> az.InferenceData:
    """The fit's InferenceData, checked to hold the pointwise log-likelihood."""
    if "log_likelihood" not in result.idata.groups():
        raise LmmhmcError(
            "this fit has no pointwise log-likelihood (it was fitted with "
            "log_likelihood=False, or draws x observations was too large); refit with "
            "log_likelihood=True to use loo(), waic() or compare()"
        )
    return result.idata


def _rows(values: xr.DataArray, hdi_prob: float, **keys) -> pd.DataFrame:
    """Key columns (scalars are repeated) and the statistics of ``values`` over chains and draws.

    Mean, sd and HDI are computed as :func:`arviz.summary` computes them; one row per element
    of the non-sample dimensions of ``values``.
    """
    hdi = az.hdi(values, hdi_prob=hdi_prob)[values.name]
    stats = {
        "mean": values.mean(dim=("chain", "draw")).values,
        "sd": values.std(dim=("chain", "draw"), ddof=1).values,
        "hdi_lower": hdi.sel(hdi="lower").values,
        "hdi_upper": hdi.sel(hdi="higher").values,
    }
    n = stats["mean"].size
    columns = {k: v if isinstance(v, list) else [v] * n for k, v in keys.items()}
    return pd.DataFrame({**columns, **{k: np.ravel(v) for k, v in stats.items()}})


def _table(parts: list[pd.DataFrame], hdi_prob: float, keys: Sequence[str] = ()) -> pd.DataFrame:
    """Stack the row blocks of a tidy table (columns `keys` and the statistics when there are
    none); remember ``hdi_prob`` in its attrs."""
    if parts:
        table = pd.concat(parts, ignore_index=True)
    else:
        table = pd.DataFrame({name: pd.Series(dtype=object) for name in keys}
                             | {name: pd.Series(dtype=np.float64) for name in STAT_COLUMNS})
    table.attrs["hdi_prob"] = hdi_prob
    return table
