"""The Laplace reparameterization's Newton iteration: steps ``K`` and start, measured.

For each data set of `glmm.py` and each setting (``marginalize="none"``, then ``K`` Newton
steps from the ML fit's conditional modes, or from 0): one fit (4 chains, same seed), its
smallest bulk ESS over every parameter and random effect per 1000 gradients, and the time of
one value-and-gradient of the log density inside a compiled loop (the shortest of 5 rounds of
200, every setting timed in each round: interleaved). ESS per second of gradient time is
their quotient: what the setting buys for the sampler's cost of the density (the sampler's own
work per leapfrog step comes on top, the same for every setting).

The setting is chosen through the families' ``newton_steps`` (`lmmhmc.families.FAMILIES`,
replaced while the benchmark builds the fits) and the ML start of the iteration can be
switched off; the library uses each family's ``newton_steps`` from the ML modes.

Writes ``benchmarks/results/newton_steps.json`` and ``newton_steps.md``.

Usage: ``python benchmarks/newton_steps.py [--cases cbpp grouseticks] [--draws 500] [--append]
[--settings 0:ml 2:ml 4:zero ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from common import environment, environment_line, markdown_table
from glmm import cases
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import potential_energy

import lmmhmc
import lmmhmc.fitting
from lmmhmc.families import FAMILIES
from lmmhmc.starts import anchored_priors, ml_init

OUT = Path(__file__).parent / "results" / "newton_steps.json"
#: (K, from the ML modes) per setting; K = 0: marginalize="none".
SETTINGS = [(0, False), (1, True), (2, True), (3, True), (4, True), (6, True), (1, False),
            (4, False)]
ROUNDS, LOOP = 5, 200


@contextmanager
def newton(steps: int, ml_start: bool):
    """Fits built with ``steps`` Newton steps, from the ML modes or from 0."""
    families, start = dict(FAMILIES), lmmhmc.fitting.newton_start
    FAMILIES.update({name: replace(f, newton_steps=max(steps, 1)) for name, f in families.items()})
    if not ml_start:
        lmmhmc.fitting.newton_start = lambda assembled, ml: assembled
    try:
        yield
    finally:
        FAMILIES.update(families)
        lmmhmc.fitting.newton_start = start


def gradient_loop(res):
    """A compiled loop of `LOOP` value-and-gradients of ``res``'s density at its ML start."""
    a = res.assembled
    priors = anchored_priors(a, res.ml)
    z0 = jax.tree.map(lambda x: x[0], ml_init(a, priors, res.ml, 1, jax.random.key(0)))
    flat, unravel = ravel_pytree(z0)
    model = a.numpyro_model()
    value_and_grad = jax.value_and_grad(
        lambda x: potential_energy(model, (a.data, priors), {}, unravel(x)))

    @jax.jit
    def loop(x):
        def body(i, acc):
            v, g = value_and_grad(x + 1e-9 * i)
            return acc + v + jnp.sum(g)  # every component: XLA drops an unused one
        return jax.lax.fori_loop(0, LOOP, body, 0.0)

    loop(flat).block_until_ready()
    return lambda: loop(flat).block_until_ready()


def run_case(name: str, draws: int, settings: list[tuple[int, bool]]) -> list[dict]:
    formula, data, family = cases()[name]
    rows, loops = [], []
    for steps, ml_start in settings:
        with newton(steps, ml_start):
            res = lmmhmc.fit(formula, data, family=family,
                             marginalize="auto" if steps else "none", chains=4, draws=draws,
                             warmup=draws, seed=0, progress=False)
        summ = az.summary(res.idata, var_names=res.parameter_names(True), round_to="none")
        ess = float(summ["ess_bulk"].min())
        rows.append({"K": steps, "ml_start": ml_start, "min_ess_bulk": ess,
                     "gradients": res.gradients, "sampling_s": res.timings["sampling"],
                     "ess_per_1000_gradients": 1000 * ess / res.gradients["sampling"],
                     "divergences": res.n_divergences, "load_average": os.getloadavg()[0]})
        loops.append(gradient_loop(res))
        print(name, steps, ml_start, f"ESS {ess:.0f}",
              f"{rows[-1]['ess_per_1000_gradients']:.0f} per 1000 gradients", flush=True)
    best = [np.inf] * len(loops)
    for _ in range(ROUNDS):
        for i, loop in enumerate(loops):
            t0 = time.perf_counter()
            loop()
            best[i] = min(best[i], (time.perf_counter() - t0) / LOOP)
    for row, t in zip(rows, best, strict=True):
        row["gradient_us"] = 1e6 * t
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", nargs="+", default=["cbpp", "grouseticks"])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--settings", nargs="+", default=None,
                        help="K:ml or K:zero per setting (K = 0: none); default all")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--append", action="store_true",
                        help="keep the other data sets' results of the JSON")
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads(OUT.read_text()))
        return
    settings = SETTINGS if args.settings is None else [
        (int(k), where == "ml") for k, where in (x.split(":") for x in args.settings)]
    record = {"environment": environment(), "draws": args.draws, "cases": {}}
    if args.append and OUT.exists():
        record["cases"] = json.loads(OUT.read_text())["cases"]
    for name in args.cases:
        load_before = os.getloadavg()[0]
        record["cases"][name] = {"rows": run_case(name, args.draws, settings),
                                 "load_average": [load_before, os.getloadavg()[0]]}
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(record, indent=2))
    write_report(record)
    print(f"wrote {OUT}")


def write_report(record: dict) -> None:
    rows = []
    for name, case in record["cases"].items():
        for i, r in enumerate(case["rows"]):
            setting = ("none (non-centered)" if r["K"] == 0 else
                       f"K = {r['K']} from {'the ML modes' if r['ml_start'] else '0'}")
            lo, hi = case["load_average"]
            rows.append([name if i == 0 else "", setting, f"{r['min_ess_bulk']:.0f}",
                         f"{r['ess_per_1000_gradients']:.0f}", f"{r['gradient_us']:.1f}",
                         f"{r['ess_per_1000_gradients'] / (1e-3 * r['gradient_us']):.0f}",
                         r["divergences"],
                         f"{lo:.1f}-{hi:.1f}" if i == 0 else ""])
    table = markdown_table(["data", "setting", "min bulk ESS", "ESS per 1000 gradients",
                            "us per gradient", "ESS per s of gradients", "divergences",
                            "load avg"], rows)
    text = (f"4 chains x ({record['draws']} warm-up + {record['draws']} draws), seed 0. "
            "ESS: the smallest bulk ESS over every parameter and random effect. Time per "
            "value-and-gradient of the log density in a compiled loop, the shortest of "
            f"{ROUNDS} interleaved rounds; the machine was shared (load average in the "
            "table).\n\n" f"{table}\n\n{environment_line(record['environment'])}\n")
    (OUT.parent / "newton_steps.md").write_text(text)


if __name__ == "__main__":
    main()
