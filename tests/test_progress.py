"""Progress: bars in a terminal, plain lines (no carriage returns) in a log."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lmmhmc import progress as progress_module
from lmmhmc.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_mode_follows_the_stream() -> None:
    assert Progress(True, _Terminal()).mode == "bars"
    assert Progress(True, io.StringIO()).mode == "lines"
    assert Progress(False, _Terminal()).mode == "off"


def test_lines_per_stage_and_chain_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    progress = Progress(True, stream)
    with progress.stage("ML start", "maximizing the likelihood"):
        pass
    chains = progress.chains(2, warmup=100, total=200, together=False)
    for chain in range(2):
        chains.begin(chain)
        for done in (50, 100, 150, 200):
            chains.advance(chain, done)
    chains.close()
    text = stream.getvalue()
    assert "\r" not in text
    assert text.splitlines() == [
        "ML start: maximizing the likelihood ...",
        "ML start: done (1.0 s)",
        "chain 1: warm-up done (100 iterations, 2.0 s)",
        "chain 1: sampling done (100 draws, 2.0 s)",
        "chain 2: warm-up done (100 iterations, 2.0 s)",
        "chain 2: sampling done (100 draws, 2.0 s)",
    ]


def test_long_phases_get_intermediate_lines_and_side_by_side_chains_one_label(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter(float(t) for t in (0, 40, 50, 100))
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    chains = Progress(True, stream).chains(4, warmup=100, total=200, together=True)
    chains.begin(0)
    for done in (50, 100, 200):
        chains.advance(0, done)
    assert stream.getvalue().splitlines() == [
        "chains 1-4: warm-up, 50/200 iterations (40.0 s)",
        "chains 1-4: warm-up done (100 iterations, 50.0 s)",
        "chains 1-4: sampling done (100 draws, 50.0 s)",
    ]


def test_bars_in_a_terminal() -> None:
    stream = _Terminal()
    chains = Progress(True, stream).chains(2, warmup=10, total=20, together=True)
    chains.begin(0)
    chains.advance(0, 20)
    chains.close()
    text = stream.getvalue()
    assert "\r" in text and "chain 2 sampling" in text and "20/20" in text


def test_off_writes_nothing() -> None:
    stream = _Terminal()
    progress = Progress(False, stream)
    with progress.stage("ML start"):
        pass
    chains = progress.chains(1, warmup=1, total=2, together=False)
    chains.begin(0)
    chains.advance(0, 2)
    chains.close()
    assert stream.getvalue() == ""


def test_a_logged_fit_writes_lines_without_carriage_returns(tmp_path: Path) -> None:
    """A fit in a fresh process (``import lmmhmc`` before JAX) with stderr redirected to a
    file: one line per stage and chain phase, no ``\\r``; the draws are float64."""
    script = textwrap.dedent(
        """
        import sys
        import lmmhmc
        assert "jax" not in sys.modules
        res = lmmhmc.fit("Reaction ~ Days + (Days | Subject)", lmmhmc.datasets.load("sleepstudy"),
                         chains=2, draws=100, warmup=100, seed=1)
        import jax
        assert jax.config.jax_enable_x64
        assert res.idata.posterior["Days"].dtype == "float64"
        assert res.idata.posterior["1|Subject"].dtype == "float64"
        assert res.idata.log_likelihood["Reaction"].dtype == "float64"
        print("ok")
        """
    )
    log = tmp_path / "stderr.log"
    env = dict(os.environ, LMMHMC_CACHE_DIR=str(tmp_path / "cache"))
    with log.open("w") as err:
        proc = subprocess.run([sys.executable, "-W", "ignore", "-c", script],
                              stdout=subprocess.PIPE, stderr=err, text=True, env=env, timeout=600,
                              cwd=Path(__file__).resolve().parents[1])
    text = log.read_text()
    assert proc.returncode == 0, text[-2000:]
    assert proc.stdout.strip() == "ok"
    assert "\r" not in text
    lines = text.splitlines()
    for expected in ("ML start: maximizing the likelihood over 3 covariance parameters ...",
                     "chain 1: warm-up done (100 iterations, ",
                     "chain 2: sampling done (100 draws, ",
                     "recovery: random effects and log-likelihood of 200 draws ...",
                     "recovery: done ("):
        assert any(line.startswith(expected) for line in lines), (expected, text)
