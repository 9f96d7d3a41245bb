"""Default priors (data-scaled), their printout, and overrides by name."""

from __future__ import annotations

import re

import numpyro.distributions as dist
import pytest

import lmmhmc
from lmmhmc.datasets import load
from lmmhmc.errors import LmmhmcError

SLEEP = "Reaction ~ Days + (Days | Subject)"


def test_priors_defaults_print_and_override():
    model = lmmhmc.Model(SLEEP, load("sleepstudy"))
    text = repr(model.priors)
    assert re.search(r"^sigma +~ HalfStudentT\(3, ", text, re.M)
    assert re.search(r"^Subject_corr +~ LKJCholesky\(2, 2\)$", text, re.M)
    sd_y = model.design.y.std()
    expected = 2.5 * sd_y / model.design.X[:, 1].std()
    assert float(model.priors["Days"].scale) == pytest.approx(expected)
    with pytest.raises(LmmhmcError, match="unknown parameter 'sigmaa'"):
        model.fit(priors={"sigmaa": dist.Exponential(1.0)})
    with pytest.raises(LmmhmcError, match=r"LKJCholesky\(2, eta\)"):
        model.fit(priors={"Subject_corr": dist.LKJCholesky(3, 1.0)})
    with pytest.raises(LmmhmcError, match="positive support"):
        model.fit(priors={"sigma": dist.Normal(0.0, 1.0)})


def test_prior_override_is_used():
    """A very tight prior on the Days slope pulls its posterior to the prior mean."""
    res = lmmhmc.fit(SLEEP, load("sleepstudy"), chains=1, draws=300, warmup=300, progress=False,
                     priors={"Days": dist.Normal(0.0, 0.01)})
    assert abs(float(res.idata.posterior["Days"].mean())) < 0.05
