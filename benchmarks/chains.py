"""Sequential against parallel chains (the default), cold and warm, each fit in a new process.

For sleepstudy, df_dillonE1 and df_stroop_complete (210,231 rows, 3,337 subjects, read from
``../shared/data/paper`` when present, with ``c`` = +-1 for the condition as in issue 19's
``log(RT) ~ c + (1 + c | subj)``), with ``marginalize="auto"``, every fit runs in a new
Python process (as a user's script would): ``cold`` with an empty persistent compilation
cache (everything is compiled), ``warm`` with the cache that the cold run of the same method
filled (a new process, same structure). The methods use separate cache folders (they run
the same compiled programs, so one would otherwise find the other's). The runs are
interleaved (per data set and phase, sequential then parallel), and the load average is
recorded around each, because the machine may be shared: compare the methods within this
run, not with other runs.

Prints a table and writes ``benchmarks/results/chains.json`` and ``chains.md``.

Usage: ``python benchmarks/chains.py [--draws 1000] [--chains 4]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import environment, environment_line, fit_parser, markdown_table
from paper_specs import KNOWN

OUT = Path(__file__).parent / "results" / "chains.json"
MODELS = {
    "sleepstudy": KNOWN["sleepstudy"],
    "df_dillonE1": KNOWN["df_dillonE1"],
    "df_stroop_complete": replace(KNOWN["df_stroop_complete"],
                                  formula="log(RT) ~ c + (1 + c | subj)",
                                  sum_code=("c", "condition", "Incongruent")),
}
METHODS = ("sequential", "parallel")

#: Run in the new process: one fit, measured by `common.measure` (no cache clearing).
CHILD = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {bench!r})
from common import measure
from chains import MODELS
from paper_specs import load
spec = MODELS[{name!r}]
data = load(spec)
imported = time.perf_counter() - t0
out = measure(spec.formula, data, "auto", start_cold=False, chain_method={method!r},
              chains={chains}, draws={draws}, warmup={draws}, seed={seed})
out["import_s"] = imported
out["process_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def run_one(name: str, method: str, cache: Path, args) -> dict:
    """One fit in a new process with the persistent cache in ``cache``."""
    code = CHILD.format(bench=str(Path(__file__).parent), name=name, method=method,
                        chains=args.chains, draws=args.draws, seed=args.seed)
    env = dict(os.environ, LMMHMC_CACHE_DIR=str(cache))
    load = os.getloadavg()
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(model=name, method=method, load_before=load, load_after=os.getloadavg())
    return out


def main() -> None:
    parser = fit_parser(__doc__)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads(OUT.read_text()))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmmhmc-bench-cache-") as tmp:
        for name in args.models:
            caches = {m: Path(tmp) / f"{name}-{m}" for m in METHODS}
            for phase in ("cold", "warm"):
                for method in METHODS:
                    row = run_one(name, method, caches[method], args)
                    row["phase"] = phase
                    rows.append(row)
                    print(f"{name:<12}{phase:<6}{method:<11}{row['wall_s']:7.1f} s wall "
                          f"({row['sampling_s']:.1f} s sampling), min ESS "
                          f"{row['min_ess_bulk']:.0f}, load {row['load_before'][0]:.2f}",
                          flush=True)
    record = {"environment": environment(), "cores": len(os.sched_getaffinity(0)),
              "settings": {"chains": args.chains, "draws": args.draws, "warmup": args.draws,
                           "seed": args.seed},
              "date": time.strftime("%Y-%m-%d %H:%M"), "runs": rows}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=2))
    write_report(record)
    print(f"wrote {OUT}")


def write_report(record: dict) -> None:
    """``chains.md``: one row per data set and phase, the two methods side by side."""
    runs = record["runs"]
    body = []
    for name in dict.fromkeys(r["model"] for r in runs):
        for phase in ("cold", "warm"):
            by = {r["method"]: r for r in runs if r["model"] == name and r["phase"] == phase}
            if set(by) != set(METHODS):
                continue
            seq, par = by["sequential"], by["parallel"]
            body.append([
                name, phase, f"{seq['wall_s']:.1f}", f"{par['wall_s']:.1f}",
                f"{seq['wall_s'] / par['wall_s']:.2f}",
                f"{seq['sampling_s']:.1f}", f"{par['sampling_s']:.1f}",
                f"{seq['min_ess_bulk']:.0f} / {par['min_ess_bulk']:.0f}",
                f"{max(seq['max_r_hat'], par['max_r_hat']):.3f}",
                f"{seq['load_before'][0]:.1f} / {par['load_before'][0]:.1f}"])
    table = markdown_table(
        ["data set", "start", "sequential wall s", "parallel wall s", "speed-up",
         "sequential sampling s", "parallel sampling s", "min bulk ESS (seq / par)",
         "max R-hat", "load (seq / par)"], body)
    s = record["settings"]
    text = (
        f"Generated by `python benchmarks/chains.py`. {environment_line(record['environment'])} "
        f"{record['cores']} cores. {s['chains']} chains, {s['warmup']} warm-up + {s['draws']} "
        f"draws, seed {s['seed']}, `marginalize=\"auto\"`. Each fit runs in a new process; wall "
        "time is the fit's (compilation, ML start, sampling, recovery, diagnostics; not Python's "
        "and JAX's import). `cold`: empty persistent compilation cache; `warm`: the cache the "
        "cold run of the same method filled. Load: the 1-minute load average before each run; "
        "the machine was shared with other jobs, so compare the two methods within a row "
        "rather than with other tables.\n\n"
        f"{table}\n"
    )
    (OUT.parent / "chains.md").write_text(text)


if __name__ == "__main__":
    main()
