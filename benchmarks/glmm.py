"""Non-Gaussian families: the Laplace reparameterization (auto) against non-centered (none).

cbpp (binomial), grouseticks (poisson, observation-level effect) and VerbAgg (bernoulli,
crossed), each fitted with ``marginalize="auto"`` and ``"none"`` interleaved in one run, same
chains, draws, warm-up and seed. Records, per fit: sampling time, minimum bulk ESS over every
parameter and random effect and its rate per second of sampling, gradients, divergences, max
R-hat; per data set, the agreement of the two posteriors over every scalar (largest difference
of means in combined MCSEs, largest relative difference of posterior sds, and whether they are
within 4 MCSEs and 10 %) and the load average before and after.

The fit's sampling time (``FitResult.timings["sampling"]``) is warm-up and draws, after the
chain programs' compilation; the first fit's wall time, ML start and compilation included, is
reported beside it with the ratio of minimum ESS per wall second. With ``--repeat R`` every
fit is run ``R`` times, interleaved (auto, none, auto, none, ...), the compiled programs kept
after the first: the same seed gives the same draws (checked), so only the timing differs,
and the shortest sampling time of each is kept (the least disturbed by the shared machine's
load). ``--append`` keeps the other data sets' results in the JSON.

Writes ``benchmarks/results/glmm.json`` and ``glmm.md``.

Usage: ``python benchmarks/glmm.py [--draws 1000] [--chains 4] [--repeat 1] [--append]
[--cases cbpp ...]``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import arviz as az
import numpy as np
from common import cold, environment, environment_line, fit_parser, fit_settings, markdown_table

import lmmhmc
from lmmhmc.datasets import load
from lmmhmc.families import FAMILIES

OUT = Path(__file__).parent / "results" / "glmm.json"


def cases() -> dict:
    verb = load("VerbAgg")
    verb["r2"] = (verb["r2"] == "Y").astype(float)
    return {
        "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", load("cbpp"),
                 "binomial"),
        "grouseticks": ("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                        load("grouseticks"), "poisson"),
        "VerbAgg": ("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", verb,
                    "bernoulli"),
    }


def fit_one(formula, data, family, marginalize, kw) -> tuple[dict, object]:
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = lmmhmc.fit(formula, data, family=family, marginalize=marginalize, progress=False,
                     **kw)
    wall = time.perf_counter() - t0
    summ = az.summary(res.idata, var_names=res.parameter_names(True), round_to="none")
    ess = summ["ess_bulk"].to_numpy()
    return {
        "marginalize": marginalize, "plan": str(res.plan), "wall_s": wall,
        "sampling_s": res.timings["sampling"], "gradients": res.gradients,
        "compile_wait_s": res.timings["compile_wait"],
        "divergences": res.n_divergences, "min_ess_bulk": float(ess.min()),
        "min_ess_per_sampling_s": float(ess.min() / res.timings["sampling"]),
        "max_r_hat": float(summ["r_hat"].max()),
        "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
    }, summ


def best_of(runs: list[dict]) -> dict:
    """The first of repeated fits with the shortest sampling time (and the ESS rate from it);
    the draws must be the same."""
    first = dict(runs[0])
    assert all(r["min_ess_bulk"] == first["min_ess_bulk"] for r in runs), "draws differ"
    first["sampling_s_repeats"] = [r["sampling_s"] for r in runs]
    first["sampling_s"] = min(first["sampling_s_repeats"])
    first["min_ess_per_sampling_s"] = first["min_ess_bulk"] / first["sampling_s"]
    first["load_average_after"] = runs[-1]["load_average_after"]
    return first


def agreement(a, b) -> dict:
    mcse = np.hypot(a["mcse_mean"], b["mcse_mean"])
    z = np.abs(a["mean"] - b["mean"]) / mcse
    sd = np.abs(a["sd"] / b["sd"] - 1)
    return {"max_mean_diff_in_mcse": float(z.max()), "worst_mean": str(z.idxmax()),
            "max_sd_rel_diff": float(sd.max()), "worst_sd": str(sd.idxmax()),
            "n_compared": len(z), "means_within_4_mcse": bool(z.max() <= 4.0),
            "sds_within_10_percent": bool(sd.max() <= 0.10)}


def main() -> None:
    parser = fit_parser(__doc__)
    parser.add_argument("--cases", nargs="+", default=["cbpp", "grouseticks", "VerbAgg"])
    parser.add_argument("--repeat", type=int, default=1,
                        help="fits of each (interleaved); the shortest sampling time is kept")
    parser.add_argument("--append", action="store_true",
                        help="keep the other data sets' results of the JSON")
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads(OUT.read_text()))
        return
    kw = fit_settings(args)
    record = {"environment": environment(), "settings": {**kw, "repeat": args.repeat},
              "newton_steps": {name: f.newton_steps for name, f in FAMILIES.items()},
              "cases": {}}
    if args.append and OUT.exists():
        record["cases"] = json.loads(OUT.read_text())["cases"]
    for name in args.cases:
        formula, data, family = cases()[name]
        runs, summaries = {"auto": [], "none": []}, {}
        cold()
        for _ in range(args.repeat):
            for marg in ("auto", "none"):
                r, summaries[marg] = fit_one(formula, data, family, marg, kw)
                runs[marg].append(r)
                print(f"{name:<12}{marg:<6}{r['sampling_s']:8.1f} s  min ESS "
                      f"{r['min_ess_bulk']:7.0f}  ESS/s {r['min_ess_per_sampling_s']:7.1f}  div "
                      f"{r['divergences']:3d}  R-hat {r['max_r_hat']:.3f}  load "
                      f"{r['load_average_before']:.1f}", flush=True)
        record["cases"][name] = {"formula": formula, "family": family,
                                 "runs": {m: best_of(rs) for m, rs in runs.items()},
                                 "agreement": agreement(summaries["auto"], summaries["none"])}
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(record, indent=2))
    write_report(record)
    print(f"wrote {OUT}")


def write_report(record: dict) -> None:
    rows = []
    for name, case in record["cases"].items():
        auto, none = case["runs"]["auto"], case["runs"]["none"]
        ag = case["agreement"]
        ratio = auto["min_ess_per_sampling_s"] / none["min_ess_per_sampling_s"]
        by_wall = (auto["min_ess_bulk"] / auto["wall_s"]) / (none["min_ess_bulk"] / none["wall_s"])
        for r in (auto, none):
            first = r is auto
            repeats = len(r.get("sampling_s_repeats", [0]))
            timed = f"{r['sampling_s']:.1f}" + (f" (best of {repeats})" if repeats > 1 else "")
            rows.append([name if first else "", r["marginalize"], timed,
                         f"{r['min_ess_bulk']:.0f}", f"{r['min_ess_per_sampling_s']:.1f}",
                         f"**{ratio:.2f}**" if first else "", f"{r['wall_s']:.1f}",
                         f"{by_wall:.2f}" if first else "",
                         f"{1000 * r['min_ess_bulk'] / r['gradients']['sampling']:.0f}",
                         r["divergences"], f"{r['max_r_hat']:.3f}",
                         f"{r['load_average_before']:.1f}-{r['load_average_after']:.1f}",
                         f"{ag['max_mean_diff_in_mcse']:.1f} / {ag['max_sd_rel_diff']:.0%} "
                         f"({ag['n_compared']})" if first else ""])
    table = markdown_table(
        ["data", "marginalize", "sampling s", "min bulk ESS", "min ESS/s", "auto / none",
         "first fit's wall s", "auto / none by wall", "ESS per 1000 gradients", "divergences",
         "max R-hat", "load avg", "agreement: means in MCSE / sds (scalars)"], rows)
    s = record["settings"]
    steps = record.get("newton_steps")
    if isinstance(steps, dict):
        newton = ("K Newton steps from the ML fit's modes ("
                  + ", ".join(f"{name} {k}" for name, k in steps.items()) + ")")
    else:
        newton = (f"K = {steps} Newton steps from the ML fit's modes" if steps
                  else "K = 4 Newton steps from 0")
    text = (f"{s['chains']} chains x ({s['warmup']} warm-up + {s['draws']} draws), seed "
            f"{s['seed']}; {newton}. ESS: the smallest bulk ESS over every parameter and "
            "random effect; per second of sampling (warm-up and draws, after compilation; "
            "the shortest of repeated interleaved fits, same seed and draws), and per second "
            "of the first fit's wall time (ML start and compilation included). "
            "Agreement of auto with none over every scalar: the "
            "largest difference of means in combined MCSEs and of sds relative to none's. The "
            "machine was shared with other jobs (load average in the table), so the timings "
            "are noisy.\n\n"
            f"{table}\n\n{environment_line(record['environment'])}\n")
    (OUT.parent / "glmm.md").write_text(text)


if __name__ == "__main__":
    main()
