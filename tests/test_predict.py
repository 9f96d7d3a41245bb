"""Posterior prediction: linear predictor, new levels, new observations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lmmhmc
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
        sleepstudy_fit.predict(kind="linear")
    with pytest.raises(ValueError, match="new_levels must be one of"):
        sleepstudy_fit.predict(new_levels="gaussian")
    with pytest.raises(DataError, match="column 'Days' not found in new data"):
        sleepstudy_fit.predict(pd.DataFrame({"Subject": ["308"]}))
    with pytest.raises(DataError, match="column 'Days' of the new data must be numeric, as in "
                                        "training; it has 'three'"):
        sleepstudy_fit.predict(pd.DataFrame({"Subject": ["308"], "Days": ["three"]}))
    with pytest.raises(LmmhmcError, match="kind must be one of"):  # the package's own error
        sleepstudy_fit.predict(kind="linear")
    np.testing.assert_array_equal(sleepstudy_fit.predict(kind="link", draws=5),
                                  sleepstudy_fit.predict(kind="mean", draws=5))


def _standard_normal_pvalue(z: np.ndarray) -> float:
    """Kolmogorov-Smirnov p-value of ``z`` (all entries) against N(0, 1)."""
    return stats.kstest(np.ravel(z), "norm").pvalue


def test_sampled_new_levels_of_crossed_factors(crossed_fit) -> None:
    """Each crossed term draws its own new levels, from its own sd, once per new level."""
    u_subj, u_item = _flat(crossed_fit, "1|subj"), _flat(crossed_fit, "1|item")
    v_subj = _flat(crossed_fit, "1|subj_sigma") ** 2
    v_item = _flat(crossed_fit, "1|item_sigma") ** 2
    n_a, n_b = 1500, 300
    rng = np.random.default_rng(11)
    a = pd.DataFrame({"subj": [f"a_s{i}" for i in range(n_a)],  # new subject, new item
                      "item": [f"a_i{i}" for i in range(n_a)]})
    b = pd.DataFrame({"subj": np.repeat([f"b_s{i}" for i in range(n_b)], 2),  # new subject twice,
                      "item": np.tile(["i03", "i07"], n_b)})                   # with seen items
    c = pd.DataFrame({"subj": np.repeat([f"c_s{i}" for i in range(n_b)], 2),  # new subject twice,
                      "item": [f"c_i{i}" for i in range(2 * n_b)]})          # with new items
    d = pd.DataFrame({"subj": ["s01", "s02"], "item": ["d_new", "d_new"]})  # a new item, twice
    new = pd.concat([a, b, c, d], ignore_index=True)
    new = new.assign(x=rng.normal(2.0, 1.0, len(new)), cond=np.where(np.arange(len(new)) % 2,
                                                                      "a", "b"))
    effect = (crossed_fit.predict(new, new_levels="sample", seed=12)
              - crossed_fit.predict(new, include_random=False))
    ea, eb = effect[:, :n_a], effect[:, n_a:n_a + 2 * n_b]
    ec, ed = effect[:, n_a + 2 * n_b:-2], effect[:, -2:]

    # (a) new subject and new item: N(0, s_subj^2 + s_item^2) of the draw. Per draw s,
    # q_s = sum_rows e^2 / v_s is chi2 with 1500 degrees of freedom, independently over the
    # 400 draws: a KS test of the 400 q_s (a p-value below 1e-4 has probability 1e-4 if the
    # effects are right) and every q_s / 1500 within 5 sds sqrt(2 / 1500) = 0.037 of 1 (the
    # largest of 400 normal deviates exceeds 5 sds with probability 2e-4). Leaving out s_item^2
    # (ratio 0.7 here) or using another draw's sds fails both.
    v = v_subj + v_item
    q = np.sum(ea**2, axis=1) / v
    assert stats.kstest(q, stats.chi2(n_a).cdf).pvalue > 1e-4
    assert np.max(np.abs(q / n_a - 1.0)) < 5 * np.sqrt(2 / n_a)
    assert _standard_normal_pvalue(ea / np.sqrt(v)[:, None]) > 1e-4  # 600,000 values

    # (b) a new subject with a seen item: the item's recovered effect plus the subject's new
    # effect, which its two rows share (their difference is exactly that of the seen items)
    np.testing.assert_allclose(eb[:, 0::2] - eb[:, 1::2],
                               np.repeat((u_item[:, 3] - u_item[:, 7])[:, None], n_b, axis=1),
                               rtol=0, atol=1e-9)
    z_subj = (eb[:, 0::2] - u_item[:, [3]]) / np.sqrt(v_subj)[:, None]
    # 120,000 standard normals: the sd of their variance is sqrt(2 / 120000) = 0.004
    assert _standard_normal_pvalue(z_subj) > 1e-4
    assert np.mean(z_subj**2) == pytest.approx(1.0, abs=0.02)

    # (c) one new subject with two new items: e1 - e2 = b1 - b2 ~ N(0, 2 s_item^2) and
    # e1 + e2 = 2 a + b1 + b2 ~ N(0, 4 s_subj^2 + 2 s_item^2). Two unshared subject draws would
    # give e1 + e2 the variance 2 s_subj^2 + 2 s_item^2 (standardized: about 0.6).
    diff = (ec[:, 0::2] - ec[:, 1::2]) / np.sqrt(2 * v_item)[:, None]
    total = (ec[:, 0::2] + ec[:, 1::2]) / np.sqrt(4 * v_subj + 2 * v_item)[:, None]
    for z in (diff, total):  # 120,000 values each, as in (b)
        assert _standard_normal_pvalue(z) > 1e-4
        assert np.mean(z**2) == pytest.approx(1.0, abs=0.02)

    # (d) a new item shared by two seen subjects: its draw is shared
    np.testing.assert_allclose(ed[:, 0] - ed[:, 1], u_subj[:, 1] - u_subj[:, 2], rtol=0,
                               atol=1e-9)


@pytest.fixture(scope="module")
def cake_fit(fit_settings):
    """``angle ~ recipe + temp + (1 | recipe:replicate)`` on lme4's cake data without 9 of its
    45 recipe:replicate combinations (each recipe and each replicate is still seen)."""
    data = lmmhmc.datasets.load("cake")
    held = set(_CAKE_HELD_OUT)
    keep = [f"{r}:{p}" not in held for r, p in zip(data["recipe"], data["replicate"], strict=True)]
    return lmmhmc.fit("angle ~ recipe + temp + (1 | recipe:replicate)", data[keep], seed=4,
                      **fit_settings)


_CAKE_HELD_OUT = ["A:13", "A:14", "A:15", "B:1", "B:2", "B:3", "C:7", "C:8", "C:9"]


def test_sampled_new_levels_of_an_interaction_factor(cake_fit) -> None:
    term = cake_fit.design.terms[0]
    assert term.factor == "recipe:replicate" and term.n_levels == 36
    assert not set(_CAKE_HELD_OUT) & set(term.levels)
    seen = ["A:1", "B:15", "C:10"]
    labels = _CAKE_HELD_OUT + seen
    # every combination twice, at two temperatures; replicate as a plain integer column
    new = pd.DataFrame({"recipe": [s.split(":")[0] for s in labels for _ in (0, 1)],
                        "replicate": [int(s.split(":")[1]) for s in labels for _ in (0, 1)],
                        "temp": [175.0, 225.0] * len(labels)})
    effect = (cake_fit.predict(new, new_levels="sample", seed=8)
              - cake_fit.predict(new, include_random=False))
    # an intercept-only term: the two rows of a combination have the same effect
    np.testing.assert_allclose(effect[:, 0::2], effect[:, 1::2], rtol=0, atol=1e-9)
    effect = effect[:, 0::2]
    u = _flat(cake_fit, "1|recipe:replicate")
    codes = [int(np.flatnonzero(term.levels == s)[0]) for s in seen]
    np.testing.assert_allclose(effect[:, len(_CAKE_HELD_OUT):], u[:, codes], rtol=0, atol=1e-9)
    # a held-out combination of a seen recipe and a seen replicate is a new level: a fresh
    # draw from N(0, s^2) of the posterior draw, independent between combinations
    z = effect[:, :len(_CAKE_HELD_OUT)] / _flat(cake_fit, "1|recipe:replicate_sigma")[:, None]
    # 9 x 400 = 3600 standard normals: KS at 1e-4; the sd of their variance is 0.024
    assert _standard_normal_pvalue(z) > 1e-4
    assert np.mean(z**2) == pytest.approx(1.0, abs=0.12)
    # correlations between combinations over 400 draws: sd 1 / sqrt(400) = 0.05 each; the
    # largest of 36 pairs stays below 5 sds (a shared draw would give 1)
    corr = np.corrcoef(z.T)
    assert np.max(np.abs(corr[np.triu_indices(len(_CAKE_HELD_OUT), 1)])) < 0.25
    np.testing.assert_array_equal(  # "zero": the population level
        cake_fit.predict(new.iloc[:2], new_levels="zero"),
        cake_fit.predict(new.iloc[:2], include_random=False))
    with pytest.raises(LmmhmcError, match=r"9 levels of 'recipe:replicate' not seen in training: "
                                          r"'A:13', 'A:14', 'A:15', 'B:1', 'B:2' and 4 more"):
        cake_fit.predict(new, new_levels="error")


def test_sampled_new_levels_have_the_draws_correlation(sleepstudy_fit) -> None:
    """u0 and u1 of new subjects have, in every posterior draw, that draw's sds and correlation.

    Each of 5000 new subjects is predicted at Days 0 and 1: u0 = its effect at Days 0,
    u1 = the difference.
    """
    n_new = 5000
    new = pd.DataFrame({"Days": np.tile([0.0, 1.0], n_new),
                        "Subject": np.repeat([f"new{i}" for i in range(n_new)], 2)})
    effect = (sleepstudy_fit.predict(new, new_levels="sample", seed=21)
              - sleepstudy_fit.predict(new, include_random=False)).reshape(400, n_new, 2)
    u0, u1 = effect[..., 0], effect[..., 1] - effect[..., 0]
    s0, s1 = _flat(sleepstudy_fit, "1|Subject_sigma"), _flat(sleepstudy_fit, "Days|Subject_sigma")
    rho = _flat(sleepstudy_fit, "Subject_corr")[:, 0]
    r = np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(u0, u1, strict=True)])

    # The draws with the most negative and the most positive correlation: the sampling error of
    # a correlation of n pairs is (1 - rho^2) / sqrt(n); the tolerance is 5 of those (0.07 or
    # less), far below the 2 |rho| > 0.6 of a sign error. The sds: relative error
    # 1 / sqrt(2 n) = 1%, tolerance 5%; a transposed Cholesky factor would give u0 the sd
    # s0 sqrt(1 + rho^2).
    for s in (int(np.argmin(rho)), int(np.argmax(rho))):
        assert abs(rho[s]) > 0.3
        assert r[s] == pytest.approx(rho[s], abs=5 * (1 - rho[s] ** 2) / np.sqrt(n_new))
        assert np.sqrt(np.mean(u0[s] ** 2)) == pytest.approx(s0[s], rel=5 / np.sqrt(2 * n_new))
        assert np.sqrt(np.mean(u1[s] ** 2)) == pytest.approx(s1[s], rel=5 / np.sqrt(2 * n_new))

    # Every draw: Fisher's z, (atanh r - atanh rho) sqrt(n - 3), is N(0, 1) (independently
    # over the 400 draws); so is the standardized u1 after regressing out u0 (the conditional
    # law N(rho s1 / s0 u0, s1^2 (1 - rho^2))). KS at 1e-4 and the largest of 400 deviates
    # below 5.
    fisher = (np.arctanh(r) - np.arctanh(rho)) * np.sqrt(n_new - 3)
    assert stats.kstest(fisher, "norm").pvalue > 1e-4
    assert np.max(np.abs(fisher)) < 5
    cond = ((u1 - (rho * s1 / s0)[:, None] * u0)
            / (s1 * np.sqrt(1 - rho**2))[:, None])
    assert _standard_normal_pvalue(cond) > 1e-4  # 2,000,000 values
    assert _standard_normal_pvalue(u0 / s0[:, None]) > 1e-4
    # The same with the 7 evenly spaced draws of predict(draws=7)
    take = draw_indices(400, 7)
    few = (sleepstudy_fit.predict(new.iloc[:4000], new_levels="sample", seed=21, draws=7)
           - sleepstudy_fit.predict(new.iloc[:4000], include_random=False, draws=7))
    few = few.reshape(7, 2000, 2)
    r7 = np.array([np.corrcoef(f[:, 0], f[:, 1] - f[:, 0])[0, 1] for f in few])
    fisher7 = (np.arctanh(r7) - np.arctanh(rho[take])) * np.sqrt(2000 - 3)
    assert np.max(np.abs(fisher7)) < 4.5  # 7 N(0, 1) deviates: P(max > 4.5) = 5e-5
