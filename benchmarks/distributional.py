"""Distributional stroop (the paper's model): ``auto`` vs ``marginalize="none"``, one run.

    log(RT) ~ c + (1 + c | subj),   sigma ~ c + (1 + c | subj),   c = +1 incongruent, -1 congruent

``auto`` integrates the mean's subject effects out (per-observation residual sds, the Gram
blocks recomputed per gradient); ``none`` samples them. Log sigma's subject effects are sampled
in both, centered where ``centering="auto"`` says so (`lmmhmc.centering`). Two more fits show
the parameterizations' part: ``none`` with ``centering="all"`` (the mean's effects centered
too, ``none``'s best form here) and ``auto`` with ``centering="none"`` (log sigma's effects
non-centered, as brms samples them). The fits run one after the other in the same process, with
the same chains, draws, warm-up and seed, each from a cold start (compilation included in the
wall time). Checks: every posterior scalar (fixed effects, sds, correlations, every random
effect of both parts) has means within 4 combined MCSEs and sds within 10 %; reports min bulk
ESS per second. Writes ``benchmarks/results/distributional.json``; the machine is shared and
noisy, so the load average before and after is recorded.

Usage: ``python benchmarks/distributional.py [--draws 1000] [--chains 4]``; ``--gradients``
adds the time of one gradient of each plan's potential to the existing JSON.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from common import cold, environment, environment_line, fit_parser, fit_settings, markdown_table

import lmmhmc

OUT = Path(__file__).parent / "results" / "distributional.json"
GRADIENT_TEXT = (
    "\nOne value-and-gradient of the sampler's potential (`--gradients`: best of 7 compiled "
    "loops of 200, load average {load:.1f}): `auto` {auto:.3f} ms (the weighted Gram blocks "
    "recomputed), `none` {none:.3f} ms; the gradients per iteration are in the JSON.\n")
CENTERED_TEXT = (
    "\nThe first two rows are the defaults (`centering=\"auto\"`: log sigma's subject effects "
    "centered, each subject's site its whole coefficient `gamma + v_j`; the mean's, in `none`, "
    "non-centered). The third row centers the mean's subject effects in `none` as well, the "
    "fourth samples log sigma's non-centered in `auto`, as brms and bambi do.\n")
#: The fits: (marginalize, centering); the first two are the defaults compared.
FITS = (("auto", "auto"), ("none", "auto"), ("none", "all"), ("auto", "none"))
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


def gradient_ms(data, marginalize: str, repeat: int = 7, loop: int = 200) -> float:
    """Best time (ms) of one value-and-gradient of the sampler's potential, in a compiled loop
    of ``loop`` evaluations (no dispatch per call), at a draw from the prior."""
    from numpyro.infer.util import potential_energy

    from lmmhmc.assembled import assemble
    from lmmhmc.plan import make_plan
    from lmmhmc.priors import resolve_priors
    from lmmhmc.starts import anchored_priors, prior_init

    design = lmmhmc.Model([MEAN, SIGMA], data).design
    model = assemble(design, make_plan(design, marginalize), resolve_priors(design, None))
    priors = anchored_priors(model, None)
    z = jax.tree.map(lambda a: a[0], prior_init(model, priors, 1, jax.random.key(0)))
    value_and_grad = jax.value_and_grad(
        lambda z, d, p: potential_energy(model.numpyro_model(), (d, p), {}, z))

    def run_loop(z, data, priors):
        def body(i, acc):  # the point moves with acc: nothing is hoisted out of the loop
            value, grad = value_and_grad(jax.tree.map(lambda a: a + 1e-12 * acc, z), data,
                                         priors)
            # the gradient enters the result, or XLA drops it as dead code
            return acc + 1e-12 * (value + sum(jnp.sum(g) for g in jax.tree.leaves(grad)))

        return jax.lax.fori_loop(0, loop, body, 0.0)

    run_loop = jax.jit(run_loop)
    jax.block_until_ready(run_loop(z, model.data, priors))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(run_loop(z, model.data, priors))
        times.append((time.perf_counter() - t0) / loop)
    return 1e3 * min(times)


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
    parser.add_argument("--gradients", action="store_true",
                        help="only measure the cost of one gradient of each plan's potential "
                        "and add it to the existing JSON")
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads(OUT.read_text()))
        return
    if args.gradients:
        record = json.loads(OUT.read_text())
        load = os.getloadavg()
        record["gradient_ms"] = {m: gradient_ms(stroop(), m) for m in ("auto", "none")}
        record["gradient_load"] = [load, os.getloadavg()]
        OUT.write_text(json.dumps(record, indent=2, default=str))
        print(record["gradient_ms"], record["gradient_load"])
        write_report(record)
        return
    kw = fit_settings(args)
    data = stroop()
    fits = [run(data, m, kw, centering=c) for m, c in FITS]
    summ_a, summ_n = fits[0][1], fits[1][1]
    check = agreement(summ_a, summ_n.loc[summ_a.index])
    rows = [f[2] for f in fits]
    ratio = rows[0]["min_ess_per_s"] / rows[1]["min_ess_per_s"]
    record = {"environment": environment(), "settings": kw, "formula": [MEAN, SIGMA],
              "n_obs": len(data), "fits": rows, "auto_over_none_min_ess_per_s": ratio,
              "agreement": check}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=2, default=str))
    for r in rows:
        print(f"{r['marginalize']:<5} {r['centering']:<5} wall {r['wall_s']:7.1f} s  "
              f"min ESS {r['min_ess_bulk']:7.0f}"
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
        + (GRADIENT_TEXT.format(**record["gradient_ms"], load=record["gradient_load"][0][0])
           if "gradient_ms" in record else "")
    )
    (OUT.parent / "distributional.md").write_text(text)


if __name__ == "__main__":
    main()
