"""Fits shared by the tests of results, prediction, plots, saving and the command line.

Each fit compiles its chain program (a few seconds); session-scoped fixtures build each fit
once per test run. The settings are those of :data:`FIT_SETTINGS`, which the command-line tests
also use, so that their fits reuse the compiled programs. JAX's persistent compilation cache
points to a temporary folder for the test session, so the tests neither read nor fill the
user's cache.

The property tests (Hypothesis) run under the profile ``"lmmhmc"``: derandomized, so every run
tries the same examples (no example database is read or written), with no deadline (the first
example of a test may compile) and printing the reproduction blob of a failure. A test's own
``@settings(max_examples=...)`` overrides the profile's 100 examples;
``--hypothesis-profile=default`` brings back Hypothesis's random exploration.
"""

from __future__ import annotations

import tempfile

import jax
import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

import lmmhmc

_JAX_CACHE = tempfile.TemporaryDirectory(prefix="lmmhmc-test-jax-cache-")
jax.config.update("jax_compilation_cache_dir", _JAX_CACHE.name)

#: Reproducible property tests: the same examples on every run (see the module docstring).
#: Loaded here, before the test modules are imported, so that their ``@settings`` inherit it.
settings.register_profile("lmmhmc", derandomize=True, max_examples=100, deadline=None,
                          print_blob=True)
settings.load_profile("lmmhmc")

#: Small, fast sampler settings (the command-line tests pass the same ones).
FIT_SETTINGS = {"chains": 2, "draws": 200, "warmup": 200, "progress": False}
SLEEPSTUDY_FORMULA = "Reaction ~ Days + (Days | Subject)"
CROSSED_FORMULA = "y ~ cond + center(x) + (1 | subj) + (1 | item)"


def simulate_crossed(n_subjects: int = 20, n_items: int = 15, seed: int = 1) -> pd.DataFrame:
    """Every subject sees every item once: crossed random intercepts, a two-level condition."""
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subjects), n_items)
    item = np.tile(np.arange(n_items), n_subjects)
    cond = np.where(rng.random(subj.size) < 0.5, "a", "b")
    x = rng.normal(2.0, 1.0, subj.size)
    y = (1.0 + 0.5 * (cond == "b") + 0.3 * x
         + rng.normal(0.0, 0.8, n_subjects)[subj] + rng.normal(0.0, 0.5, n_items)[item]
         + rng.normal(0.0, 1.0, subj.size))
    return pd.DataFrame({"y": y, "x": x, "cond": cond,
                         "subj": [f"s{s:02d}" for s in subj], "item": [f"i{i:02d}" for i in item]})


@pytest.fixture(scope="session")
def sleepstudy_fit() -> lmmhmc.results.FitResult:
    """``Reaction ~ Days + (Days | Subject)`` on lme4's sleepstudy (correlated slopes)."""
    return lmmhmc.fit(SLEEPSTUDY_FORMULA, lmmhmc.datasets.load("sleepstudy"), seed=1,
                      **FIT_SETTINGS)


@pytest.fixture(scope="session")
def crossed_fit() -> lmmhmc.results.FitResult:
    """Crossed subjects x items, a categorical predictor and a centred covariate."""
    return lmmhmc.fit(CROSSED_FORMULA, simulate_crossed(), seed=2, **FIT_SETTINGS)


@pytest.fixture(scope="session")
def fit_settings() -> dict:
    """The sampler settings of the shared fits."""
    return dict(FIT_SETTINGS)
