"""fit() speed: sleepstudy end to end, and marginalized vs non-marginalized on df_dillonE1.

Prints a table and writes ``benchmarks/results/fit.json``. Every method runs with the same
chains, draws, warm-up and seed; wall time includes compilation. ESS is the minimum bulk ESS
over every parameter: fixed effects, sigma, sds, correlations and every random effect.

Usage: ``python benchmarks/fit.py [--draws 1000] [--plans auto none subj item]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import environment, measure

import lmmhmc

OUT = Path(__file__).parent / "results" / "fit.json"
DILLON = "log(rt) ~ int + (1 + int | subj) + (1 + int | item)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plans", nargs="+", default=["auto", "none"])
    args = parser.parse_args()
    kw = dict(chains=args.chains, draws=args.draws, warmup=args.draws, seed=args.seed)

    sleep = lmmhmc.datasets.load("sleepstudy")
    first = measure("Reaction ~ Days + (Days | Subject)", sleep, **kw)
    second = measure("Reaction ~ Days + (Days | Subject)", sleep, **kw)
    print(f"sleepstudy end to end: {first['wall_s']:.1f} s (first fit, compilation included), "
          f"{second['wall_s']:.1f} s (same structure again)")

    data = lmmhmc.datasets.load("df_dillonE1")
    rows = []
    for plan in args.plans:
        marg = plan if plan in ("auto", "none", "all") else [plan]
        rows.append(measure(DILLON, data, marg, **kw))
    base = next((r for r in rows if r["marginalize"] == "none"), None)
    print(f"\ndf_dillonE1: {DILLON}")
    head = f"{'plan':<8}{'wall s':>8}{'min ESS':>9}{'ESS/s':>8}{'vs none':>8}{'div':>5}{'R-hat':>7}"
    print(head)
    for r in rows:
        ratio = r["min_ess_per_s"] / base["min_ess_per_s"] if base else float("nan")
        name = r["marginalize"] if isinstance(r["marginalize"], str) else r["marginalize"][0]
        print(f"{name:<8}{r['wall_s']:8.1f}{r['min_ess_bulk']:9.0f}{r['min_ess_per_s']:8.1f}"
              f"{ratio:8.2f}{r['divergences']:5d}{r['max_r_hat']:7.3f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"environment": environment(), "settings": kw,
                               "sleepstudy": [first, second], "dillonE1": rows}, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
