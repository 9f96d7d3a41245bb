"""Time of one jitted value-and-gradient of the marginal log-density against N.

Prints a table and writes ``benchmarks/results/kernels.json``:

- one grouping term (d = 2, 20 observations per level) and two crossed terms (d = 2 subjects
  with 50 observations each, 1 + x items with 100 levels), N = 10^3 ... 10^6, residuals given
  per observation (the N-dependent path);
- the naive dense computation (Cholesky of the N x N covariance) where it fits in memory;
- the log-log slope of time against N for the one-term kernel (linear time means ~1);
- the one-term kernel with a per-observation residual sd ``sigma_i = exp(a + b x_i)`` (a
  distributional model: the weighted Gram blocks recomputed per evaluation) and its slope;
- the Laplace-reparameterized density of a bernoulli response (`lmmhmc.laplace`,
  bernoulli's ``newton_steps`` Newton steps) for the one-term design, and its slope
  (``--laplace`` runs only these rows and adds them to the existing JSON);
- InstEval ``y ~ service + (1 | s) + (1 | d) + (1 | dept)``: one joint evaluation with its
  gradient, and the full ML fit.

Usage: ``python benchmarks/kernels.py [--quick] [--laplace]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from common import environment_line, markdown_table

import lmmhmc
from lmmhmc.families import Bernoulli
from lmmhmc.laplace import reparameterized
from lmmhmc.marginal import prepare
from lmmhmc.ml import fit_ml
from lmmhmc.plan import elimination

OUT = Path(__file__).parent / "results" / "kernels.json"
#: Label of the rows with a per-observation residual sd.
DISTRIBUTIONAL = "1, sigma_i"


@dataclass
class Term:
    index: np.ndarray
    block: np.ndarray
    n_levels: int


def simulate_terms(n_obs: int, crossed: bool, rng) -> list[Term]:
    x = rng.normal(size=n_obs)
    block = np.column_stack([np.ones(n_obs), x])
    subj = np.arange(n_obs) // 20 if not crossed else np.arange(n_obs) // 50
    terms = [Term(subj.astype(np.int32), block, int(subj.max()) + 1)]
    if crossed:
        item = rng.integers(0, 100, n_obs)
        terms.append(Term(item.astype(np.int32), block, 100))
    return terms


def best_time(fn, *args, repeat: int = 5) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return min(times)


def kernel_time(terms, r, x=None) -> float:
    """Best time of one jitted value-and-gradient of the joint marginal log-density; with
    ``x``, a distributional model's per-observation sd ``sigma_i = exp(a + b x_i)`` (the
    weighted Gram blocks recomputed per evaluation)."""
    kernel = prepare(terms, elimination=elimination(terms))
    dims = [np.asarray(t.block).shape[1] for t in terms]

    def f(theta, kernel):
        lam = jnp.array([[theta[0], 0.0], [theta[1], theta[2]]])
        sigma = jnp.exp(theta[3] if x is None else theta[3] + theta[4] * x)
        return kernel.log_density(r, sigma, [lam[:d, :d] for d in dims])

    return best_time(jax.jit(jax.value_and_grad(f)), jnp.array([1.0, 0.2, 0.5, 0.0, 0.1]),
                     kernel)


def laplace_time(terms, rng) -> float:
    """Best time of one jitted value-and-gradient of the reparameterized bernoulli density."""
    kernel = prepare(terms)
    n_obs = len(terms[0].index)
    y = jnp.asarray((rng.random(n_obs) < 0.5).astype(float))
    index, block = [jnp.asarray(t.index) for t in terms], [jnp.asarray(t.block) for t in terms]
    z = [jnp.asarray(rng.normal(size=(t.n_levels, 2))) for t in terms]

    def f(theta, kernel, z):
        lam = jnp.array([[theta[0], 0.0], [theta[1], theta[2]]])
        eta0 = jnp.full(n_obs, theta[3])
        return reparameterized(kernel, Bernoulli(), y, jnp.ones(n_obs), eta0, index, block,
                               [lam] * len(terms), z, Bernoulli.newton_steps)[1]

    return best_time(jax.jit(jax.value_and_grad(f)), jnp.array([1.0, 0.2, 0.5, 0.0]), kernel, z)


def laplace_rows(sizes) -> tuple[list[dict], float]:
    """The reparameterized density's time against N (one term) and its log-log slope."""
    rng = np.random.default_rng(1)
    rows = []
    for n in sizes:
        t = laplace_time(simulate_terms(n, False, rng), rng)
        rows.append({"n_obs": n, "laplace_s": t, "newton_steps": Bernoulli.newton_steps})
        print(f"{n:>9} laplace (K = {Bernoulli.newton_steps}) {t * 1e3:10.3f} ms")
    big = [r for r in rows if r["n_obs"] >= 10_000]
    slope = float(np.polyfit(np.log([r["n_obs"] for r in big]),
                             np.log([r["laplace_s"] for r in big]), 1)[0])
    return rows, slope


