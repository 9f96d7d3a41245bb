"""lmmhmc on an accelerator: the planner's calibration and cold fits, with chains vectorized.

Run on a machine with a GPU (JAX's default device). It records

- the calibration behind ``marginalize="auto"``'s budget (`lmmhmc.plan.device_budget`): the
  time of one value and gradient of a dense ``n x n`` system on the device, and on one CPU
  core at the size whose operations are the CPU budget;
- cold fits (compilation included, the persistent cache off), defaults otherwise (4 chains x
  (1000 + 1000), chains vectorized on the device): sleepstudy, df_dillonE1,
  df_stroop_complete (read from ``$LMMHMC_PAPER_DATA`` or ``../shared/data/paper``) and
  InstEval, the last twice: with the device's plan and with the plan of the CPU budget;
- with ``--host-cpu``, the same fits on the machine's CPU cores instead (``JAX_PLATFORMS=cpu``,
  chains in parallel), recorded as ``NAME (host CPU)`` beside the device's rows.

Each fit records the load average before it (``load_before``).

Each fit is recorded as it finishes (``benchmarks/results/device.json``, and ``$OUT`` when
set), so that a run cut short keeps what it measured; ``device.md`` is written from the JSON.

Usage: ``python benchmarks/device.py [--host-cpu] [--only NAME ...] [--report-only]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from chains import MODELS
from common import environment, environment_line, markdown_table, measure
from paper_specs import load

import lmmhmc

OUT = Path(__file__).parent / "results" / "device.json"
INSTEVAL = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
#: Suffix of the fits run on the CPU cores, and the fits run there by default (each with its
#: default plan: the CPU's).
HOST = " (host CPU)"
HOST_FITS = ("sleepstudy", "InstEval", "df_dillonE1", "df_stroop_complete")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only these fits (names as in the JSON)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--host-cpu", action="store_true",
                        help="run the fits on the CPU cores (JAX_PLATFORMS=cpu), added to the "
                             "device's JSON")
    args = parser.parse_args()
    if args.report_only:
        print(write_report(json.loads(OUT.read_text())))
        return
    if args.host_cpu:
        host_cpu(args.only)
        return
    import jax

    from lmmhmc import plan

    # --only adds to (or replaces in) the recorded fits; a whole run starts afresh
    earlier = json.loads(OUT.read_text())["fits"] if args.only and OUT.exists() else {}
    record = {"environment": environment(), "fits": earlier}
    record["environment"]["device"] = str(jax.devices()[0].device_kind)
    start = time.perf_counter()
    timings = plan.device_calibration(jax.devices()[0])
    record["calibration"] = {"seconds": time.perf_counter() - start,
                             "budget": plan.calibrated_budget(timings), **(timings or {})}
    save(record)
    run_fits(record, args.only, "")


def host_cpu(only: list[str] | None) -> None:
    """The fits on this machine's CPU cores, added to the device's record."""
    if os.environ.get("JAX_PLATFORMS") != "cpu":  # a fresh process: JAX reads it at start
        os.execvpe(sys.executable, [sys.executable, *sys.argv],
                   {**os.environ, "JAX_PLATFORMS": "cpu"})
    record = json.loads(OUT.read_text())
    record["host"] = environment()
    run_fits(record, only or list(HOST_FITS), HOST)


def run_fits(record: dict, only: list[str] | None, suffix: str) -> None:
    """Run the fits (those named in ``only``, all when None) on JAX's default device, each
    recorded as ``name + suffix`` as it finishes."""
    import jax

    from lmmhmc import plan

    instevals = lmmhmc.datasets.load("InstEval")

    def cpu_plan_terms() -> list[str]:  # the terms the CPU budget marginalizes
        cpu_plan = plan.make_plan(lmmhmc.Model(INSTEVAL, instevals).design, budget=plan.BUDGET)
        return [cpu_plan.labels[k] for k in cpu_plan.marginalized]

    fits = {
        "sleepstudy": lambda: measure(MODELS["sleepstudy"].formula, load(MODELS["sleepstudy"])),
        "InstEval": lambda: measure(INSTEVAL, instevals, log_likelihood=False),
        "InstEval, the CPU's plan": lambda: measure(
            INSTEVAL, instevals, cpu_plan_terms(), log_likelihood=False),
        "InstEval, every term": lambda: measure(INSTEVAL, instevals, "all", log_likelihood=False),
        "df_dillonE1": lambda: measure(MODELS["df_dillonE1"].formula, load(MODELS["df_dillonE1"])),
        "df_stroop_complete": lambda: measure(MODELS["df_stroop_complete"].formula,
                                              load(MODELS["df_stroop_complete"])),
    }
    for name, run in fits.items():
        if only and name not in only:
            continue
        load_before = os.getloadavg()
        try:
            result = run()
        except Exception:  # keep the other fits' numbers; the error is the result
            result = {"error": traceback.format_exc(limit=8)}
        record["fits"][name + suffix] = {**result, "platform": jax.default_backend(),
                                         "load_before": load_before}
        print(name + suffix, json.dumps(result)[:400], flush=True)
        save(record)
    print(write_report(record))


def save(record: dict) -> None:
    """Write the JSON (and copy it to ``$OUT`` when set)."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=1))
    if os.environ.get("OUT"):
        shutil.copy(OUT, Path(os.environ["OUT"]) / OUT.name)


