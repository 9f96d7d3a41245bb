"""The chain driver: Laplace starting metric, gradient counts, progress, parallel chains,
the persistent cache."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmmhmc
from lmmhmc.chains import laplace_start
from lmmhmc.datasets import load
from lmmhmc.errors import LmmhmcError

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


@pytest.mark.parametrize("dense", [False, True])
def test_laplace_starts_from_two_threads_are_those_run_one_at_a_time(dense):
    """Two threads running one compiled Laplace start at once get what each gets alone, bit
    for bit (parallel chains start so). At n = 1000 a single n x n x n product after the
    gradients' loop came out wrong in its first rows in 8 of 12 such runs (XLA:CPU, jax
    0.10.2); 12 runs are each compared here."""
    n = 1000
    b = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)) / np.sqrt(n))

    def potential(z):
        x = jnp.concatenate([z["a"], z["b"]])
        return 0.5 * jnp.sum((b @ x) ** 2) + jnp.sum(jnp.cosh(0.1 * x))

    def start(shift):
        z = {"a": shift + jnp.zeros(5), "b": shift + jnp.zeros(n - 5)}
        return laplace_start(potential, z, dense)[1]

    lowered = jax.jit(start).lower(0.0)
    shifts = [0.1 * i for i in range(4)]

    def run(shift):
        return [np.asarray(x) for x in jax.tree.leaves(lowered.compile()(shift))]

    alone = [run(s) for s in shifts]
    for _ in range(3):
        with ThreadPoolExecutor(2) as pool:
            together = list(pool.map(run, shifts))
        for got, want in zip(together, alone, strict=True):
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w)


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


def test_parallel_chains_match_sequential_chains_in_a_new_process():
    """A script that imports lmmhmc first gets parallel chains (threads calling one compiled
    executable), and their draws are the sequential chains', bit for bit.

    Run in a new process with a time limit (several chains at once once hung in recovery), on
    jointly marginalized crossed terms.
    """
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        import lmmhmc
        from conftest import simulate_crossed
        from lmmhmc.runtime import cores, resolve_chain_method
        data = simulate_crossed(10, 8)
        kw = dict(chains=3, draws=40, warmup=40, seed=5, progress=False)
        out = {"auto": resolve_chain_method("auto", 3), "cores": cores()}
        for method in ("parallel", "sequential"):
            res = lmmhmc.fit("y ~ cond + (1 | subj) + (1 | item)", data, chain_method=method,
                             **kw)
            post = res.idata.posterior
            out[method] = {"method": res.settings["chain_method"],
                           "plan": list(res.plan.marginalized),
                           "sigma": post["sigma"].values.tolist(),
                           "u": post["1|item"].values.tolist()}
        json.dump(out, sys.stdout)
        """
    )
    here = Path(__file__).parent
    env = dict(os.environ, LMMHMC_CACHE_DIR="off",
               PYTHONPATH=os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300, cwd=here)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["auto"] == ("parallel" if out["cores"] > 1 else "sequential")
    par, seq = out["parallel"], out["sequential"]
    assert (par["method"], seq["method"]) == ("parallel", "sequential")
    assert par["plan"] == [0, 1]
    # 3 chains on (here) 2 threads: the same programs, keys and starting points per chain
    assert par["sigma"] == seq["sigma"] and par["u"] == seq["u"]


