"""Plots of a fitted model (matplotlib; every function returns a Figure).

The functions work with any backend, including the non-interactive ``Agg`` used to write files::

    fig = result.plot_ranef()
    fig.savefig("ranef.png", dpi=150)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from formulaic.parser.types import Factor
from matplotlib import MatplotlibDeprecationWarning
from matplotlib.figure import Figure

from .errors import DataError, LmmhmcError, did_you_mean
from .inference_data import OBS_DIM
from .plan import resolve_term
from .predict import predict

__all__ = ["conditional_grid", "plot_conditional", "plot_forest", "plot_ppc", "plot_ranef",
           "plot_trace", "posterior_predictive_data", "split_by_scale"]

#: Caterpillar plots label every level up to this many levels per panel.
MAX_LEVEL_LABELS = 60
#: Forest-plot panels hold parameters whose scales differ by at most this factor.
SCALE_RATIO = 10.0


def plot_trace(result, var_names: list[str] | None = None, kind: str = "trace") -> Figure:
    """Trace (or rank) plot of the parameters, per chain.

    Parameters
    ----------
    result : FitResult
    var_names : list of str, optional
        Posterior variables; by default every parameter except the random effects (fixed
        effects, sigma, standard deviations, correlations).
    kind : {"trace", "rank_bars", "rank_vlines"}
        Passed to `arviz.plot_trace()`: draws against iteration, or rank plots.

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = var_names or result.parameter_names(random_effects=False)
    with _quiet_arviz():
        axes = az.plot_trace(result.idata, var_names=names, kind=kind, compact=False)
    fig = np.ravel(axes)[0].figure
    fig.tight_layout()
    return fig