def write_report(record: dict) -> str:
    """Write ``device.md`` from the JSON record; returns its text."""
    from lmmhmc.plan import dense_cost

    cal = record["calibration"]
    sizes = markdown_table(
        ["n", "value and gradient (ms)", "operations"],
        [[n, f"{1e3 * t:.3f}", f"{dense_cost(int(n)):.2g}"]
         for n, t in cal.get("device_s", {}).items()])
    rows = []
    for name, r in record["fits"].items():
        where = "CPU cores, parallel" if r.get("platform") == "cpu" else "device, vectorized"
        if "error" in r:
            rows.append([name, where, "error: " + r["error"].strip().splitlines()[-1][:120]]
                        + [""] * 7)
            continue
        rows.append([name, where,
                     ", ".join(f"`{m}`".replace("|", "\\|") for m in r["marginalized"]),
                     r["sampled_dims"], f"{r['wall_s']:.1f}", f"{r['sampling_s']:.1f}",
                     f"{r['min_ess_bulk']:.0f}", f"{r['min_ess_per_s']:.1f}",
                     f"{r['max_r_hat']:.4f}", r["divergences"]])
    fits = markdown_table(["data set", "chains on", "marginalized", "sampled dims", "wall s",
                           "sampling s", "min bulk ESS", "min ESS/s", "max R-hat",
                           "divergences"], rows)
    host = (f" The rows on the CPU cores ran in a process started with `JAX_PLATFORMS=cpu` "
            f"(`--host-cpu`): {environment_line(record['host'])}" if "host" in record else "")
    text = (
        f"# lmmhmc on {record['environment']['device']}\n\n"
        f"Generated by `python benchmarks/device.py`. {environment_line(record['environment'])}\n\n"
        f"Calibration ({cal['seconds']:.1f} s): one CPU core took "
        f"{1e3 * cal.get('cpu_s', float('nan')):.3f} ms for the dense system of n = "
        f"{cal.get('cpu_n')} (the CPU budget, 1e7 operations); the device's budget is "
        f"**{cal['budget']:.3g}** operations per gradient.\n\n{sizes}\n\n"
        "Cold fits (compilation included, persistent cache off), 4 chains x (1000 + 1000), "
        "default settings; on the device the chains run vectorized, on the CPU cores in "
        f"parallel.{host}\n\n{fits}\n")
    OUT.with_suffix(".md").write_text(text)
    if os.environ.get("OUT"):
        shutil.copy(OUT.with_suffix(".md"), Path(os.environ["OUT"]) / "device.md")
    return text


if __name__ == "__main__":
    main()