@pytest.mark.slow
def test_parallel_chains_with_a_large_dense_rest_match_sequential_chains():
    """Jointly marginalized crossed terms whose dense rest has 1,000 levels: parallel chains
    draw the sequential chains' numbers, bit for bit. With the rest's ``P^{-1}`` as one
    ``n x n x n`` product (before `lmmhmc.blocked`), both of two such runs drew other numbers
    (so did InstEval with ``marginalize="all"``, 1,142 levels)."""
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np, pandas as pd
        import lmmhmc
        rng = np.random.default_rng(1)
        a, b = rng.integers(0, 2000, 6000), rng.integers(0, 1000, 6000)
        y = rng.normal(size=6000) + 0.5 * rng.normal(size=2000)[a] + 0.5 * rng.normal(size=1000)[b]
        data = pd.DataFrame({"y": y, "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b]})
        out = {}
        for method in ("parallel", "sequential"):
            res = lmmhmc.fit("y ~ 1 + (1 | a) + (1 | b)", data, marginalize="all", chains=2,
                             draws=8, warmup=8, seed=3, progress=False, chain_method=method)
            out[method] = {"method": res.settings["chain_method"],
                           "sigma": res.idata.posterior["sigma"].values.tolist(),
                           "u": res.idata.posterior["1|b"].values[..., :50].tolist()}
        json.dump(out, sys.stdout)
        """
    )
    env = dict(os.environ, LMMHMC_CACHE_DIR="off")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    par, seq = out["parallel"], out["sequential"]
    assert (par["method"], seq["method"]) == ("parallel", "sequential")
    assert par["sigma"] == seq["sigma"] and par["u"] == seq["u"]


def test_parallel_chains_call_the_executable_through_their_own_compiled_objects(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent first calls of one compiled object wait for each other in JAX's C++ dispatch
    (the second chain started when the first had finished: 2 chains of VerbAgg took 24 s side
    by side against 23 s one after another); one object per chain runs them together (14 s)."""
    from lmmhmc import chains

    seen, run = [], chains.ChainRunner._run

    def record(self, program, *args):
        seen.append(program[0])
        return run(self, program, *args)

    monkeypatch.setattr(chains.ChainRunner, "_run", record)
    lmmhmc.fit(SLEEP, load("sleepstudy"), chains=3, draws=20, warmup=20, progress=False,
               chain_method="parallel")
    assert len({id(p) for p in seen}) == 3


def test_the_chain_program_runs_the_model_once_for_the_potential(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing the chain program (in every process, before the persistent cache can be asked)
    runs the model's Python once for the potential, which the Laplace start and NUTS's
    leapfrog share through one jitted function, and once for the constrained draws: it used to
    run it once per caller (three times; tracing df_dillonE1's program took a median of 2.6 s,
    2.1 s since)."""
    from lmmhmc import chains
    from lmmhmc.assembled import assemble
    from lmmhmc.plan import make_plan
    from lmmhmc.priors import resolve_priors
    from lmmhmc.starts import anchored_priors, start_shapes

    calls, make = [], chains.make_model

    def counting(structure):
        model = make(structure)

        def counted(*args):
            calls.append(1)
            return model(*args)
        return counted

    monkeypatch.setattr(chains, "make_model", counting)
    # a structure no other test fits (no half-cached potential), traced without compiling
    model = lmmhmc.Model("Reaction ~ Days + (1 | Subject)", load("sleepstudy"))
    a = assemble(model.design, make_plan(model.design, "auto"),
                 resolve_priors(model.design, None, model.family))
    priors = anchored_priors(a, None)
    runner = chains.ChainRunner(a.structure, chains.Settings(
        warmup=3, draws=2, target_accept=0.8, dense_mass=True, max_tree_depth=5,
        progress=False))
    runner.compilers(a.data, priors, start_shapes(a, priors), jax.random.key(0))
    assert len(calls) == 2


def test_jax_started_before_lmmhmc_falls_back_to_sequential_with_a_warning():
    """A CPU client made before lmmhmc chose synchronous dispatch runs one call at a time:
    "auto" then runs the chains one after another and says how to get parallel ones;
    "parallel" is an error."""
    script = textwrap.dedent(
        """
        import json, sys, warnings
        import jax
        jax.numpy.ones(1).block_until_ready()  # JAX's CPU client starts here
        from lmmhmc.errors import LmmhmcError, SpeedWarning
        from lmmhmc.runtime import cores, resolve_chain_method
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            auto = resolve_chain_method("auto", 4)
        try:
            resolve_chain_method("parallel", 4)
            error = ""
        except LmmhmcError as e:
            error = str(e)
        json.dump({"auto": auto, "cores": cores(), "error": error,
                   "warnings": [str(w.message) for w in caught
                                if issubclass(w.category, SpeedWarning)]}, sys.stdout)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["auto"] == "sequential"
    how = "run jax.config.update('jax_cpu_enable_async_dispatch', False) right after importing"
    assert how in out["error"] and "chain_method='sequential'" in out["error"]
    if out["cores"] > 1:
        assert len(out["warnings"]) == 1
        assert out["warnings"][0].startswith(f"the 4 chains run one after another on this "
                                             f"{out['cores']}-core machine") and how in \
            out["warnings"][0]


@pytest.mark.parametrize("user_flags", ["", "--xla_cpu_experimental_ynn_fusion_type=+reduce"])
def test_importing_lmmhmc_first_turns_off_the_ynn_fusions_unless_the_user_chose(
        user_flags: str) -> None:
    """The per-level products' reductions compile to XLA's own loops, not to YNNPACK library
    fusions (several times slower on them, see `lmmhmc._x64`); a user's own setting of the
    flag wins (and then the fusions are there, so the check can fail)."""
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp
        from lmmhmc.marginal import small_matmul
        a = jnp.ones((3337, 2, 2))
        low = jax.jit(jax.grad(lambda a: jnp.sum(jnp.tanh(small_matmul(a, a))))).lower(a)
        print("__ynn_fusion" in low.compile().as_text())
        """
    )
    env = {**os.environ, "XLA_FLAGS": user_flags}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == str(bool(user_flags))


@pytest.mark.slow
def test_vectorized_chains_start_like_sequential_chains():
    """All chains in one batched program: the same first iterations as chain after chain
    (later ones drift apart by rounding, as NUTS amplifies it)."""
    kw = dict(chains=2, draws=3, warmup=0, seed=4, progress=False)
    runs = {m: lmmhmc.fit(SLEEP, load("sleepstudy"), chain_method=m, **kw)
            for m in ("vectorized", "sequential")}
    assert runs["vectorized"].settings["chain_method"] == "vectorized"
    got, want = (runs[m].idata.posterior["sigma"].values for m in ("vectorized", "sequential"))
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=1e-8)


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
        counts.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert counts[0]["misses"] > 0  # the first process compiles and fills the cache
    assert counts[1] == {"misses": 0, "hits": counts[0]["misses"] + counts[0]["hits"]}, counts


def _fail_third_segment(monkeypatch: pytest.MonkeyPatch, error: type[BaseException]) -> None:
    """Make the chains' program raise ``error`` at its third call (third segment, all chains
    counted together)."""
    from lmmhmc import chains

    calls = itertools.count(1)
    run = chains.ChainRunner._run

    def failing(self, program, *args):
        compiled, placeholder = program

        def call(*a):
            if next(calls) == 3:
                raise error("segment 3")
            return compiled(*a)

        return run(self, (call, placeholder), *args)

    monkeypatch.setattr(chains.ChainRunner, "_run", failing)


def test_a_failing_parallel_chain_raises_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other chains stop; the error is the failing chain's, not an interruption."""
    _fail_third_segment(monkeypatch, RuntimeError)
    with pytest.raises(RuntimeError, match="^segment 3$"):
        lmmhmc.fit(SLEEP, load("sleepstudy"), chains=3, draws=40, warmup=40, progress=True,
                   chain_method="parallel")


@pytest.mark.parametrize("method", ["sequential", "parallel"])
def test_ctrl_c_stops_sampling_with_a_short_message(monkeypatch: pytest.MonkeyPatch,
                                                     method: str) -> None:
    from lmmhmc import progress

    _fail_third_segment(monkeypatch, KeyboardInterrupt)
    closed, close = [], progress.ChainProgress.close

    def close_bars(self) -> None:
        closed.append(self.chains)
        close(self)

    monkeypatch.setattr(progress.ChainProgress, "close", close_bars)
    with pytest.raises(KeyboardInterrupt) as caught:
        lmmhmc.fit(SLEEP, load("sleepstudy"), chains=2, draws=40, warmup=40, progress=True,
                   chain_method=method)
    # 40 segments of 2 iterations per chain; the third segment call was interrupted: one
    # after another, chain 1 ran 2 segments; side by side, the chains ran 2 together, and the
    # other chain stops after its current segment (a few more iterations)
    message = str(caught.value)
    if method == "sequential":
        assert message == ("sampling interrupted by the user after 4 of 160 iterations "
                           "(all chains together)")
    else:
        done = re.fullmatch(r"sampling interrupted by the user after (\d+) of 160 iterations "
                            r"\(all chains together\)", message)
        assert done and 4 <= int(done[1]) < 80
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert closed == [2]


def test_laplace_start_gives_the_blocks_of_a_structured_mass_matrix():
    """A dense block over some sites (NumPyro's structured form): that block of the inverse
    Hessian, and the diagonal of the other sites in sorted order."""
    rng = np.random.default_rng(1)
    m = rng.normal(size=(4, 4))
    precision = m @ m.T + 4 * np.eye(4)
    z0 = {"a": jnp.array([0.3, -1.0]), "b": jnp.array(2.0), "c": jnp.array(0.5)}

    def potential(z):
        x = jnp.concatenate([z["a"], jnp.atleast_1d(z["b"]), jnp.atleast_1d(z["c"])])
        return 0.5 * x @ precision @ x

    cov = np.linalg.inv(precision)  # ravelled order: a (0, 1), b (2), c (3)
    _, got = laplace_start(potential, z0, ("c", "b"))
    assert set(got) == {("c", "b"), ("a",)}
    np.testing.assert_allclose(got[("c", "b")], cov[np.ix_([3, 2], [3, 2])], rtol=1e-6)
    np.testing.assert_allclose(got[("a",)], np.diag(cov)[:2], rtol=1e-6)


def test_many_effects_get_a_dense_block_over_the_parameters_and_the_same_posterior():
    """Above DENSE_MASS_MAX_DIM sampled dimensions the default mass matrix is dense over the
    parameters and diagonal over the random effects; the posterior is that of the marginalized
    model (the means within 4.5 combined MCSEs: a false alarm below 1e-4 per quantity)."""
    from conftest import CROSSED_FORMULA, simulate_crossed

    from lmmhmc.options import DENSE_MASS_MAX_DIM

    data = simulate_crossed(n_subjects=60, n_items=15, seed=3)
    kw = dict(chains=2, draws=400, warmup=300, progress=False, seed=4)
    sampled = lmmhmc.fit(CROSSED_FORMULA, data, marginalize="none", **kw)
    assert sampled.plan.sampled_dims > DENSE_MASS_MAX_DIM
    block = sampled.settings["dense_mass"]
    assert block == tuple(sorted(block))
    assert set(block) == {"Intercept", "cond[T.b]", "center(x)", "sigma", "1|subj_sigma",
                          "1|item_sigma"}
    marginal = lmmhmc.fit(CROSSED_FORMULA, data, **kw)
    assert marginal.settings["dense_mass"] is True
    names = sampled.parameter_names(random_effects=False)
    a, b = (az.summary(f.idata, var_names=names, round_to="none") for f in (sampled, marginal))
    z = (a["mean"] - b["mean"]).abs() / np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
    assert z.max() < 4.5, z
    with pytest.raises(LmmhmcError, match="dense_mass names.*'nope'"):
        lmmhmc.fit(CROSSED_FORMULA, data, marginalize="none", dense_mass=("nope",), **kw)


@pytest.mark.filterwarnings("ignore::lmmhmc.errors.ConvergenceWarning")  # 25 draws
def test_recovery_in_batches_on_threads_is_the_whole_recovery(monkeypatch: pytest.MonkeyPatch):
    """The fit recovers the random effects and the log-likelihood a chain's draws at a time on
    several threads; one call over all draws at once gives the same numbers, bit for bit."""
    from lmmhmc import fitting, recovery

    seen = {}

    def spy(lowered, assembled, flat, keys, batch, workers):
        seen.update(assembled=assembled, flat=flat, keys=keys, batch=batch)
        seen["out"] = recovery.recover_all(lowered, assembled, flat, keys, batch, 2)
        return seen["out"]

    monkeypatch.setattr(fitting, "recover_all", spy)
    lmmhmc.fit(SLEEP, load("sleepstudy"), chains=3, draws=25, warmup=25, seed=4,
               log_likelihood=True, progress=False)
    assert seen["batch"] == 25 and seen["keys"].shape[0] == 75
    assembled = seen["assembled"]
    effects, loglik = recovery._recover_all(assembled.structure, assembled.data, seen["flat"],
                                            seen["keys"], True)
    got_effects, got_loglik = seen["out"]
    assert len(got_effects) == len(effects) == 1
    np.testing.assert_array_equal(got_effects[0], effects[0])
    np.testing.assert_array_equal(got_loglik, loglik)
    assert np.std(got_effects[0][:, 0, 0]) > 0  # draws, not a constant
