"""The chain driver: Laplace starting metric, gradient counts, progress, parallel chains."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import lmmhmc
from lmmhmc.chains import laplace_start
from lmmhmc.datasets import load

SLEEP = "Reaction ~ Days + (Days | Subject)"


def _quadratic(precision: np.ndarray, center: dict):
    """Potential 0.5 (z - c)^T A (z - c) over the dict {"a": (2,), "b": scalar}."""

    def potential(z):
        x = jnp.concatenate([z["a"], jnp.atleast_1d(z["b"])]) - center
        return 0.5 * x @ precision @ x

    return potential


def test_laplace_start_is_the_inverse_hessian_and_the_exact_gradient():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(3, 3))
    precision = m @ m.T + 3 * np.eye(3)
    center = jnp.asarray(rng.normal(size=3))
    z0 = {"a": jnp.array([0.3, -1.0]), "b": jnp.array(2.0)}  # ravelled order: a, b
    start, got = laplace_start(_quadratic(precision, center), z0, dense=True)
    np.testing.assert_allclose(got, np.linalg.inv(precision), rtol=1e-6)
    _, diag = laplace_start(_quadratic(precision, center), z0, dense=False)
    np.testing.assert_allclose(diag, np.diag(np.linalg.inv(precision)), rtol=1e-6)
    # the start NUTS receives: z0, its potential and its gradient A (z0 - c), exactly
    x = np.array([0.3, -1.0, 2.0]) - np.asarray(center)
    assert start.z is z0
    np.testing.assert_allclose(float(start.potential_energy), 0.5 * x @ precision @ x,
                               rtol=1e-12)
    grad = np.concatenate([start.z_grad["a"], np.atleast_1d(start.z_grad["b"])])
    np.testing.assert_allclose(grad, precision @ x, rtol=1e-12)


def test_laplace_inverse_mass_regularizes_indefinite_and_non_finite():
    indefinite = np.diag([4.0, -2.0, 1e-12])
    z0 = {"a": jnp.zeros(2), "b": jnp.array(0.0)}
    got = np.asarray(laplace_start(_quadratic(indefinite, jnp.zeros(3)), z0, True)[1])
    # eigenvalues by absolute value, floored at 1e-6 of the largest
    np.testing.assert_allclose(np.diag(got), [0.25, 0.5, 1 / 4e-6], rtol=1e-4)

    def broken(z):
        return jnp.sum(jnp.sqrt(-1.0 - z["a"] ** 2)) + z["b"]  # NaN everywhere

    np.testing.assert_array_equal(laplace_start(broken, z0, True)[1], np.eye(3))


def test_gradient_counts_and_progress_lines(capsys):
    res = lmmhmc.fit(SLEEP, load("sleepstudy"), chains=2, draws=60, warmup=60, seed=2,
                     progress=True)
    n_steps = res.idata.sample_stats["n_steps"].values
    assert res.gradients["sampling"] == int(n_steps.sum())
    # every warm-up iteration takes at least one leapfrog step
    assert res.gradients["warmup"] >= 2 * 60
    err = capsys.readouterr().err  # not a terminal: a line per chain phase, no bars
    assert "chain 1: warm-up done (60 iterations, " in err
    assert "chain 2: sampling done (60 draws, " in err
    assert "\r" not in err


@pytest.mark.skipif(sys.platform == "win32", reason="XLA host devices via XLA_FLAGS")
def test_parallel_chains_match_sequential_chains():
    """With 2 host devices the chains run under pmap; the draws equal the sequential run's.

    Jointly marginalized crossed terms: the case whose recovery used to hang with several
    devices.
    """
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        import lmmhmc
        from conftest import simulate_crossed
        data = simulate_crossed(10, 8)
        kw = dict(chains=2, draws=50, warmup=50, seed=5, progress=False)
        res = lmmhmc.fit("y ~ cond + (1 | subj) + (1 | item)", data, **kw)
        post = res.idata.posterior
        json.dump({"method": res.settings["chain_method"], "plan": list(res.plan.marginalized),
                   "sigma": post["sigma"].values.tolist(),
                   "u": post["1|item"].values.tolist()}, sys.stdout)
        """
    )
    here = Path(__file__).parent
    outs = {}
    for devices in (1, 2):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                   PYTHONPATH=os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]),
                   LMMHMC_CACHE_DIR="off")
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=600, cwd=here)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[devices] = __import__("json").loads(proc.stdout.strip().splitlines()[-1])
    assert outs[1]["method"] == "sequential" and outs[2]["method"] == "parallel"
    assert outs[2]["plan"] == [0, 1]
    # same keys and starting points per chain; pmap and jit compile the chain separately, so
    # the draws agree up to floating-point rounding, not bit for bit
    np.testing.assert_allclose(outs[2]["sigma"], outs[1]["sigma"], rtol=1e-6)
    np.testing.assert_allclose(outs[2]["u"], outs[1]["u"], rtol=1e-5, atol=1e-7)


def test_a_new_process_compiles_nothing_again(tmp_path):
    """The compiled programs' keys do not depend on Python's string-hash seed: a second
    process with another PYTHONHASHSEED finds every program of the same fit in the persistent
    cache (no cache miss; NumPyro orders a distribution's fields by a set)."""
    script = textwrap.dedent(
        """
        import json, sys
        import jax
        events = []
        jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
        import lmmhmc
        jax.config.update("jax_compilation_cache_dir", sys.argv[1])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        lmmhmc.fit("Reaction ~ Days + (Days | Subject)", lmmhmc.datasets.load("sleepstudy"),
                   chains=2, draws=20, warmup=20, seed=1, progress=False)
        json.dump({"misses": events.count("/jax/compilation_cache/cache_misses"),
                   "hits": events.count("/jax/compilation_cache/cache_hits")}, sys.stdout)
        """
    )
    counts = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        proc = subprocess.run([sys.executable, "-W", "ignore", "-c", script, str(tmp_path)],
                              capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        counts.append(__import__("json").loads(proc.stdout.strip().splitlines()[-1]))
    assert counts[0]["misses"] > 0  # the first process compiles and fills the cache
    assert counts[1] == {"misses": 0, "hits": counts[0]["misses"] + counts[0]["hits"]}, counts


def test_ctrl_c_stops_sampling_with_a_short_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from lmmhmc import chains, progress

    class Interrupted:
        """The segment program, interrupted (Ctrl-C) at its third call."""

        def __init__(self, program) -> None:
            self.program, self.lower, self.calls = program, program.lower, 0

        def __call__(self, *args):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return self.program(*args)

    monkeypatch.setattr(chains, "_segment_jit", Interrupted(chains._segment_jit))
    closed, close = [], progress.ChainProgress.close

    def close_bars(self) -> None:
        closed.append(self.chains)
        close(self)

    monkeypatch.setattr(progress.ChainProgress, "close", close_bars)
    with pytest.raises(KeyboardInterrupt) as caught:
        lmmhmc.fit(SLEEP, load("sleepstudy"), chains=2, draws=40, warmup=40, progress=True)
    # 40 segments of 2 iterations per chain; the third segment call was interrupted
    assert str(caught.value) == ("sampling interrupted by the user after 4 of 160 iterations "
                                 "(all chains together)")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert closed == [2]