def dense_time(terms, r) -> float:
    """The naive reference: build Sigma = sigma^2 I + Z G Z^T densely, Cholesky, solve."""
    n = len(r)
    zs = []
    for t in terms:
        z = np.zeros((n, t.n_levels * 2))
        z[np.arange(n)[:, None], t.index[:, None] * 2 + np.arange(2)] = t.block
        zs.append(jnp.asarray(z))

    def f(theta):
        lam = jnp.array([[theta[0], 0.0], [theta[1], theta[2]]])
        cov = jnp.exp(2 * theta[3]) * jnp.eye(n)
        for z, t in zip(zs, terms, strict=True):
            zl = (z.reshape(n, t.n_levels, 2) @ lam).reshape(n, -1)
            cov = cov + zl @ zl.T
        chol = jnp.linalg.cholesky(cov)
        x = jax.scipy.linalg.solve_triangular(chol, r, lower=True)
        return -jnp.sum(jnp.log(jnp.diagonal(chol))) - 0.5 * x @ x

    return best_time(jax.jit(jax.value_and_grad(f)), jnp.array([1.0, 0.2, 0.5, 0.0]), repeat=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N up to 10^5 only")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite kernels.md from the existing kernels.json")
    parser.add_argument("--laplace", action="store_true",
                        help="measure only the Laplace-reparameterized rows, added to the JSON")
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads(OUT.read_text()))
        return
    load_before = os.getloadavg()
    sizes = [1_000, 10_000, 100_000] + ([] if args.quick else [1_000_000])
    if args.laplace:
        record = json.loads(OUT.read_text())
        record["laplace_rows"], record["slope_laplace"] = laplace_rows(sizes)
        OUT.write_text(json.dumps(record, indent=2))
        write_report(record)
        return
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'N':>9} {'terms':>7} {'kernel ms':>10} {'dense ms':>9}")
    for n in sizes:
        for crossed in (False, True):
            terms = simulate_terms(n, crossed, rng)
            r = jnp.asarray(rng.normal(size=n))
            t_kernel = kernel_time(terms, r)
            t_dense = dense_time(terms, r) if n <= 4_000 else None
            label = "2 crossed" if crossed else "1"
            rows.append({"n_obs": n, "terms": label, "kernel_s": t_kernel, "dense_s": t_dense})
            dense = f"{t_dense * 1e3:9.2f}" if t_dense is not None else f"{'-':>9}"
            print(f"{n:>9} {label:>7} {t_kernel * 1e3:10.3f} {dense}")
        terms = simulate_terms(n, False, rng)
        t_dist = kernel_time(terms, jnp.asarray(rng.normal(size=n)), terms[0].block[:, 1])
        rows.append({"n_obs": n, "terms": DISTRIBUTIONAL, "kernel_s": t_dist, "dense_s": None})
        print(f"{n:>9} {DISTRIBUTIONAL:>7} {t_dist * 1e3:10.3f} {'-':>9}")
    slope = _slope(rows, "1", 10_000)
    slope_dist = _slope(rows, DISTRIBUTIONAL, 1_000)
    print(f"log-log slope of the one-term kernel (N >= 10^4): {slope:.2f}; with sigma_i "
          f"(N >= 10^3): {slope_dist:.2f}")

    data = lmmhmc.datasets.load("InstEval")
    design = lmmhmc.Model("y ~ service + (1 | s) + (1 | d) + (1 | dept)", data).design
    r = jnp.asarray(design.y - design.y.mean())
    t_joint = kernel_time(design.terms, r)
    t0 = time.perf_counter()
    ml = fit_ml(design)
    t_ml = time.perf_counter() - t0
    print(f"InstEval joint kernel (3 terms, 4114 effects) value+grad: {t_joint * 1e3:.1f} ms")
    print(f"InstEval ML fit: {t_ml:.1f} s, deviance {ml.objective:.4f}, sigma {ml.sigma:.4f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "machine": platform.processor() or platform.machine(),
        "cpus": jax.local_device_count(),
        "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "slope_one_term": slope,
        "slope_distributional": slope_dist,
        "insteval_joint_value_grad_s": t_joint,
        "insteval_ml_s": t_ml,
        "insteval_ml_deviance": ml.objective,
    }, indent=2))
    write_report(json.loads(OUT.read_text()))
    print(f"wrote {OUT}")


