"""Posterior prediction: linear predictor, new levels, new observations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmmhmc.errors import DataError, LmmhmcError
from lmmhmc.predict import draw_indices


def _flat(result, name: str) -> np.ndarray:
    """Draws of a posterior variable, chains stacked: (draws, *shape)."""
    values = result.idata.posterior[name].values
    return values.reshape((-1,) + values.shape[2:])


def _fixed_part(result, X: np.ndarray) -> np.ndarray:
    beta = np.column_stack([_flat(result, n) for n in result.design.x_names])
    return beta @ X.T


def test_mean_on_training_data_is_x_beta_plus_z_u(sleepstudy_fit) -> None:
    design = sleepstudy_fit.design
    term = design.terms[0]
    u0, u1 = _flat(sleepstudy_fit, "1|Subject"), _flat(sleepstudy_fit, "Days|Subject")
    beta0, beta1 = _flat(sleepstudy_fit, "Intercept"), _flat(sleepstudy_fit, "Days")
    days = sleepstudy_fit.model.data["Days"].to_numpy()
    expected = np.empty((400, 180))
    for i in range(180):  # observation by observation, from the definitions
        j = term.index[i]
        expected[:, i] = beta0 + beta1 * days[i] + u0[:, j] + u1[:, j] * days[i]
    mean = sleepstudy_fit.predict()
    assert mean.shape == (400, 180)
    np.testing.assert_allclose(mean, expected, rtol=1e-12)
    # the same rows passed as new data go through design.encode: same values
    np.testing.assert_allclose(sleepstudy_fit.predict(sleepstudy_fit.model.data), mean,
                               rtol=1e-12)
    fixed = sleepstudy_fit.predict(include_random=False)
    np.testing.assert_allclose(fixed, _fixed_part(sleepstudy_fit, design.X), rtol=1e-12)


def test_transforms_and_encodings_are_those_of_training(crossed_fit) -> None:
    data = crossed_fit.model.data
    full = crossed_fit.predict(data)
    rows = [7, 123, 299]  # center(x) must use the training mean, not the mean of 3 rows
    np.testing.assert_allclose(crossed_fit.predict(data.iloc[rows]), full[:, rows], rtol=1e-12)
    with pytest.raises(DataError, match="categorical level not seen"):
        crossed_fit.predict(data.iloc[:2].assign(cond=["a", "c"]))


def test_zero_new_levels_give_the_fixed_part(crossed_fit) -> None:
    new = pd.DataFrame({"x": [1.0, 3.0], "cond": ["a", "b"], "subj": ["new", "s03"],
                        "item": ["i04", "other"]})
    X = crossed_fit.design.encode(new).X
    fixed = _fixed_part(crossed_fit, X)
    mean = crossed_fit.predict(new, new_levels="zero")
    # row 0: unseen subject, seen item; row 1: seen subject, unseen item
    np.testing.assert_allclose(mean[:, 0], fixed[:, 0] + _flat(crossed_fit, "1|item")[:, 4],
                               rtol=1e-12)
    np.testing.assert_allclose(mean[:, 1], fixed[:, 1] + _flat(crossed_fit, "1|subj")[:, 3],
                               rtol=1e-12)
    both_new = new.assign(subj=["x1", "x2"], item=["y1", "y2"])
    np.testing.assert_array_equal(crossed_fit.predict(both_new, new_levels="zero"), fixed)


def test_missing_grouping_value_means_the_population_level(crossed_fit) -> None:
    new = pd.DataFrame({"x": [1.0], "cond": ["a"], "subj": [None], "item": ["i00"]})
    fixed = _fixed_part(crossed_fit, crossed_fit.design.encode(new).X)[:, 0]
    for mode in ("sample", "zero", "error"):
        mean = crossed_fit.predict(new, new_levels=mode)[:, 0]
        np.testing.assert_allclose(mean, fixed + _flat(crossed_fit, "1|item")[:, 0], rtol=1e-12)


def test_error_names_the_new_levels(crossed_fit, sleepstudy_fit) -> None:
    new = pd.DataFrame({"x": [1.0, 1.0, 2.0], "cond": ["a", "a", "b"],
                        "subj": ["s00", "s99", "zz"], "item": ["i00", "i01", "i02"]})
    with pytest.raises(LmmhmcError, match=r"2 levels of 'subj' not seen in training: 's99', 'zz'"):
        crossed_fit.predict(new, new_levels="error")
    # population-level predictions need no group levels
    assert crossed_fit.predict(new, new_levels="error", include_random=False).shape == (400, 3)
    with pytest.raises(LmmhmcError, match="a level of 'Subject' not seen in training: '1'"):
        sleepstudy_fit.predict(pd.DataFrame({"Days": [1], "Subject": [1]}), new_levels="error")


def test_sampled_new_levels_follow_the_fitted_covariance(sleepstudy_fit) -> None:
    # 100 new subjects, each at Days 0 and 6: the effect u0 + Days * u1 of a new subject has
    # variance s0^2 + 2 Days rho s0 s1 + Days^2 s1^2 in each draw
    n_new = 100
    days = np.tile([0.0, 6.0], n_new)
    new = pd.DataFrame({"Days": days, "Subject": np.repeat([f"new{i}" for i in range(n_new)], 2)})
    effect = (sleepstudy_fit.predict(new, new_levels="sample", seed=3)
              - sleepstudy_fit.predict(new, include_random=False)).reshape(400, n_new, 2)
    s0, s1 = _flat(sleepstudy_fit, "1|Subject_sigma"), _flat(sleepstudy_fit, "Days|Subject_sigma")
    rho = _flat(sleepstudy_fit, "Subject_corr")[:, 0]
    for k, d in enumerate([0.0, 6.0]):
        expected = np.mean(s0**2 + 2 * d * rho * s0 * s1 + d**2 * s1**2)
        # the estimate minus `expected` averages v_s (chi2_100 / 100 - 1) over 400 draws s
        # (v_s: the variance of draw s): relative standard error
        # sqrt(2 E[v^2] / (100 * 400)) / E[v], about 1% here; the tolerance is 6%
        assert np.mean(effect[:, :, k] ** 2) == pytest.approx(expected, rel=0.06)
    # the two rows of one new subject share its intercept and slope
    u1 = (effect[:, :, 1] - effect[:, :, 0]) / 6.0
    assert np.mean(u1**2) == pytest.approx(np.mean(s1**2), rel=0.06)
    assert np.mean(effect.mean(axis=(0, 1))) == pytest.approx(0.0, abs=1.0)
    # reproducible by seed
    np.testing.assert_array_equal(sleepstudy_fit.predict(new.iloc[:4], seed=3),
                                  sleepstudy_fit.predict(new.iloc[:4], seed=3))
    assert not np.array_equal(sleepstudy_fit.predict(new.iloc[:4], seed=3),
                              sleepstudy_fit.predict(new.iloc[:4], seed=4))


def test_response_adds_residual_noise(sleepstudy_fit) -> None:
    mean = sleepstudy_fit.predict()
    sigma = _flat(sleepstudy_fit, "sigma")[:, None]
    z = (sleepstudy_fit.predict(kind="response", seed=5) - mean) / sigma
    # 72,000 standard normals: sd of the mean 0.004, relative sd of the sd 0.3%
    assert z.mean() == pytest.approx(0.0, abs=0.02)
    assert z.std() == pytest.approx(1.0, abs=0.015)
    # weights w scale the noise sd by 1 / sqrt(w)
    w = np.where(np.arange(180) % 2 == 0, 4.0, 1.0)
    zw = (sleepstudy_fit.predict(kind="response", seed=5, weights=w) - mean) / sigma
    assert zw[:, ::2].std() == pytest.approx(0.5, abs=0.01)
    assert zw[:, 1::2].std() == pytest.approx(1.0, abs=0.02)
    by_name = sleepstudy_fit.predict(sleepstudy_fit.model.data.assign(w=w), kind="response",
                                     seed=5, weights="w")
    np.testing.assert_array_equal(by_name, zw * sigma + mean)
    with pytest.raises(LmmhmcError, match="weights must be 180 finite positive"):
        sleepstudy_fit.predict(kind="response", weights=-w)
    with pytest.raises(DataError, match="weights column 'v' not found in new data"):
        sleepstudy_fit.predict(kind="response", weights="v")


def test_response_for_new_levels_keeps_the_sampled_effects(sleepstudy_fit) -> None:
    new = pd.DataFrame({"Days": [2.0], "Subject": ["newbie"]})
    mean = sleepstudy_fit.predict(new, seed=7)
    response = sleepstudy_fit.predict(new, kind="response", seed=7)
    noise = (response - mean)[:, 0] / _flat(sleepstudy_fit, "sigma")
    assert abs(noise.mean()) < 0.25 and noise.std() == pytest.approx(1.0, abs=0.15)


def test_subset_of_draws(sleepstudy_fit) -> None:
    full = sleepstudy_fit.predict()
    take = draw_indices(400, 7)
    assert take[0] == 0 and take[-1] == 399 and np.all(np.diff(take) > 0)
    np.testing.assert_array_equal(sleepstudy_fit.predict(draws=7), full[take])
    with pytest.raises(ValueError, match="draws must be an integer from 1 to 400"):
        sleepstudy_fit.predict(draws=401)


def test_bad_arguments(sleepstudy_fit) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        sleepstudy_fit.predict(kind="link")
    with pytest.raises(ValueError, match="new_levels must be one of"):
        sleepstudy_fit.predict(new_levels="gaussian")
    with pytest.raises(DataError, match="column 'Days' not found in new data"):
        sleepstudy_fit.predict(pd.DataFrame({"Subject": ["308"]}))
