"""The anchored softplus parametrization of the standard deviations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.distributions.transforms import biject_to
from test_fit import SLEEP, assert_posteriors_agree

import lmmhmc
from lmmhmc.datasets import load
from lmmhmc.reparam import (
    ANCHOR_FLOOR,
    ANCHOR_SCALE,
    Anchored,
    AnchoredPositive,
    anchor_priors,
    starts,
)


def test_transform_is_scaled_softplus_with_exact_jacobian():
    anchor = 0.7
    t = biject_to(AnchoredPositive(anchor))
    u = jnp.linspace(-30.0, 30.0, 121)
    s = t(u)
    np.testing.assert_allclose(s, anchor * np.log1p(np.exp(np.asarray(u))), rtol=1e-12)
    assert np.all(np.asarray(s) > 0)
    np.testing.assert_allclose(t.inv(s), u, rtol=1e-9, atol=1e-9)
    derivative = jax.vmap(jax.grad(lambda x: t(x)))(u)
    np.testing.assert_allclose(t.log_abs_det_jacobian(u, s), np.log(derivative), rtol=1e-9)


def test_anchored_prior_keeps_the_density_and_draws():
    base = dist.HalfNormal(2.0)
    prior = Anchored(base, 0.3)
    x = jnp.array([0.01, 0.5, 3.0])
    np.testing.assert_array_equal(prior.log_prob(x), base.log_prob(x))
    key = jax.random.key(0)
    np.testing.assert_array_equal(prior.sample(key, (5,)), base.sample(key, (5,)))
    leaves, tree = jax.tree.flatten(prior)  # a pytree: passed into the compiled sampler
    again = jax.tree.unflatten(tree, leaves)
    assert float(again.anchor) == 0.3 and isinstance(again.support, AnchoredPositive)


def test_anchors_follow_the_ml_estimates_with_a_floor():
    priors = {"sigma": dist.HalfNormal(1.0), "a_sigma": dist.HalfNormal(1.0),
              "b_sigma": dist.HalfNormal(1.0), "Intercept": dist.Normal(0.0, 1.0)}
    out = anchor_priors(priors, {"a_sigma": 0.4, "b_sigma": 0.0}, sigma=2.0)
    assert out["Intercept"] is priors["Intercept"]
    assert float(out["sigma"].anchor) == ANCHOR_SCALE * 2.0
    assert float(out["a_sigma"].anchor) == max(ANCHOR_SCALE * 0.4, ANCHOR_FLOOR * 2.0)
    assert float(out["b_sigma"].anchor) == ANCHOR_FLOOR * 2.0
    start = starts({"a_sigma": 0.4, "b_sigma": 0.0}, sigma=2.0)  # the ML values, off 0
    assert start == {"sigma": 2.0, "a_sigma": 0.4, "b_sigma": ANCHOR_FLOOR * 2.0}


@pytest.mark.slow
def test_posterior_does_not_depend_on_the_parametrization():
    """init="ml" samples the sds on the anchored scale, init="prior" on NumPyro's log scale:
    the same posterior, up to Monte-Carlo error (every scalar, random effects included).

    Slow (two full fits, one compiling its own program): the default suite checks both scales
    exactly instead, the model's density on the log and the anchored scale against a dense
    reference (``test_numpyro_model.py``) and the transform and its Jacobian here."""
    data = load("sleepstudy")
    anchored = lmmhmc.fit(SLEEP, data, progress=False, seed=3)
    logscale = lmmhmc.fit(SLEEP, data, progress=False, seed=4, init="prior")
    assert anchored.n_divergences == 0 and logscale.n_divergences == 0
    assert_posteriors_agree(anchored, logscale)
