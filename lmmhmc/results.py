"""FitResult: the posterior of a fitted model and what a user reads from it.

Tidy tables ([`FitResult.fixef()`][lmmhmc.results.FitResult.fixef],
[`FitResult.ranef()`][lmmhmc.results.FitResult.ranef],
[`FitResult.varcorr()`][lmmhmc.results.FitResult.varcorr]) share the columns ``mean``, ``sd``
(posterior standard deviation, ``ddof=1`` as ArviZ), ``hdi_lower`` and ``hdi_upper``
(highest-density interval of probability ``hdi_prob``, kept in ``DataFrame.attrs["hdi_prob"]``); the
numbers are those of `arviz.summary()`.
"""

from __future__ import annotations

import html
import shutil
import textwrap
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
from .centering import describe as describe_centering
from .diagnostics import Diagnostics, diagnose
from .errors import LmmhmcError
from .hypothesis import difference
from .layout import Layout, TermLayout
from .ml import MLResult
from .options import HDI_PROB, FitOptions
from .plan import Plan
from .predict import predict
from .priors import Priors

__all__ = ["FitResult", "compare", "format_table"]

#: Columns of the statistics in the tidy tables.
STAT_COLUMNS = ["mean", "sd", "hdi_lower", "hdi_upper"]
#: Key columns of `FitResult.ranef` and `FitResult.coef`.
RANEF_KEYS = ["term", "group", "level", "column", "coefficient"]
#: Number format of the printed overview (``repr`` and the notebook's HTML).
_FLOAT_FORMAT = "{:.4g}".format
#: Last line of the printed overview.
_OVERVIEW_NOTE = ("summary() adds MCSE, ESS and R-hat; ranef() gives the random effects per "
                  "level.")


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
        Wall-clock seconds: ``init`` (the ML start and starting points), ``compile_wait``
        (waiting for the sampler's compilation, which runs in the background from the start
        of the fit, beyond what the ML start covered), ``sampling`` (warm-up and draws) and
        ``recovery`` (its compilation included).
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
        hdi_prob : float, default 0.94
            Probability mass of the highest-density intervals.

        Returns
        -------
        pandas.DataFrame
            One row per parameter (``"Subject_corr[1|Subject, Days|Subject]"`` for a
            correlation, ``"1|Subject[308]"`` for a random effect), as `arviz.summary()`.
        """
        return az.summary(self.idata, var_names=self.parameter_names(random_effects),
                          hdi_prob=hdi_prob)

    @cached_property
    def diagnostics(self) -> Diagnostics:
        """Convergence figures over every parameter and random effect (R-hat, bulk and tail
        ESS, divergences, tree-depth hits, E-BFMI per chain); see `lmmhmc.diagnostics`."""
        return diagnose(self.idata, self.parameter_names(True), self.options.max_tree_depth)

    def header(self) -> str:
        """Formula, plan, sampler settings, divergences and convergence, as printed above the
        summary.

        Divergent transitions, draws that hit the maximum tree depth and failed convergence
        checks come with advice.
        """
        s = self.settings
        centering = describe_centering(self.assembled)
        lines = [
            f"Formula: {self.design.formula}",
            f"Observations: {self.design.n_obs}",
            f"Plan: {self.plan}",
            *([f"Sampled terms: {centering}"] if centering else []),
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
        """Print [`header()`][lmmhmc.results.FitResult.header] and
        [`summary()`][lmmhmc.results.FitResult.summary] (arguments as for
        [`summary()`][lmmhmc.results.FitResult.summary]; ``hdi_prob`` defaults to 0.94)."""
        print(f"{self.header()}\n\n{format_table(self.summary(random_effects, hdi_prob))}")

    def fixef(self, hdi_prob: float = HDI_PROB) -> pd.DataFrame:
        """Posterior summaries of the fixed effects.

        Parameters
        ----------
        hdi_prob : float, default 0.94
            Probability mass of the highest-density intervals.

        Returns
        -------
        pandas.DataFrame
            Columns ``term`` (design column name, e.g. ``"Days"``), ``mean``, ``sd``,
            ``hdi_lower``, ``hdi_upper``; one row per fixed effect in design order, then a
            distributional model's fixed effects of log sigma (``"sigma_Intercept"``, ...).
        """
        return _table([_rows(self.idata.posterior[name], hdi_prob, term=name)
                       for name in (*self.layout.fixed, *self.layout.sigma_fixed)],
                      hdi_prob, ["term"])

    def ranef(self, hdi_prob: float = HDI_PROB) -> pd.DataFrame:
        """Posterior summaries of every random effect, one row per term, column and level.

        Parameters
        ----------
        hdi_prob : float, default 0.94
            Probability mass of the highest-density intervals.

        Returns
        -------
        pandas.DataFrame
            Columns ``term`` (e.g. ``"Days | Subject"``), ``group`` (the grouping factor),
            ``level`` (its label), ``column`` (the posterior variable, e.g. ``"Days|Subject"``),
            ``coefficient`` (the column's name in the fixed part, e.g. ``"Days"``, which tells
            the rows of a term's columns apart), ``mean``, ``sd``, ``hdi_lower``,
            ``hdi_upper``; ordered by term, column, level.
        """
        post = self.idata.posterior
        return _table([
            _rows(post[c], hdi_prob, term=lt.label, group=lt.factor, level=list(t.levels),
                  column=c, coefficient=name)
            for lt, t in self._term_pairs() for c, name in zip(lt.columns, _coefficients(lt, t),
                                                              strict=True)
        ], hdi_prob, RANEF_KEYS)

    def _term_pairs(self) -> list:
        """``(TermLayout, GroupTerm)`` of every term: the mean's, then log sigma's."""
        pairs = list(zip(self.layout.terms, self.design.terms, strict=True))
        if self.design.sigma_part is not None:
            pairs += zip(self.layout.sigma_terms, self.design.sigma_part.terms, strict=True)
        return pairs

    def coef(self, hdi_prob: float = HDI_PROB) -> pd.DataFrame:
        """Coefficients per group level: fixed plus random effect (lme4's and brms's ``coef``).

        For each term, column and level ``j``, the draws of ``beta_c + u_{c, j}`` when the
        fixed part has the column's coefficient ``c`` (``"1|Subject"`` matches ``Intercept``,
        ``"Days|Subject"`` matches ``Days``), else of ``u_{c, j}`` alone (e.g. the columns of
        ``(0 + cond || g)`` when the fixed part codes ``cond`` with an intercept).

        Unlike lme4 and brms, fixed effects without a random counterpart in the term are not
        repeated per level (they are the same at every level: see
        [`fixef()`][lmmhmc.results.FitResult.fixef]).

        Parameters
        ----------
        hdi_prob : float, default 0.94
            Probability mass of the highest-density intervals.

        Returns
        -------
        pandas.DataFrame
            The columns of [`ranef()`][lmmhmc.results.FitResult.ranef]; the statistics are those of
            the coefficients.
        """
        post = self.idata.posterior
        fixed = {*self.layout.fixed, *self.layout.sigma_fixed}
        parts = []
        for lt, t in self._term_pairs():
            for c, name in zip(lt.columns, _coefficients(lt, t), strict=True):
                draws = post[c] + post[name] if name in fixed else post[c]
                parts.append(_rows(draws.rename(c), hdi_prob, term=lt.label, group=lt.factor,
                                   level=list(t.levels), column=c, coefficient=name))
        return _table(parts, hdi_prob, RANEF_KEYS)

    def varcorr(self, hdi_prob: float = HDI_PROB) -> pd.DataFrame:
        """Random-effect standard deviations and correlations, and the residual sd.

        Parameters
        ----------
        hdi_prob : float, default 0.94
            Probability mass of the highest-density intervals.

        Returns
        -------
        pandas.DataFrame
            Columns ``group`` (grouping factor, ``"Residual"`` for sigma), ``term``, ``kind``
            (``"sd"`` or ``"corr"``), ``var1``, ``var2`` (the random-effect columns; ``var2``
            only for correlations), ``parameter`` (the row name in
            [`summary()`][lmmhmc.results.FitResult.summary]), ``mean``, ``sd``, ``hdi_lower``,
            ``hdi_upper``.
        """
        post = self.idata.posterior
        parts = []
        for t in (*self.layout.terms, *self.layout.sigma_terms):
            parts += [_rows(post[sd], hdi_prob, group=t.factor, term=t.label, kind="sd",
                            var1=c, var2=None, parameter=sd)
                      for c, sd in zip(t.columns, t.sds, strict=True)]
            if t.correlated:
                rows, cols = t.pairs()  # the pair order of the posterior
                parts.append(_rows(post[t.corr], hdi_prob, group=t.factor, term=t.label,
                                   kind="corr", var1=[t.columns[j] for j in cols],
                                   var2=[t.columns[i] for i in rows],
                                   parameter=t.pair_names()))
        sigma = self.layout.sigma
        if sigma is not None:
            parts.append(_rows(post[sigma], hdi_prob, group="Residual", term=None, kind="sd",
                               var1=sigma, var2=None, parameter=sigma))
        return _table(parts, hdi_prob)

    def _overview(self) -> list[tuple[str, pd.DataFrame]]:
        """The captioned tables of the printed overview: fixed effects, then the random-effect
        standard deviations and correlations and the residual sd."""
        fixed = self.fixef().set_index("term").rename_axis(None)
        vc = self.varcorr().set_index("parameter").rename_axis(None)
        return [(f"Fixed effects (posterior mean, sd, {HDI_PROB:.0%} HDI):", fixed),
                ("Random effects and residual:", vc[STAT_COLUMNS])]

    def __repr__(self) -> str:
        """The overview: `header` (formula, plan, sampler, divergences, convergence),
        then the fixed effects and the random-effect sds and correlations, wrapped at the
        terminal's width (see `format_table`)."""
        width = shutil.get_terminal_size().columns

        def wrap(text: str) -> list[str]:
            return [part for line in text.splitlines()
                    for part in textwrap.wrap(line, width, subsequent_indent="  ",
                                              break_long_words=False, break_on_hyphens=False)]

        lines = wrap(self.header())
        for caption, table in self._overview():
            lines += ["", *wrap(caption), format_table(table, float_format=_FLOAT_FORMAT)]
        return "\n".join([*lines, "", *wrap(_OVERVIEW_NOTE)])

    def _repr_html_(self) -> str:
        """The overview of `__repr__` for Jupyter: the header as preformatted text, the
        tables as HTML tables."""
        parts = [f"<pre>{html.escape(self.header())}</pre>"]
        for caption, table in self._overview():
            parts += [f"<p><b>{html.escape(caption)}</b></p>",
                      table.to_html(float_format=_FLOAT_FORMAT)]
        parts.append(f"<p><i>{html.escape(_OVERVIEW_NOTE)}</i></p>")
        return "<div>\n" + "\n".join(parts) + "\n</div>"

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
        offset: str | np.ndarray | None = None,
    ) -> np.ndarray:
        """Posterior draws of the linear predictor or of new observations.

        See [`lmmhmc.predict.predict()`][lmmhmc.predict.predict] for the arguments.

        Returns
        -------
        numpy.ndarray
            Shape ``(draws, rows)``.
        """
        return predict(self, newdata, kind=kind, include_random=include_random,
                       new_levels=new_levels, draws=draws, seed=seed, weights=weights,
                       offset=offset)

    def loo(self, pointwise: bool | None = None, scale: str | None = None) -> az.ELPDData:
        """PSIS leave-one-out cross-validation (`arviz.loo()`).

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
        """Widely applicable information criterion (`arviz.waic()`); see
        [`loo()`][lmmhmc.results.FitResult.loo]."""
        return az.waic(_with_log_likelihood(self), pointwise=pointwise, scale=scale)

    def bayes_R2(
        self,
        hdi_prob: float = HDI_PROB,
        summary: bool = True,
        residuals: bool = False,
        draws: int | None = None,
    ) -> pd.DataFrame | np.ndarray:
        """Bayesian R-squared (Gelman, Goodrich, Gabry & Vehtari 2019), as brms's ``bayes_R2``.

        Per posterior draw ``s``, with ``mu_s`` the fitted linear predictor of the training
        observations (random effects included, [`predict()`][lmmhmc.results.FitResult.predict] with
        ``kind="mean"``)::

            R2_s = var(mu_s) / (var(mu_s) + e_s),    e_s = sigma_s^2 mean(1 / w)

        variances over the observations with ``ddof=1``. ``e_s`` is the model's residual
        variance averaged over the observations (``sigma^2 / w_i`` with weights ``w``, 1
        without; ``s_i^2 [+ sigma^2]`` with ``y | se(s)``; ``sigma_i^2`` of a distributional
        model: `predict(kind="sigma")`). With ``residuals=True``, ``e_s = var(y - mu_s)``,
        the variance of the realized residuals, as brms computes it (always, for a
        non-Gaussian family, with ``mu_s`` the expected response).

        Parameters
        ----------
        hdi_prob : float, default 0.94
            Probability mass of the highest-density interval.
        summary : bool
            Return the summary; ``False`` returns the draws.
        residuals : bool
            Residual variance from the realized residuals instead of ``sigma``.
        draws : int, optional
            Use this many evenly spaced posterior draws (see
            [`predict()`][lmmhmc.results.FitResult.predict]); all by default.

        Returns
        -------
        pandas.DataFrame or numpy.ndarray
            One row ``"R2"`` with ``mean``, ``sd``, ``hdi_lower``, ``hdi_upper``; or the draws
            ``R2_s``, shape ``(draws,)``, chain by chain.
        """
        mu = self.predict(kind="mean", draws=draws)
        explained = mu.var(axis=1, ddof=1)
        if residuals or not self.layout.gaussian:
            unexplained = (self.design.y - mu).var(axis=1, ddof=1)
        else:
            unexplained = np.mean(self.predict(kind="sigma", draws=draws) ** 2, axis=1)
        r2 = explained / (explained + unexplained)
        if not summary:
            return r2
        draws_r2 = xr.DataArray(r2[None], dims=("chain", "draw"), name="R2")
        return _table([_rows(draws_r2, hdi_prob)], hdi_prob).set_axis(["R2"])

    def hypothesis(self, hypotheses: str | Sequence[str],
                   hdi_prob: float = HDI_PROB) -> pd.DataFrame:
        """Test hypotheses about the parameters on the posterior draws (brms's ``hypothesis``).

        A hypothesis compares two arithmetic expressions of parameters (named as the rows of
        [`summary()`][lmmhmc.results.FitResult.summary], or a random effect ``"1|Subject[308]"``)
        with one of ``<``, ``<=``, ``>``, ``>=``, ``=``: ``"Days > 5"``, ``"Intercept - 250 = 0"``,
        ``"int[T.low] < 0"``, ``"Intercept + 1|Subject[308] > 250"``. Per draw ``s`` it gives
        ``delta_s = lhs_s - rhs_s``. One-sided hypotheses get the posterior probability
        ``P = Pr(delta > 0 | y)`` (or ``< 0``) and the evidence ratio ``P / (1 - P)``. Point
        hypotheses (``=``) get neither: brms's Savage-Dickey ratio needs prior draws, which
        lmmhmc does not make; read their interval instead.

        Parameters
        ----------
        hypotheses : str or sequence of str
            One hypothesis or several.
        hdi_prob : float, default 0.94
            Probability mass of the highest-density interval of ``delta``.

        Returns
        -------
        pandas.DataFrame
            One row per hypothesis: ``hypothesis`` (as given), ``mean`` and ``sd`` of
            ``delta`` (brms's Estimate and Est.Error), ``hdi_lower``, ``hdi_upper`` (a
            highest-density interval, where brms shows an equal-tailed one),
            ``excludes_zero`` (the interval excludes 0, brms's star), ``post_prob`` and
            ``evid_ratio`` (NaN for ``=``).

        Raises
        ------
        LmmhmcError
            If a hypothesis has no comparison or several, an unknown parameter, or anything
            besides names, numbers, ``+ - * /`` and parentheses (no code is evaluated).
        """
        texts = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
        parts = []
        for text in texts:
            delta, direction = difference(text, self.idata.posterior)
            part = _rows(delta, hdi_prob, hypothesis=text)
            part["excludes_zero"] = (part["hdi_lower"] > 0) | (part["hdi_upper"] < 0)
            prob = {">": float((delta > 0).mean()), "<": float((delta < 0).mean())}
            part["post_prob"] = prob.get(direction, np.nan)
            with np.errstate(divide="ignore"):
                part["evid_ratio"] = part["post_prob"] / (1.0 - part["post_prob"])
            parts.append(part)
        return _table(parts, hdi_prob, ["hypothesis"])

    # ------------------------------------------------------------------ plots, saving

    def plot_trace(self, var_names: list[str] | None = None, kind: str = "trace") -> Figure:
        """Trace or rank plot of the parameters; see
        [`lmmhmc.plots.plot_trace()`][lmmhmc.plots.plot_trace]."""
        return plots.plot_trace(self, var_names=var_names, kind=kind)

    def plot_forest(self, var_names: list[str] | None = None,
                    hdi_prob: float = HDI_PROB) -> Figure:
        """Forest plot of the parameters; see
        [`lmmhmc.plots.plot_forest()`][lmmhmc.plots.plot_forest] (``hdi_prob`` defaults to 0.94)."""
        return plots.plot_forest(self, var_names=var_names, hdi_prob=hdi_prob)

    def plot_ranef(self, term: str | None = None, hdi_prob: float = HDI_PROB) -> Figure:
        """Caterpillar plot of the random effects; see
        [`lmmhmc.plots.plot_ranef()`][lmmhmc.plots.plot_ranef] (``hdi_prob`` defaults to 0.94)."""
        return plots.plot_ranef(self, term=term, hdi_prob=hdi_prob)

    def plot_conditional(self, var: str, hdi_prob: float = HDI_PROB,
                         n_points: int = 100) -> Figure:
        """Conditional-effects plot; see
        [`lmmhmc.plots.plot_conditional()`][lmmhmc.plots.plot_conditional] (``hdi_prob`` defaults
        to 0.94)."""
        return plots.plot_conditional(self, var, hdi_prob=hdi_prob, n_points=n_points)

    def plot_ppc(self, kind: str = "kde", num_pp_samples: int = 100, seed: int = 0) -> Figure:
        """Posterior predictive check; see [`lmmhmc.plots.plot_ppc()`][lmmhmc.plots.plot_ppc]."""
        return plots.plot_ppc(self, kind=kind, num_pp_samples=num_pp_samples, seed=seed)

    def save(self, path: str | PathLike) -> None:
        """Write the fit to a netCDF file that [`lmmhmc.load()`][lmmhmc.io.load] reads back.

        The file is an ArviZ netCDF file plus the metadata that rebuilds the model (see
        [`lmmhmc.storage`][lmmhmc.storage]); [`lmmhmc.save()`][lmmhmc.io.save] does the same.
        """
        model = self.model
        weights, offset = (value if value is None or isinstance(value, str)
                           else np.asarray(value, dtype=np.float64)
                           for value in (model.weights, model.offset))
        storage.write(self.idata, {
            "formula": model.formula,
            "data": model.data,
            "weights": weights,
            "offset": offset,
            "na_action": model.na_action,
            "family": model.family,
            "plan": self.plan,
            "priors": self.priors,
            "options": self.options.as_dict(),
            "timings": self.timings,
            "gradients": self.gradients,
            "ml": self.ml,
        }, path)


def compare(results: Mapping[str, FitResult], **kwargs) -> pd.DataFrame:
    """Rank fits of the same observations by expected predictive accuracy (`arviz.compare()`).

    Parameters
    ----------
    results : mapping of str to FitResult
        Named fits; each needs its pointwise log-likelihood.
    **kwargs
        Passed to `arviz.compare()` (``ic="loo"`` or ``"waic"``, ``method``, ``scale``).

    Returns
    -------
    pandas.DataFrame
        ArviZ's comparison table, best model first.
    """
    return az.compare({name: _with_log_likelihood(r) for name, r in results.items()}, **kwargs)


def format_table(table: pd.DataFrame, **kwargs) -> str:
    """`table` as text: every row and column, wrapped at the terminal's width.

    Columns that do not fit in ``shutil.get_terminal_size().columns`` characters (the
    ``COLUMNS`` environment variable, else the terminal, else 80) continue in blocks below, as
    pandas prints a wide frame; none is elided. `kwargs` go to
    `pandas.DataFrame.to_string()`.
    """
    return table.to_string(line_width=shutil.get_terminal_size().columns, **kwargs)


def _coefficients(term: TermLayout, group_term) -> list[str]:
    """The fixed-effect name of each of a term's columns (prefixed like its columns: a
    distributional model's ``"sigma_Intercept"`` for ``"sigma_1|subj"``)."""
    return [term.prefix + name for name in group_term.coefficients]


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

    Mean, sd and HDI are computed as `arviz.summary()` computes them; one row per element
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
