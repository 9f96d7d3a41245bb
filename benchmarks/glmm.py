"""Non-Gaussian families: the Laplace reparameterization (auto) against non-centered (none).

cbpp (binomial), grouseticks (poisson, observation-level effect) and VerbAgg (bernoulli,
crossed), each fitted with ``marginalize="auto"`` and ``"none"`` interleaved in one run, same
chains, draws, warm-up and seed. Records, per fit: sampling time, minimum bulk ESS over every
parameter and random effect and its rate per second of sampling, divergences, max R-hat; per
data set, the agreement of the two posteriors (largest difference of means in combined MCSEs,
largest relative difference of posterior sds) and the load average before and after.

Writes ``benchmarks/results/glmm.json`` and ``glmm.md``.

Usage: ``python benchmarks/glmm.py [--draws 1000] [--chains 4] [--cases cbpp ...]``.
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
    cold()
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
        "divergences": res.n_divergences, "min_ess_bulk": float(ess.min()),
        "min_ess_per_sampling_s": float(ess.min() / res.timings["sampling"]),
        "max_r_hat": float(summ["r_hat"].max()),
        "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
    }, summ


def agreement(a, b) -> dict:
    mcse = np.hypot(a["mcse_mean"], b["mcse_mean"])
    z = np.abs(a["mean"] - b["mean"]) / mcse
    sd = np.abs(a["sd"] / b["sd"] - 1)
    return {"max_mean_diff_in_mcse": float(z.max()), "worst_mean": str(z.idxmax()),
            "max_sd_rel_diff": float(sd.max()), "worst_sd": str(sd.idxmax()),
            "n_compared": len(z)}


def main() -> None:
    parser = fit_parser(__doc__)
    parser.add_argument("--cases", nargs="+", default=["cbpp", "grouseticks", "VerbAgg"])
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads(OUT.read_text()))
        return
    kw = fit_settings(args)
    record = {"environment": environment(), "settings": kw, "cases": {}}
    for name in args.cases:
        formula, data, family = cases()[name]
        runs, summaries = {}, {}
        for marg in ("auto", "none"):
            runs[marg], summaries[marg] = fit_one(formula, data, family, marg, kw)
            r = runs[marg]
            print(f"{name:<12}{marg:<6}{r['sampling_s']:8.1f} s  min ESS {r['min_ess_bulk']:7.0f}"
                  f"  ESS/s {r['min_ess_per_sampling_s']:7.1f}  div {r['divergences']:3d}  "
                  f"R-hat {r['max_r_hat']:.3f}  load {r['load_average_before']:.1f}", flush=True)
        record["cases"][name] = {"formula": formula, "family": family, "runs": runs,
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
        for r in (auto, none):
            rows.append([name if r is auto else "", r["marginalize"], f"{r['sampling_s']:.1f}",
                         f"{r['min_ess_bulk']:.0f}", f"{r['min_ess_per_sampling_s']:.1f}",
                         f"{ratio:.2f}" if r is auto else "", r["divergences"],
                         f"{r['max_r_hat']:.3f}",
                         f"{r['load_average_before']:.1f}-{r['load_average_after']:.1f}",
                         f"{ag['max_mean_diff_in_mcse']:.1f} / {ag['max_sd_rel_diff']:.0%}"
                         if r is auto else ""])
    table = markdown_table(
        ["data", "marginalize", "sampling s", "min bulk ESS", "min ESS/s", "auto / none",
         "divergences", "max R-hat", "load avg", "agreement (means in MCSE / sds)"], rows)
    s = record["settings"]
    text = (f"{s['chains']} chains x ({s['warmup']} warm-up + {s['draws']} draws), seed "
            f"{s['seed']}; ESS over every parameter and random effect, per second of "
            "sampling (compilation and the ML start excluded). The machine was shared with "
            "other jobs (load average in the table), so the timings are noisy.\n\n"
            f"{table}\n\n{environment_line(record['environment'])}\n")
    (OUT.parent / "glmm.md").write_text(text)


if __name__ == "__main__":
    main()
