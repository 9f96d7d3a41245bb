"""Shared measurement of one lmmhmc fit for the benchmark scripts."""

from __future__ import annotations

import argparse
import os
import platform
import time

import arviz as az
import jax
import numpy as np

import lmmhmc

# Wall times include compilation: measure cold compiles, not hits of the persistent cache.
os.environ.setdefault("LMMHMC_CACHE_DIR", "off")


def cold() -> None:
    """Forget compiled functions, so that the next fit pays its own compilation."""
    jax.clear_caches()


def measure(formula: str, data, marginalize="auto", *, start_cold: bool = True,
            **fit_kwargs) -> dict:
    """Fit once and record wall time, divergences, ESS (all parameters, random effects too).

    Wall time includes compilation (a cold start unless ``start_cold=False``: nothing
    compiled by earlier fits is reused), the ML start and the recovery of the random effects.
    """
    if start_cold:
        cold()
    t0 = time.perf_counter()
    # allow_one_per_level: the paper's grouseticks model has an observation-level (1 | INDEX)
    res = lmmhmc.fit(formula, data, marginalize=marginalize, progress=False,
                     allow_one_per_level=True, **fit_kwargs)
    wall = time.perf_counter() - t0
    summ = az.summary(res.idata, var_names=res.parameter_names(True), kind="diagnostics",
                      round_to="none")
    ess = summ["ess_bulk"].to_numpy()
    n_steps = res.idata.sample_stats["n_steps"].to_numpy()
    iterations = res.settings["chains"] * (res.settings["draws"] + res.settings["warmup"])
    return {
        "formula": formula,
        "marginalize": marginalize if isinstance(marginalize, str) else list(marginalize),
        "plan": str(res.plan),
        "wall_s": wall,
        "sampling_s": res.timings["sampling"],
        "recovery_s": res.timings["recovery"],
        "init_s": res.timings["init"],
        "gradient_evals_warmup": res.gradients.get("warmup"),
        "iterations_per_s": iterations / res.timings["sampling"],
        "gradient_evals_sampling": int(n_steps.sum()),
        "divergences": res.n_divergences,
        "min_ess_bulk": float(ess.min()),
        "median_ess_bulk": float(np.median(ess)),
        "min_ess_per_s": float(ess.min() / wall),
        "min_ess_per_draw": float(ess.min() / (res.settings["chains"] * res.settings["draws"])),
        "max_r_hat": float(summ["r_hat"].max()),
        "max_r_hat_parameter": str(summ["r_hat"].idxmax()),
        "n_parameters": int(len(ess)),
        "min_ess_parameter": str(summ["ess_bulk"].idxmin()),
        "min_ess_tail": float(summ["ess_tail"].min()) if "ess_tail" in summ else None,
        "marginalized": [res.plan.labels[k] for k in res.plan.marginalized],
        "sampled_dims": int(res.plan.sampled_dims),
        "chain_method": res.settings.get("chain_method"),
        "dense_mass": res.settings.get("dense_mass"),
    }


def environment() -> dict:
    """Machine, versions and date for the JSON records."""
    import numpyro

    return {
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "cpu_devices": jax.local_device_count(),
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "arviz": az.__version__,
        "lmmhmc": lmmhmc.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def environment_line(env: dict) -> str:
    """One sentence naming the machine, versions and date of a benchmark record."""
    where = (f"{env['cores']} cores" if "cores" in env
             else f"{env.get('cpu_devices', '?')} JAX CPU device(s)")
    return (f"Measured on {env.get('machine', '?')} ({where}), jax {env.get('jax')}, "
            f"{env.get('date')}.")


def fit_parser(doc: str, draws: int = 1000) -> argparse.ArgumentParser:
    """The arguments every fitting benchmark takes: ``--draws`` (also the warm-up, per chain),
    ``--chains``, ``--seed`` and ``--report-only`` (rewrite the report from the JSON); a script
    adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--draws", type=int, default=draws, help="draws and warm-up per chain")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the markdown report from the existing JSON without fitting")
    return parser


def fit_settings(args: argparse.Namespace) -> dict:
    """The sampler settings of `fit_parser`'s arguments."""
    return dict(chains=args.chains, draws=args.draws, warmup=args.draws, seed=args.seed)
