"""Stored traced programs (`lmmhmc.program_store`): found again only for the same trace, and
the same program as a plain lowering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmmhmc import program_store


@partial(jax.jit, static_argnums=(0, 2))
def _scaled(factor: float, x: jax.Array, power: int) -> dict:
    return {"y": factor * x**power, "total": jnp.sum(x)}


@pytest.fixture
def folder(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """The stored programs go to a folder of this test."""
    monkeypatch.setattr(program_store, "_folder", lambda: tmp_path)
    return tmp_path


def _run(args: tuple) -> dict:
    lowered = program_store.lower(_scaled, args, static=(0, 2))
    return lowered.compile()(args[1])


def test_a_stored_program_computes_what_the_program_does(folder) -> None:
    x = jnp.arange(3.0)
    want = _scaled(2.0, x, 3)
    first = _run((2.0, x, 3))  # traced and stored
    assert len(list(folder.glob("*.bin"))) == 1
    second = _run((2.0, x, 3))  # loaded
    for got in (first, second):
        assert set(got) == {"y", "total"}
        np.testing.assert_array_equal(got["y"], want["y"])
        np.testing.assert_array_equal(got["total"], want["total"])


def test_a_stored_program_is_not_traced_again(folder, monkeypatch: pytest.MonkeyPatch) -> None:
    _run((2.0, jnp.arange(3.0), 3))

    def no_trace(*args):
        raise AssertionError("traced again")

    monkeypatch.setattr(program_store, "_store", no_trace)
    np.testing.assert_array_equal(_run((2.0, jnp.arange(3.0), 3))["y"], 2.0 * jnp.arange(3.0)**3)


@pytest.mark.parametrize("other", [(3.0, jnp.arange(3.0), 3), (2.0, jnp.arange(3.0), 2),
                                   (2.0, jnp.arange(4.0), 3), (2.0, jnp.arange(3), 3)])
def test_another_static_argument_shape_or_type_is_another_program(folder, other) -> None:
    """Each of these changes the trace: a new program is stored, and it computes the right
    values (not the first program's)."""
    _run((2.0, jnp.arange(3.0), 3))
    got = _run(other)
    assert len(list(folder.glob("*.bin"))) == 2
    np.testing.assert_array_equal(got["y"], _scaled(*other)["y"])


def test_an_unreadable_stored_program_is_traced_again(folder) -> None:
    _run((2.0, jnp.arange(3.0), 3))
    (path,) = folder.glob("*.bin")
    path.write_bytes(b"not a program")
    np.testing.assert_array_equal(_run((2.0, jnp.arange(3.0), 3))["y"], 2.0 * jnp.arange(3.0)**3)
    assert path.read_bytes() != b"not a program"  # replaced


def test_a_static_argument_pickle_cannot_write_is_traced_as_before(folder) -> None:
    f = jax.jit(lambda g, x: g(x), static_argnums=0)
    lowered = program_store.lower(f, (lambda x: jnp.sin(x), jnp.ones(2)), static=(0,))
    np.testing.assert_allclose(lowered.compile()(jnp.ones(2)), np.sin(1.0))
    assert not list(folder.glob("*.bin"))


def test_a_new_process_traces_no_chain_program_and_draws_the_same(tmp_path) -> None:
    """The second process (another string-hash seed) loads the chain program the first one
    stored instead of tracing it (NumPyro's sampler is never built: `_start` is not called),
    and its draws are bit for bit those of the first process and of a process that stores
    nothing (compilation cache off)."""
    script = textwrap.dedent(
        """
        import json, sys
        import jax
        import lmmhmc
        from lmmhmc import chains
        if sys.argv[1] != "off":
            jax.config.update("jax_compilation_cache_dir", sys.argv[1])
        traced, start = [], chains._start
        def counted(*args):
            traced.append(1)
            return start(*args)
        chains._start = counted
        res = lmmhmc.fit("Reaction ~ Days + (Days | Subject)",
                         lmmhmc.datasets.load("sleepstudy"), chains=2, draws=20, warmup=20,
                         seed=1, progress=False)
        json.dump({"traced": len(traced),
                   "sigma": res.idata.posterior["sigma"].values.ravel().tolist()}, sys.stdout)
        """
    )
    runs = []
    for seed, cache in (("1", str(tmp_path)), ("2", str(tmp_path)), ("3", "off")):
        env = dict(os.environ, PYTHONHASHSEED=seed, LMMHMC_CACHE_DIR="off")
        proc = subprocess.run([sys.executable, "-W", "ignore", "-c", script, cache],
                              capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert [r["traced"] for r in runs] == [1, 0, 1]
    assert len(list((tmp_path / program_store.FOLDER).glob("*.bin"))) == 1
    assert runs[0]["sigma"] == runs[1]["sigma"] == runs[2]["sigma"]


def test_a_program_that_export_refuses_is_traced_as_before(folder,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fun):
        def exporting(*args):
            raise ValueError("cannot export this custom call")
        return exporting

    monkeypatch.setattr(jax.export, "export", refuse)
    np.testing.assert_array_equal(_run((2.0, jnp.arange(3.0), 3))["y"], 2.0 * jnp.arange(3.0)**3)
    assert not list(folder.glob("*.bin"))
