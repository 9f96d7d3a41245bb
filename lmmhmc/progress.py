"""Progress of a fit, shown where it can be read: bars in a terminal or a notebook, plain lines
in a log.

With ``progress=True`` (`lmmhmc.options.FitOptions.progress`) a fit reports

* its stages that can take more than a moment (the ML start, waiting for the compiler, the
  recovery of the random effects and the log-likelihood, the convergence diagnostics), each as a
  line when it starts (``"ML start: ..."``) and one when it ends (``"ML start: done (0.4 s)"``);
* its chains: a tqdm bar per chain when the stream is a terminal or the code runs in a Jupyter
  kernel (``tqdm.auto`` draws notebook widgets there), and otherwise, when the output goes to
  a file, a pipe or a log, one line per chain and phase (``"chain 1: warm-up done (1000
  iterations, 12.3 s)"``), plus a line every `LINE_INTERVAL` seconds of a long phase.

Nothing written in line mode contains a carriage return, so that a log reads line by line.
Everything goes to ``sys.stderr`` (looked up when the fit starts). This module does not import
JAX.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["ChainProgress", "Progress", "in_notebook"]

#: Seconds after which a long chain phase in line mode gets an intermediate line.
LINE_INTERVAL = 30.0


def in_notebook() -> bool:
    """Whether the code runs in a Jupyter kernel (as `tqdm.autonotebook` decides)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except AttributeError:
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """Where and how a fit reports its progress.

    Parameters
    ----------
    enabled : bool
        Report at all (``FitOptions.progress``).
    stream : file-like, optional
        Where to write; ``sys.stderr`` by default.

    Attributes
    ----------
    mode : {"bars", "lines", "off"}
        Bars when ``stream`` is a terminal or in a notebook, lines otherwise, nothing when not
        enabled.
    """

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        if not enabled:
            self.mode = "off"
        elif _is_terminal(self.stream) or in_notebook():
            self.mode = "bars"
        else:
            self.mode = "lines"

    @property
    def enabled(self) -> bool:
        """Whether anything is reported."""
        return self.mode != "off"

    def line(self, text: str) -> None:
        """Write ``text`` as one line (when enabled)."""
        if self.enabled:  # one write per line: chains on threads do not interleave
            self.stream.write(text + "\n")
            self.stream.flush()

    @contextmanager
    def stage(self, label: str, what: str = "") -> Iterator[None]:
        """Report a stage: ``"label: what ..."`` when it starts, ``"label: done (t s)"`` when
        it ends."""
        self.line(f"{label}: {what} ..." if what else f"{label} ...")
        t0 = time.perf_counter()
        yield
        self.line(f"{label}: done ({time.perf_counter() - t0:.1f} s)")

    def chains(self, chains: int, warmup: int, total: int, together: bool) -> ChainProgress:
        """The progress display of ``chains`` chains of ``total`` iterations, the first
        ``warmup`` of them warm-up; ``together``: they run side by side and advance at once."""
        return ChainProgress(self, chains, warmup, total, together)


class ChainProgress:
    """Bars or lines for the chains of one run (see `Progress.chains`).

    Call `begin` when a chain (or, side by side, every chain) starts, `advance`
    after each segment of iterations and `close` at the end.
    """

    def __init__(self, progress: Progress, chains: int, warmup: int, total: int,
                 together: bool) -> None:
        self.progress = progress
        self.chains = chains
        self.warmup = warmup
        self.total = total
        self.together = together
        self._bars: list = []
        self._clocks: dict[int, dict[str, float]] = {}  # per chain (chains run on threads)
        if progress.mode == "bars":
            from tqdm.auto import tqdm

            self._bars = [tqdm(total=total, position=c, leave=True,
                               desc=f"chain {c + 1} warm-up", file=progress.stream)
                          for c in range(chains)]

    def _label(self, chain: int) -> str:
        if self.together and self.chains > 1:
            return f"chains 1-{self.chains}"
        return f"chain {chain + 1}"

    def begin(self, chain: int) -> None:
        """Chain ``chain`` (every chain, side by side) starts."""
        now = time.perf_counter()
        self._clocks[chain] = {"start": now, "phase": now, "last": now}

    def advance(self, chain: int, done: int) -> None:
        """Chain ``chain`` (every chain, side by side) has run ``done`` iterations."""
        if self._bars:
            self._advance_bars(chain, done)
        elif self.progress.mode == "lines":
            self._advance_lines(chain, done)

    def _advance_bars(self, chain: int, done: int) -> None:
        first = 0 if self.together else chain
        last = self.chains if self.together else chain + 1
        phase = "warm-up" if done <= self.warmup else "sampling"
        for c in range(first, last):
            bar = self._bars[c]
            bar.set_description(f"chain {c + 1} {phase}", refresh=False)
            bar.update(done - bar.n)

    def _advance_lines(self, chain: int, done: int) -> None:
        clock, now = self._clocks[chain], time.perf_counter()
        label = self._label(chain)

        def write(text: str) -> None:
            clock["last"] = now
            self.progress.line(text)

        if self.warmup and done >= self.warmup and "warm" not in clock:
            clock["warm"] = now
            write(f"{label}: warm-up done ({self.warmup} iterations, "
                  f"{now - clock['phase']:.1f} s)")
            clock["phase"] = now
        if done >= self.total:
            write(f"{label}: sampling done ({self.total - self.warmup} draws, "
                  f"{now - clock['phase']:.1f} s)")
        elif now - clock["last"] >= LINE_INTERVAL:
            phase = "warm-up" if done < self.warmup else "sampling"
            write(f"{label}: {phase}, {done}/{self.total} iterations "
                  f"({now - clock['start']:.1f} s)")

    def close(self) -> None:
        """Close the bars."""
        for bar in self._bars:
            bar.close()
        self._bars = []