def plot_forest(result, var_names: list[str] | None = None, hdi_prob: float = 0.94) -> Figure:
    """Forest plot: posterior HDIs of the parameters, chains combined.

    By default separate panels, each with its own x axis, for the fixed effects, the standard
    deviations (random effects and residual) and the correlations; fixed effects (and standard
    deviations) of very different scales get panels of their own
    ([`split_by_scale()`][lmmhmc.plots.split_by_scale]), so that an intercept of 250 does not
    squeeze a slope of 10 to a dot.

    Parameters
    ----------
    result : FitResult
    var_names : list of str, optional
        Posterior variables, drawn in one panel; by default every parameter except the random
        effects, in the panels above.
    hdi_prob : float
        Probability mass of the intervals (thin lines; the thick lines are the quartiles).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if var_names is not None:
        panels = {"": list(var_names)}
    else:
        layout = result.layout
        sds = layout.scale_names()
        names = result.parameter_names(random_effects=False)
        panels = {}
        log_sigma = [*layout.sigma_fixed, *layout.sigma_sd_names()]
        for title, group in [("Fixed effects", list(layout.fixed)),
                             ("Standard deviations", sds), ("Log sigma", log_sigma)]:
            if not group:
                continue
            parts = split_by_scale(result, group, hdi_prob)
            panels.update({title if len(parts) == 1 else f"{title}, {k + 1} of {len(parts)}":
                           part for k, part in enumerate(parts)})
        correlations = [n for n in names if n not in {*layout.fixed, *sds, *log_sigma}]
        if correlations:
            panels["Correlations"] = correlations
    rows = [len(names) for names in panels.values()]
    fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                             figsize=(6.0, 0.5 * (sum(rows) + len(rows)) + 0.8),
                             gridspec_kw={"height_ratios": rows})
    for ax, (title, names) in zip(axes[:, 0], panels.items(), strict=True):
        with _quiet_arviz():
            az.plot_forest(result.idata, var_names=names, hdi_prob=hdi_prob, combined=True,
                           ax=ax)
        ax.set_title(f"{title} ({hdi_prob:.0%} HDI)" if title else f"{hdi_prob:.0%} HDI")
    fig.tight_layout()
    return fig


def split_by_scale(result, names: list[str], hdi_prob: float = 0.94) -> list[list[str]]:
    """Posterior variables `names` in groups of similar scale, for separate forest panels.

    A variable's scale is the largest absolute bound of its HDI, ``max(|lower|, |upper|)``.
    Sorted by scale, a variable starts a new group when its scale exceeds `SCALE_RATIO`
    times the smallest scale of the current group. Groups, and the variables within them, keep
    the order of `names`.

    Returns
    -------
    list of list of str
        The groups (none when `names` is empty).
    """
    post = result.idata.posterior
    scale = {n: float(np.max(np.abs(az.hdi(post[n].values.ravel(), hdi_prob=hdi_prob))))
             for n in names}
    groups: list[list[str]] = []
    for name in sorted(names, key=scale.__getitem__):
        if groups and scale[name] <= SCALE_RATIO * max(scale[groups[-1][0]], 1e-300):
            groups[-1].append(name)
        else:
            groups.append([name])
    order = {n: i for i, n in enumerate(names)}
    groups = [sorted(g, key=order.__getitem__) for g in groups]
    return sorted(groups, key=lambda g: order[g[0]])


def plot_ppc(result, kind: str = "kde", num_pp_samples: int = 100, seed: int = 0) -> Figure:
    """Posterior predictive check: the observed response against replicated data sets.

    `arviz.plot_ppc()` of [`posterior_predictive_data()`][lmmhmc.plots.posterior_predictive_data]:
    the distribution of the observed response (black) over those of `num_pp_samples` replicated data
    sets ``y_rep`` drawn from the posterior predictive distribution (blue), and their mean (dashed).

    Parameters
    ----------
    result : FitResult
    kind : {"kde", "cumulative", "scatter"}
        Density estimates, empirical distribution functions or points.
    num_pp_samples : int
        Replicated data sets shown (at most the number of posterior draws).
    seed : int
        Seed of the replicated data (and of ArviZ's choice among stored ones).

    Returns
    -------
    matplotlib.figure.Figure
    """
    idata, n = posterior_predictive_data(result, num_pp_samples, seed)
    with _quiet_arviz():
        axes = az.plot_ppc(idata, kind=kind, num_pp_samples=n, random_seed=seed)
    fig = np.ravel(axes)[0].figure
    fig.tight_layout()
    return fig


def posterior_predictive_data(result, num_pp_samples: int = 100,
                              seed: int = 0) -> tuple[az.InferenceData, int]:
    """The fit's InferenceData with replicated data sets, and how many to show.

    A fit made with ``posterior_predictive=True`` is returned as it is. Otherwise
    ``num_pp_samples`` evenly spaced posterior draws give one replicated data set each,
    ``y_rep = mu + sigma / sqrt(w) * eps`` ([`lmmhmc.predict.predict()`][lmmhmc.predict.predict]
    with ``kind="response"``), in a new InferenceData (one chain) beside the fit's observed data;
    the fit's own InferenceData is not changed.

    Returns
    -------
    idata : arviz.InferenceData
        With the groups ``posterior_predictive`` and ``observed_data``.
    n : int
        ``num_pp_samples``, at most the number of posterior draws.
    """
    idata = result.idata
    stored = idata.get("posterior_predictive")
    pool = stored if stored is not None else idata.posterior
    n = min(num_pp_samples, pool.sizes["chain"] * pool.sizes["draw"])
    if stored is not None:
        return idata, n
    y_rep = predict(result, kind="response", draws=n, seed=seed)
    response = result.design.response
    replicated = az.from_dict(posterior_predictive={response: y_rep[None]},
                              dims={response: [OBS_DIM]},
                              coords={OBS_DIM: idata.observed_data[OBS_DIM].values})
    return az.InferenceData(posterior_predictive=replicated.posterior_predictive,
                            observed_data=idata.observed_data), n


def plot_ranef(result, term: str | None = None, hdi_prob: float = 0.94) -> Figure:
    """Caterpillar plot of the random effects: one panel per random-effect column.

    In each panel the levels are sorted by their posterior mean; points are means, lines
    highest-density intervals, and the dashed line marks zero (the population level).

    Parameters
    ----------
    result : FitResult
    term : str, optional
        Only this grouping term (its text, e.g. ``"Days | Subject"``, or its factor); every
        term by default.
    hdi_prob : float
        Probability mass of the intervals.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not result.design.terms:
        raise LmmhmcError("the model has no random effects to plot")
    table = result.ranef(hdi_prob=hdi_prob)
    if term is not None:
        table = table[table["term"] == result.design.terms[resolve_term(result.design, term)].text]
    columns = list(dict.fromkeys(table["column"]))
    n_levels = table.groupby("column", sort=False).size().max()
    fig, axes = plt.subplots(1, len(columns), squeeze=False,
                             figsize=(3.5 * len(columns), max(3.0, 0.2 * n_levels + 1.2)))
    for ax, column in zip(axes[0], columns, strict=True):
        part = table[table["column"] == column].sort_values("mean")
        pos = np.arange(len(part))
        ax.hlines(pos, part["hdi_lower"], part["hdi_upper"], color="C0", lw=1.5)
        ax.plot(part["mean"], pos, "o", color="C0", ms=4)
        ax.axvline(0.0, color="0.5", ls="--", lw=1)
        ax.set_title(column)
        ax.set_xlabel(f"effect ({hdi_prob:.0%} HDI)")
        if len(part) <= MAX_LEVEL_LABELS:
            ax.set_yticks(pos, part["level"])
        else:
            ax.set_yticks([])
        ax.set_ylim(-1, len(part))
    axes[0, 0].set_ylabel(", ".join(dict.fromkeys(table["group"])))
    fig.tight_layout()
    return fig


def plot_conditional(result, var: str, hdi_prob: float = 0.94, n_points: int = 100) -> Figure:
    """Conditional effect of one predictor on the expected response, as brms's
    ``conditional_effects``.

    The posterior mean and HDI of the population-level linear predictor (random effects
    excluded) on the scale of the formula's left-hand side, with `var` varied over its range
    (numeric) or levels (categorical) and every other predictor held at its reference value
    (see `conditional_grid`). The formula's offsets are evaluated on the grid; an
    ``offset=`` argument of the model is held at its training mean.

    Parameters
    ----------
    result : FitResult
    var : str
        A column of the training data used by the model.
    hdi_prob : float
        Probability mass of the credible band.
    n_points : int
        Grid size for a numeric `var`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    grid, categorical = conditional_grid(result, var, n_points)
    argument = result.design.offset_argument
    offset = None if argument is None else np.full(len(grid), argument.mean())
    mu = predict(result, grid, include_random=False, offset=offset)
    mean = mu.mean(axis=0)
    band = az.hdi(mu[None], hdi_prob=hdi_prob)  # (rows, 2)
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    if categorical:
        pos = np.arange(len(grid))
        ax.errorbar(pos, mean, yerr=[mean - band[:, 0], band[:, 1] - mean], fmt="o",
                    color="C0", capsize=4)
        ax.set_xticks(pos, [str(v) for v in grid[var]])
        ax.set_xlim(-0.5, len(grid) - 0.5)
    else:
        ax.plot(grid[var], mean, color="C0")
        ax.fill_between(grid[var], band[:, 0], band[:, 1], color="C0", alpha=0.3, lw=0)
    ax.set_xlabel(var)
    ax.set_ylabel(result.design.response)
    ax.set_title(f"Conditional effect of {var} ({hdi_prob:.0%} HDI)", fontsize="medium")
    fig.tight_layout()
    return fig


def conditional_grid(result, var: str, n_points: int = 100) -> tuple[pd.DataFrame, bool]:
    """New data for a conditional-effects plot of `var`.

    Every column of the training data is held at its reference value: the mean for a numeric
    column, the first level for a categorical one (pandas categories order, else sorted: the
    treatment-contrast baseline). `var` runs over ``n_points`` evenly spaced values between
    its minimum and maximum, or over all its levels. A column is categorical if it is not
    numeric, is boolean, or enters a categorical factor of the fixed part (``C(g)``).

    Parameters
    ----------
    result : FitResult
    var : str
        Training-data column to vary.
    n_points : int
        Grid size for a numeric `var`.

    Returns
    -------
    grid : pandas.DataFrame
    categorical : bool
        Whether `var` is categorical.

    Raises
    ------
    DataError
        If `var` is not a column of the training data.
    """
    data = result.model.data
    if var not in data.columns:
        names = [str(c) for c in data.columns]
        raise DataError(f"column '{var}' not found in the training data{did_you_mean(var, names)}")
    categorical = _categorical_columns(result.design.fixed_spec, data)
    size = n_points if var not in categorical else len(_levels(data[var]))
    grid = {}
    for name in data.columns:
        column = data[name]
        if name == var:
            values = (_levels(column) if name in categorical else
                      np.linspace(column.min(), column.max(), n_points))
        else:
            reference = _levels(column)[0] if name in categorical else column.mean()
            values = [reference] * size
        if isinstance(column.dtype, pd.CategoricalDtype):
            values = pd.Categorical(values, categories=column.cat.categories)
        grid[name] = values
    return pd.DataFrame(grid), var in categorical


@contextmanager
def _quiet_arviz() -> Iterator[None]:
    """Silence the deprecation warnings ArviZ 0.23's plots trigger in matplotlib >= 3.11."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
        yield


def _categorical_columns(spec, data: pd.DataFrame) -> set[str]:
    """Columns of `data` the fixed part treats as categorical."""
    categorical = {name for name in data.columns
                   if not pd.api.types.is_numeric_dtype(data[name])
                   or pd.api.types.is_bool_dtype(data[name])}
    for factor, variables in spec.factor_variables.items():
        kind = spec.encoder_state.get(str(factor), (None,))[0]
        if kind == Factor.Kind.CATEGORICAL:
            categorical |= {v for v in variables if v in data.columns}
    return categorical


def _levels(column: pd.Series) -> list:
    """Levels of a categorical column: categories in order, else sorted distinct values."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return list(column.cat.categories)
    values = column.dropna().unique()
    try:
        return sorted(values)
    except TypeError:  # mixed types: sort by label
        return sorted(values, key=str)
