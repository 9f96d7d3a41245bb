"""Plots render with the Agg backend and show the right numbers."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lmmhmc.errors import DataError  # noqa: E402
from lmmhmc.plots import conditional_grid  # noqa: E402


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
    assert panels == {
        "Fixed effects (94% HDI)": ["Days", "Intercept"],
        "Standard deviations (94% HDI)": ["Days|Subject_sigma", "1|Subject_sigma", "sigma"],
        "Correlations (94% HDI)": ["Subject_corr"],
    }
    _save(fig, tmp_path / "forest.png")
    one = sleepstudy_fit.plot_forest(var_names=["Days", "Days|Subject_sigma"], hdi_prob=0.8)
    assert [ax.get_title() for ax in one.axes] == ["80% HDI"]


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
