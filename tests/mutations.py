"""Mutation check: does the default test suite catch a wrong posterior?

Each fault below is a deliberate, semantic error in the model's definition. For every fault the
script copies the repository to a temporary folder, applies the fault there (the working tree is
never touched), runs the default (non-slow) test suite against the copy and reports the tests
that failed. A fault that no test catches is a hole in the suite.

Usage (from the repository root; about 1-5 minutes per fault on 2 cores)::

    python tests/mutations.py                # every fault, stop each run at the first failure
    python tests/mutations.py --all-tests    # run the whole suite for every fault
    python tests/mutations.py --only 2 5     # some faults
    python tests/mutations.py --list         # the faults and where they are applied

Exit status 0 when every fault was caught, 1 otherwise (2 when a fault's code location is stale:
its text was not found exactly once; then update :data:`FAULTS` to the moved code).

The faults are kept as semantic descriptions with their current code locations (file, the exact
text replaced, the replacement). When the code moves, update the location, never the meaning.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Test files run first, so that ``-x`` stops early on the quick model-definition checks.
FIRST = ["tests/test_numpyro_model.py", "tests/test_marginal.py", "tests/test_ml.py",
         "tests/test_ml_reference.py"]


@dataclass(frozen=True)
class Fault:
    """A deliberate error: ``old`` (found exactly once in ``path``) becomes ``new``."""

    number: int
    meaning: str
    path: str
    old: str
    new: str


FAULTS = [
    Fault(1, "Lambda = L diag(s) instead of diag(s) L (covariance factor of a term)",
          "lmmhmc/numpyro_model.py",
          "out.append(sds[:, None] * chol)",
          "out.append(chol * sds[None, :])"),
    Fault(2, "sigma scaled by 1.5 in the marginal likelihood",
          "lmmhmc/likelihood.py",
          "return kernel.log_density(resid, params[SIGMA], lams)",
          "return kernel.log_density(resid, 1.5 * params[SIGMA], lams)"),
    Fault(3, "observation weights ignored in the kernel's Gram matrices",
          "lmmhmc/marginal.py",
          'wa = a[f"A{i}"] * w[:, None]',
          'wa = a[f"A{i}"]'),
    Fault(4, "the second term's theta offset shifted by one in ML",
          "lmmhmc/ml.py",
          "        start += n\n    return factors",
          "        start += n - 1 if len(factors) == 1 else n\n    return factors"),
    Fault(5, "the sampled terms' contribution dropped from the residual",
          "lmmhmc/numpyro_model.py",
          'return data["y"] - mean(structure, data, params, effects)',
          'return data["y"] - mean(structure, data, params, {})'),
    Fault(6, "the recovered effects' conditional mean with the wrong sign",
          "lmmhmc/marginal.py",
          "w = xs[i][..., 0] / s2 + noise[i]",
          "w = -xs[i][..., 0] / s2 + noise[i]"),
    Fault(7, "the correlation's Cholesky factor transposed",
          "lmmhmc/numpyro_model.py",
          "chol = params[t.corr] if t.correlated else jnp.eye(t.d)",
          "chol = params[t.corr].T if t.correlated else jnp.eye(t.d)"),
    Fault(8, "the LKJ prior's concentration ignored (eta = 1 instead of the prior's)",
          "lmmhmc/priors.py",
          "items[term.corr] = dist.LKJCholesky(term.d, LKJ_ETA)",
          "items[term.corr] = dist.LKJCholesky(term.d, 1.0)"),
]

_IGNORE = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", ".hypothesis",
                                 ".ruff_cache", "site", "*.egg-info", ".benchmarks")
_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def apply(fault: Fault, root: Path) -> None:
    """Apply ``fault`` to the copy of the repository at ``root``.

    Raises
    ------
    LookupError
        If the fault's text is not found exactly once (its location is stale).
    """
    path = root / fault.path
    text = path.read_text(encoding="utf-8")
    count = text.count(fault.old)
    if count != 1:
        raise LookupError(f"fault {fault.number}: the text to replace occurs {count} times in "
                          f"{fault.path} (expected once); update FAULTS to the moved code")
    path.write_text(text.replace(fault.old, fault.new), encoding="utf-8")


def test_files(root: Path) -> list[str]:
    """The default suite's test files, the quick model-definition checks first."""
    every = sorted(str(p.relative_to(root)) for p in (root / "tests").glob("test_*.py"))
    return [f for f in FIRST if f in every] + [f for f in every if f not in FIRST]


def run_suite(root: Path, stop_first: bool) -> tuple[int, list[str], float]:
    """Run the default test suite in the copy at ``root``: (exit code, failed tests, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    check = subprocess.run([sys.executable, "-c", "import lmmhmc; print(lmmhmc.__file__)"],
                           cwd=root, env=env, capture_output=True, text=True, check=True)
    if not Path(check.stdout.strip()).resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"the copy imports lmmhmc from {check.stdout.strip()}, not {root}")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
           *(["-x"] if stop_first else []), *test_files(root)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    return out.returncode, _FAILED.findall(out.stdout), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", type=int, nargs="+", help="fault numbers to run")
    parser.add_argument("--all-tests", action="store_true",
                        help="run the whole suite per fault instead of stopping at the first "
                             "failure")
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    args = parser.parse_args(argv)
    faults = [f for f in FAULTS if not args.only or f.number in args.only]
    if args.list:
        for f in faults:
            print(f"{f.number}. {f.meaning}\n   {f.path}: {f.old!r} -> {f.new!r}")
        return 0
    status, rows = 0, []
    for fault in faults:
        with tempfile.TemporaryDirectory(prefix=f"lmmhmc-mutant-{fault.number}-") as tmp:
            copy = Path(tmp) / "repo"
            shutil.copytree(ROOT, copy, ignore=_IGNORE)
            try:
                apply(fault, copy)
            except LookupError as exc:
                print(f"STALE {exc}", flush=True)
                status = 2
                continue
            code, failed, seconds = run_suite(copy, stop_first=not args.all_tests)
        caught = code != 0 and bool(failed)
        if not caught:
            status = max(status, 1)
        verdict = "caught" if caught else "NOT CAUGHT"
        print(f"fault {fault.number} ({fault.meaning}): {verdict} in {seconds:.0f} s"
              + "".join(f"\n    {name}" for name in failed), flush=True)
        rows.append((fault, caught))
    n_caught = sum(caught for _, caught in rows)
    print(f"\n{n_caught} of {len(rows)} faults caught by the default suite")
    return status


if __name__ == "__main__":
    sys.exit(main())
