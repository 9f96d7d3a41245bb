"""Distributional stroop (the paper's model): ``auto`` vs ``marginalize="none"``, one run.

    log(RT) ~ c + (1 + c | subj),   sigma ~ c + (1 + c | subj),   c = +1 incongruent, -1 congruent

``auto`` integrates the mean's subject effects out (per-observation residual sds, the Gram
blocks recomputed per gradient); ``none`` samples them non-centered. Log sigma's subject effects
are sampled in both (non-centered; a third fit, ``auto`` with ``centering="all"``, samples
them centered). The fits run one after the other in the same process, with the same
chains, draws, warm-up and seed, each from a cold start (compilation included in the wall
time). Checks: every posterior scalar (fixed effects, sds, correlations, every random effect
of both parts) has means within 4 combined MCSEs and sds within 10 %; reports min bulk ESS per
second. Writes ``benchmarks/results/distributional.json``; the machine is shared and noisy, so
the load average before and after is recorded.

Usage: ``python benchmarks/distributional.py [--draws 1000] [--chains 4]``.
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

OUT = Path(__file__).parent / "results" / "distributional.json"
CENTERED_TEXT = (
    "\nThe third row is `auto` with `centering=\"all\"`: log sigma's subject effects sampled "
    "centered (`v_j` itself rather than `v_j = Lambda z_j`), which `centering=\"auto\"` does "
    "not do (the homoscedastic ML start has no estimate of their sds).\n")
MEAN = "log(RT) ~ c + (1 + c | subj)"
SIGMA = "sigma ~ c + (1 + c | subj)"


def stroop():
    """df_stroop with the paper's sum coding c = +-1."""
    data = lmmhmc.datasets.load("df_stroop")
    data = data[data["RT"] > 0].copy()
    data["c"] = np.where(data["condition"] == "Incongruent", 1.0, -1.0)
    data["subj"] = data["subj"].astype(int).astype(str)
    return data


def run(data, marginalize: str, kw: dict, centering: str = "auto"):
    """One cold fit: the result, its wall time and the load average around it."""
    cold()
    load = os.getloadavg()
    t0 = time.perf_counter()
    res = lmmhmc.fit([MEAN, SIGMA], data, marginalize=marginalize, centering=centering,
                     progress=False, **kw)
    wall = time.perf_counter() - t0
    summ = az.summary(res.idata, var_names=res.parameter_names(True), round_to="none")
    return res, summ, {"marginalize": marginalize, "centering": centering,
                       "plan": str(res.plan), "wall_s": wall,
                       "sampling_s": res.timings["sampling"],
                       "min_ess_bulk": float(summ["ess_bulk"].min()),
                       "min_ess_parameter": str(summ["ess_bulk"].idxmin()),
                       "min_ess_per_s": float(summ["ess_bulk"].min() / wall),
                       "max_r_hat": float(summ["r_hat"].max()),
                       "divergences": res.n_divergences,
                       "gradients": res.gradients,
                       "load_before": load, "load_after": os.getloadavg()}


def agreement(a, b) -> dict:
    """Means within 4 combined MCSEs and sds within 10 %, for every row of two summaries."""
    z = (a["mean"] - b["mean"]).abs() / np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
    ratio = a["sd"] / b["sd"]
    worst_sd = (ratio - 1).abs().idxmax()
    return {"n_parameters": int(len(a)), "max_z": float(z.max()), "max_z_parameter": z.idxmax(),
            "n_means_beyond_4_mcse": int((z > 4).sum()),
            "max_sd_deviation": float(abs(ratio[worst_sd] - 1)), "max_sd_parameter": worst_sd,
            "n_sds_beyond_10pct": int(((ratio - 1).abs() > 0.10).sum()),
            "means_ok": bool((z <= 4).all()), "sds_ok": bool(((ratio - 1).abs() <= 0.10).all())}


def main() -> None:
    parser = fit_parser(__doc__)
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads(OUT.read_text()))
        return
    kw = fit_settings(args)
    data = stroop()
    fits = {m: run(data, m, kw) for m in ("auto", "none")}
    # log sigma's effects centered (centering="all"): measured, not the default
    fits["auto-centered"] = run(data, "auto", kw, centering="all")
    summ_a, summ_n = fits["auto"][1], fits["none"][1]
    check = agreement(summ_a, summ_n.loc[summ_a.index])
    rows = [fits[m][2] for m in ("auto", "none", "auto-centered")]
    ratio = rows[0]["min_ess_per_s"] / rows[1]["min_ess_per_s"]
    record = {"environment": environment(), "settings": kw, "formula": [MEAN, SIGMA],
              "n_obs": len(data), "fits": rows, "auto_over_none_min_ess_per_s": ratio,
              "agreement": check}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=2, default=str))
    for r in rows:
        print(f"{r['marginalize']:<5} wall {r['wall_s']:7.1f} s  min ESS {r['min_ess_bulk']:7.0f}"
              f" ({r['min_ess_parameter']})  ESS/s {r['min_ess_per_s']:6.2f}  R-hat "
              f"{r['max_r_hat']:.3f}  div {r['divergences']}  load {r['load_before'][0]:.1f}")
    print(f"auto / none min ESS per s: {ratio:.2f}")
    print(json.dumps(check, indent=2))
    write_report(record)
    print(f"wrote {OUT}")


def write_report(record: dict) -> None:
    """``distributional.md`` from the JSON record."""
    rows = record["fits"]
    table = markdown_table(
        ["marginalize", "centering", "wall s", "min bulk ESS (at)", "min ESS/s", "max R-hat",
         "divergences", "load avg (1 min) at start"],
        [[r["marginalize"], r.get("centering", "auto"), f"{r['wall_s']:.0f}",
          f"{r['min_ess_bulk']:.0f} ({r['min_ess_parameter']})", f"{r['min_ess_per_s']:.2f}",
          f"{r['max_r_hat']:.3f}", r["divergences"], f"{r['load_before'][0]:.1f}"]
         for r in rows])
    a, s = record["agreement"], record["settings"]
    text = (
        "Generated by `python benchmarks/distributional.py`. "
        f"{environment_line(record['environment'])} "
        f"df_stroop ({record['n_obs']} observations, 50 subjects), "
        f"`{record['formula'][0]}` with `{record['formula'][1]}` (c = +1 incongruent, -1 "
        f"congruent); {s['chains']} chains x {s['draws']} draws after {s['warmup']} warm-up, "
        "each fit from a cold start (compilation included), one run, one after the other on a "
        "shared, noisy machine (the load average is recorded).\n\n"
        f"{table}\n\n"
        f"`auto` / `none` min ESS per second: {record['auto_over_none_min_ess_per_s']:.2f}. "
        f"Agreement over all {a['n_parameters']} posterior scalars (fixed effects, sds, "
        "correlations, every random effect of the mean and of log sigma): largest difference "
        f"of means {a['max_z']:.2f} combined MCSEs (at `{a['max_z_parameter']}`; "
        f"{a['n_means_beyond_4_mcse']} beyond 4), largest relative difference of posterior sds "
        f"{100 * a['max_sd_deviation']:.1f} % (at `{a['max_sd_parameter']}`; "
        f"{a['n_sds_beyond_10pct']} beyond 10 %).\n"
        + (CENTERED_TEXT if len(rows) > 2 else "")
    )
    (OUT.parent / "distributional.md").write_text(text)


if __name__ == "__main__":
    main()
