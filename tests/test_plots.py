"""Plots render with the Agg backend and show the right numbers."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lmmhmc.errors import DataError  # noqa: E402
from lmmhmc.inference_data import OBS_DIM  # noqa: E402
from lmmhmc.plots import (  # noqa: E402
    conditional_grid,
    posterior_predictive_data,
    split_by_scale,
)
from lmmhmc.predict import draw_indices  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _save(fig: Figure, path: Path) -> None:
    assert isinstance(fig, Figure)
    fig.savefig(path, dpi=60)
    assert path.stat().st_size > 1000


def test_trace_and_rank_plots(sleepstudy_fit, tmp_path: Path) -> None:
    fig = sleepstudy_fit.plot_trace()
    # one row per parameter (fixed effects, sigma, 2 sds, 1 correlation), density + trace
    assert len(fig.axes) == 2 * 6
    assert fig.axes[0].get_title() == "Intercept"
    _save(fig, tmp_path / "trace.png")
    rank = sleepstudy_fit.plot_trace(var_names=["Days", "sigma"], kind="rank_bars")
    assert len(rank.axes) == 4
    _save(rank, tmp_path / "rank.png")


def test_forest_plot(sleepstudy_fit, tmp_path: Path) -> None:
    fig = sleepstudy_fit.plot_forest()
    panels = {ax.get_title(): [t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes}
    # the intercept (~250) and the slope (~10) differ by more than SCALE_RATIO: two panels
    assert panels == {
        "Fixed effects, 1 of 2 (94% HDI)": ["Intercept"],
        "Fixed effects, 2 of 2 (94% HDI)": ["Days"],
        "Standard deviations (94% HDI)": ["Days|Subject_sigma", "1|Subject_sigma", "sigma"],
        "Correlations (94% HDI)": ["Subject_corr"],
    }
    post = sleepstudy_fit.idata.posterior
    for ax, name in zip(fig.axes[:2], ["Intercept", "Days"], strict=True):
        lower, upper = az.hdi(post[name].values.ravel(), hdi_prob=0.94)
        left, right = ax.get_xlim()  # each axis spans its own interval, not the other's
        assert left <= lower < upper <= right and right - left < 1.5 * (upper - lower)
    _save(fig, tmp_path / "forest.png")
    one = sleepstudy_fit.plot_forest(var_names=["Days", "Days|Subject_sigma"], hdi_prob=0.8)
    assert [ax.get_title() for ax in one.axes] == ["80% HDI"]


def test_split_by_scale(sleepstudy_fit, crossed_fit) -> None:
    def split(result, names):
        return split_by_scale(result, names, hdi_prob=0.94)

    assert split(sleepstudy_fit, ["Intercept", "Days"]) == [["Intercept"], ["Days"]]
    assert split(sleepstudy_fit, ["sigma", "1|Subject_sigma", "Days|Subject_sigma"]) == [
        ["sigma", "1|Subject_sigma", "Days|Subject_sigma"]]
    assert split(sleepstudy_fit, []) == []
    # similar scales stay together, in the given order
    assert split(crossed_fit, ["Intercept", "cond[T.b]", "center(x)"]) == [
        ["Intercept", "cond[T.b]", "center(x)"]]


def test_posterior_predictive_check(sleepstudy_fit, tmp_path: Path) -> None:
    fig = sleepstudy_fit.plot_ppc(num_pp_samples=20, seed=3)
    assert "posterior_predictive" not in sleepstudy_fit.idata.groups()  # not mutated
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert labels.count("Observed") == 1 and labels.count("Posterior predictive mean") == 1
    assert sum(label.startswith("_") for label in labels) == 20  # one curve per replicate
    # the observed curve is a density of the response over its range
    observed = ax.lines[labels.index("Observed")]
    x, density = observed.get_data()
    y = sleepstudy_fit.design.y
    assert x.min() == pytest.approx(y.min(), rel=0.02) and x.max() == pytest.approx(y.max(),
                                                                                    rel=0.02)
    assert np.trapezoid(density, x) == pytest.approx(1.0, abs=0.02)
    _save(fig, tmp_path / "ppc.png")

    idata, n = posterior_predictive_data(sleepstudy_fit, 20, seed=3)
    y_rep = idata.posterior_predictive["Reaction"].values
    assert n == 20 and y_rep.shape == (1, 20, 180)
    np.testing.assert_array_equal(idata.observed_data["Reaction"].values, y)
    # replicated data: the draw's linear predictor plus N(0, sigma^2) noise
    take = draw_indices(400, 20)
    post = sleepstudy_fit.idata.posterior
    mu = sleepstudy_fit.predict(draws=20)
    sigma = post["sigma"].values.ravel()[take]
    ratio = (y_rep[0] - mu).std(axis=1) / sigma
    assert abs(ratio.mean() - 1.0) < 0.06
    assert posterior_predictive_data(sleepstudy_fit, 10_000)[1] == 400
    assert len(sleepstudy_fit.plot_ppc(kind="cumulative", num_pp_samples=5).axes) == 1


def test_posterior_predictive_check_uses_stored_draws(sleepstudy_fit) -> None:
    idata = copy.deepcopy(sleepstudy_fit.idata)
    y = sleepstudy_fit.design.y
    idata.add_groups(posterior_predictive={"Reaction": np.broadcast_to(y, (2, 200, 180))},
                     dims={"Reaction": [OBS_DIM]})
    stored = dataclasses.replace(sleepstudy_fit, idata=idata)
    assert posterior_predictive_data(stored, 30)[0] is idata
    fig = stored.plot_ppc(num_pp_samples=30)
    lines = fig.axes[0].lines
    replicated = [line for line in lines if line.get_label().startswith("_")]
    observed = next(line for line in lines if line.get_label() == "Observed")
    assert len(replicated) == 30
    # every stored replicate is the observed data: the curves coincide with the observed one
    np.testing.assert_allclose(replicated[0].get_ydata(), observed.get_ydata(), rtol=1e-6)


def test_caterpillar_plot_sorts_levels_by_mean(sleepstudy_fit, tmp_path: Path) -> None:
    fig = sleepstudy_fit.plot_ranef()
    assert [ax.get_title() for ax in fig.axes] == ["1|Subject", "Days|Subject"]
    table = sleepstudy_fit.ranef()
    for ax, column in zip(fig.axes, ["1|Subject", "Days|Subject"], strict=True):
        means = ax.lines[0].get_xdata()
        assert np.all(np.diff(means) >= 0) and len(means) == 18
        part = table[table["column"] == column].sort_values("mean")
        assert [t.get_text() for t in ax.get_yticklabels()] == list(part["level"])
        np.testing.assert_allclose(means, part["mean"])
    _save(fig, tmp_path / "ranef.png")
    assert len(sleepstudy_fit.plot_ranef(term="Days | Subject", hdi_prob=0.5).axes) == 2


def test_caterpillar_plot_of_one_crossed_term(crossed_fit) -> None:
    fig = crossed_fit.plot_ranef(term="item")
    assert [ax.get_title() for ax in fig.axes] == ["1|item"]
    assert len(fig.axes[0].get_yticklabels()) == 15


def test_conditional_effect_of_a_numeric_predictor(sleepstudy_fit, tmp_path: Path) -> None:
    fig = sleepstudy_fit.plot_conditional("Days", n_points=11)
    ax = fig.axes[0]
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(x, np.linspace(0.0, 9.0, 11))
    post = sleepstudy_fit.idata.posterior
    expected = float(post["Intercept"].mean()) + float(post["Days"].mean()) * x
    np.testing.assert_allclose(y, expected, rtol=1e-10)  # random effects excluded
    assert ax.get_ylabel() == "Reaction" and ax.get_xlabel() == "Days"
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() < y.min() and band.max() > y.max()
    _save(fig, tmp_path / "conditional.png")


def test_conditional_effect_of_a_categorical_predictor(crossed_fit, tmp_path: Path) -> None:
    fig = crossed_fit.plot_conditional("cond")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    means = ax.lines[0].get_ydata()
    post = crossed_fit.idata.posterior
    # x at its mean, so center(x) = 0: the intercept, and intercept + effect of b
    intercept = post["Intercept"].values.ravel()
    np.testing.assert_allclose(
        means, [intercept.mean(), (intercept + post["cond[T.b]"].values.ravel()).mean()],
        rtol=1e-10,
    )
    _save(fig, tmp_path / "conditional.png")


def test_conditional_grid_reference_values(crossed_fit) -> None:
    data = crossed_fit.model.data
    grid, categorical = conditional_grid(crossed_fit, "x", n_points=5)
    assert not categorical and len(grid) == 5
    np.testing.assert_allclose(grid["x"], np.linspace(data["x"].min(), data["x"].max(), 5))
    assert (grid["cond"] == "a").all() and (grid["y"] == data["y"].mean()).all()
    grid, categorical = conditional_grid(crossed_fit, "cond")
    assert categorical and list(grid["cond"]) == ["a", "b"]
    assert (grid["x"] == data["x"].mean()).all()
    with pytest.raises(DataError, match="column 'cnd' not found in the training data; did you"):
        crossed_fit.plot_conditional("cnd")