def _slope(rows: list[dict], terms: str, n_min: int) -> float:
    """Log-log slope of the kernel time against N of the rows of ``terms``, N >= n_min."""
    sel = [r for r in rows if r["terms"] == terms and r["n_obs"] >= n_min]
    return float(np.polyfit(np.log([r["n_obs"] for r in sel]),
                            np.log([r["kernel_s"] for r in sel]), 1)[0])


def _load_line(record: dict) -> str:
    """The load averages (1 min) around the run, when recorded."""
    if "load_average_before" not in record:
        return ""
    before, after = record["load_average_before"][0], record["load_average_after"][0]
    return (f"Load average (1 min) {before:.1f} at the start, {after:.1f} at the end, on a "
            "shared machine: the times are noisy. ")


def write_report(record: dict) -> None:
    """``kernels.md`` from the JSON record."""
    table = markdown_table(
        ["N", "terms", "marginal kernel ms", "dense Cholesky ms"],
        [[f"{r['n_obs']:,}", r["terms"], f"{r['kernel_s'] * 1e3:.3f}",
          "-" if r["dense_s"] is None else f"{r['dense_s'] * 1e3:.1f}"] for r in record["rows"]],
    )
    env = {"machine": record["machine"], "cpu_devices": record["cpus"], "jax": record["jax"],
           "date": record["date"]}
    text = (
        f"Generated by `python benchmarks/kernels.py`. {environment_line(env)} One jitted "
        "value-and-gradient of the marginal log-density, residuals given per observation "
        "(best of 5).\n\n"
        f"{table}\n\n"
        f"{_load_line(record)}"
        f"Log-log slope of the one-term kernel for N >= 10^4: {record['slope_one_term']:.2f}. "
        f"Rows `{DISTRIBUTIONAL}`: the one-term kernel with a per-observation residual sd "
        "`sigma_i = exp(a + b x_i)` (a distributional model: the weighted Gram blocks are "
        "recomputed by segment sums in every evaluation); log-log slope for N >= 10^3: "
        f"{record.get('slope_distributional', float('nan')):.2f}. "
        f"InstEval `y ~ service + (1 | s) + (1 | d) + (1 | dept)` (4114 effects, all three "
        f"terms jointly): {record['insteval_joint_value_grad_s'] * 1e3:.0f} ms per value and "
        f"gradient; ML fit {record['insteval_ml_s']:.1f} s, deviance "
        f"{record['insteval_ml_deviance']:.4f}.\n"
    )
    if "laplace_rows" in record:
        laplace = markdown_table(
            ["N", "Laplace-reparameterized bernoulli density ms"],
            [[f"{r['n_obs']:,}", f"{r['laplace_s'] * 1e3:.3f}"] for r in record["laplace_rows"]])
        text += (
            f"\nThe exact Laplace reparameterization of a bernoulli response (one term, d = 2, "
            f"K = {record['laplace_rows'][0].get('newton_steps', 4)} Newton steps, each "
            f"reweighting and factoring the kernel; "
            f"`python benchmarks/kernels.py --laplace`, measured on a shared machine):\n\n"
            f"{laplace}\n\nLog-log slope for N >= 10^4: {record['slope_laplace']:.2f}.\n")
    (OUT.parent / "kernels.md").write_text(text)


if __name__ == "__main__":
    main()
