"""The paper's experiments: lmmhmc with and without marginalization, and bambi, per data set.

For each data set and formula (the cognitive-science data of Lai, Domke & Sheldon, NeurIPS 2024,
plus sleepstudy, grouseticks and InstEval) this fits

- lmmhmc ``marginalize="auto"`` (the plan the cost model picks),
- lmmhmc with each single grouping term marginalized, ``marginalize=[term]`` (the paper's M1,
  M2; left out where it is the same plan as ``auto``),
- lmmhmc ``marginalize="none"``: every random effect sampled non-centered, the parameterization
  brms and bambi use,
- bambi with its default PyMC NUTS sampler on the same formula and data (skipped with a message
  when bambi cannot be imported: ``pip install -e ".[bench]"``),

all with 4 chains and the same warm-up, draws and seeds; lmmhmc uses its default priors, bambi
its own. Every run starts cold (JAX caches cleared), so wall time is compilation + ML start +
sampling + recovery of the random effects (lmmhmc) or model build + compilation + sampling
(bambi). ESS is the bulk ESS over every parameter, each random effect included.

``--scaling`` adds the two large data sets (``df_eeg_complete``, ``df_stroop_complete``, read
from ``../shared/data/paper`` next to the repository, skipped when absent), subsampled to
several numbers of subjects and fitted with ``auto`` and ``none``: wall time per effective
sample against N.

Writes ``benchmarks/results/<stem>.json`` (stem ``paper``, or ``paper_quick`` with ``--quick``)
after every run, then ``<stem>.md`` (tables) and ``<stem>_*.png`` (plots) from that JSON.

Usage::

    python benchmarks/paper.py --quick          # sleepstudy and df_dillonE1, ~5 minutes
    python benchmarks/paper.py                  # everything, 3 seeds (about an hour)
    python benchmarks/paper.py --scaling        # ... plus the scaling study
    python benchmarks/paper.py --report-only    # markdown and plots from the existing JSON
    python benchmarks/paper.py --datasets df_eeg --seeds 1 --out paper_eeg

Both samplers run with their own defaults for parallelism: on a CPU JAX sees one device, so
lmmhmc's ``chain_method="auto"`` runs the chains one after the other, and PyMC uses
``min(4, CPUs // 2)`` processes. ``--host-devices 4`` exposes 4 JAX host devices (chains in
parallel; set through XLA_FLAGS before JAX is imported) and ``--bambi-cores N`` gives PyMC N
processes. lmmhmc's persistent JAX compilation cache is off for the runs
(``LMMHMC_CACHE_DIR=off``, as in common.py) unless LMMHMC_CACHE_DIR names a folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

# jax, lmmhmc and common are imported where they are used: --host-devices must reach XLA_FLAGS
# before JAX is imported, and PyMC's worker processes (forkserver) import this module again.

CHAINS = 4
REPO = Path(__file__).resolve().parents[1]
# benchmark the checkout this script lives in, not whichever lmmhmc is installed
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = Path(__file__).resolve().parent / "results"
PAPER_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "paper"

EEG = "n400 ~ center(cloze) + (1 + center(cloze) | subj) + (1 + center(cloze) | item)"
STROOP = "log(RT) ~ condition + (1 + condition | subj)"


@dataclass(frozen=True)
class Spec:
    """One data set and its model."""

    name: str
    formula: str
    label: str  # the paper's name for it, or where it comes from
    source: str = "bundled"  # "bundled" (lmmhmc.datasets) or "paper" (PAPER_DATA/<name>.csv)
    factors: tuple[str, ...] = ()  # columns to read as factors (source "paper")
    subjects: tuple[int | None, ...] = ()  # scaling: numbers of subjects (None: all)
    keep: str | None = None  # rows to keep (a pandas query), for responses that need it
    quick_subjects: tuple[int, ...] = ()


DATASETS = [
    Spec("sleepstudy", "Reaction ~ Days + (Days | Subject)", "lme4"),
    Spec("df_dillonE1", "log(rt) ~ int + (1 + int | subj) + (1 + int | item)", "dillonE1"),
    Spec("df_english",
         "NP1 ~ condition + (1 + condition | subject) + (1 + condition | item)", "english"),
    Spec("df_gg05_rc",
         "log(RT) ~ condition + (1 + condition | subj) + (1 + condition | item)", "gg05"),
    Spec("df_gibsonwu", "log(rt) ~ type + (1 + type | subj) + (1 + type | item)", "mandarin"),
    Spec("df_eeg", EEG, "eeg"),
    Spec("df_pupil_complete", "p_size ~ load + (1 + load | subj)", "pupil"),
    Spec("df_stroop", STROOP, "stroop"),
    Spec("grouseticks",
         "np.log(TICKS + 1) ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION) + (1 | INDEX)",
         "lme4"),
    Spec("InstEval", "y ~ service + (1 | s) + (1 | d) + (1 | dept)", "lme4"),
]
QUICK = ("sleepstudy", "df_dillonE1")
SCALING = [
    Spec("df_eeg_complete", EEG, "eeg (complete)", "paper", ("subj", "item", "lab"),
         subjects=(40, 80, 160, None), quick_subjects=(20, 40)),
    Spec("df_stroop_complete", STROOP, "stroop (complete)", "paper", ("subj", "condition"),
         subjects=(50, 200, 800, None), quick_subjects=(25, 50), keep="RT > 0"),
]
#: The speed-up of ``auto`` over ``none`` (min ESS per second) the project aims at.
TARGET_RATIO = 5.0
#: The scaling study leaves out ``none`` above this many observations (hours per fit).
NONE_MAX_OBS = 60_000
#: bambi is skipped above this many observations (its non-centered fit gets very long).
BAMBI_MAX_OBS = 30_000

NOTES = [
    "lmmhmc runs use the package's default priors; bambi uses its own defaults (normal "
    "fixed effects, half-normal group sds, half-Student-t sigma), so its posterior is close "
    "to but not the same as lmmhmc's.",
    "bambi models the terms of `(1 + x | g)` as uncorrelated (no LKJ correlation): its model "
    "has one parameter less per correlated term than lmmhmc's.",
    "`none` is lmmhmc with every random effect sampled non-centered (u = Lambda z, z ~ N(0, I)),"
    " the parameterization brms and bambi use; the random effects of marginalized terms are "
    "drawn exactly from their conditional posterior after sampling, so ESS covers them too.",
    "Wall time covers a cold start: JAX's in-memory caches are cleared before each lmmhmc run "
    "and its persistent compilation cache is off (LMMHMC_CACHE_DIR=off), so it includes "
    "compilation, the ML start, sampling and the recovery of the random effects (no pointwise "
    "log-likelihood); for bambi it includes building the PyMC model, compilation and sampling; "
    "PyTensor keeps its compiled C modules in an on-disk cache, so bambi's compilation is "
    "mostly a cache hit after the first run of a model: a comparison that favours bambi on "
    "small data sets.",
    "df_stroop_complete has a few reaction times of 0 (log(RT) = -inf); the scaling study "
    "keeps the rows with RT > 0.",
    "grouseticks' `(1 | INDEX)` has one observation per level: in a Gaussian model it is "
    "confounded with the residual, so the INDEX sd and sigma are identified only by the prior; "
    "the plans that sample INDEX's effects mix very slowly. Its three terms are nested (INDEX in "
    "BROOD in LOCATION), so `auto` marginalizes all of them in linear time.",
]


# ----------------------------------------------------------------------------- data


def load(spec: Spec) -> pd.DataFrame | None:
    """The data set of ``spec``, or None (with a message) when its CSV is absent."""
    import lmmhmc

    if spec.source == "bundled":
        return lmmhmc.datasets.load(spec.name)
    path = PAPER_DATA / f"{spec.name}.csv"
    if not path.exists():
        print(f"skipping {spec.name}: {path} not found")
        return None
    frame = pd.read_csv(path)
    if spec.keep:
        kept = frame.query(spec.keep)
        print(f"{spec.name}: keeping the {len(kept)} of {len(frame)} rows with {spec.keep}")
        frame = kept
    for col in spec.factors:
        values = frame[col]
        if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
            values = values.astype("Int64")
        frame[col] = values.astype("category")
    return frame


def subsample(frame: pd.DataFrame, n_subjects: int | None, column: str = "subj"):
    """The rows of ``n_subjects`` subjects drawn at random (fixed seed); None keeps all."""
    levels = np.asarray(frame[column].dropna().unique())
    if n_subjects is None or n_subjects >= len(levels):
        return frame, len(levels)
    keep = np.random.default_rng(0).choice(levels, size=n_subjects, replace=False)
    out = frame[frame[column].isin(keep)].copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].cat.remove_unused_categories()
    return out, n_subjects


# ----------------------------------------------------------------------------- runs


def lmmhmc_methods(formula: str, data: pd.DataFrame) -> tuple[list, dict]:
    """(label, marginalize) for auto, each single-term plan and none; aliases left out."""
    import lmmhmc
    from lmmhmc.plan import make_plan

    design = lmmhmc.Model(formula, data).design
    auto = make_plan(design, "auto").marginalized
    methods, aliases = [("auto", "auto")], {}
    for k, term in enumerate(design.terms):
        label = f"[{term.text}]"
        if auto == (k,):
            aliases[label] = "auto"
            continue
        methods.append((label, [term.text]))
    methods.append(("none", "none"))
    return methods, aliases


def run_lmmhmc(formula, data, method, marginalize, seed, settings) -> dict:
    from common import measure

    try:
        rec = measure(formula, data, marginalize, seed=seed, log_likelihood=False, **settings)
    except Exception as err:  # one failing fit must not end an hour-long run
        return {"tool": "lmmhmc", "method": method, "seed": seed, "error": repr(err)}
    return {"tool": "lmmhmc", "method": method, "seed": seed, **rec}


def bambi_formula(formula: str) -> str:
    """lme4/formulaic syntax as bambi (formulae) reads it: ``log(x)`` -> ``np.log(x)``."""
    return re.sub(r"(?<![\w.])log\(", "np.log(", formula)


def bambi_version() -> str | None:
    try:
        import bambi
    except Exception:  # any import failure: not available
        return None
    return bambi.__version__


def run_bambi(formula, data, seed, settings, cores=None) -> dict:
    """bambi's default sampler (PyMC NUTS), measured like :func:`common.measure`."""
    import bambi as bmb

    for name in ("pymc", "pytensor", "bambi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    chains, draws, warmup = settings["chains"], settings["draws"], settings["warmup"]
    bform = bambi_formula(formula)
    try:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = bmb.Model(bform, data)
            # forkserver: the parent has JAX's threads running, which fork() does not survive
            extra = {"cores": cores, "mp_ctx": "forkserver"} if cores else {}
            idata = model.fit(draws=draws, tune=warmup, chains=chains, random_seed=seed,
                              progressbar=False, **extra)
        wall = time.perf_counter() - t0
        summ = az.summary(idata, kind="diagnostics", round_to="none")
    except Exception as err:
        return {"tool": "bambi", "method": "bambi", "seed": seed, "formula": bform,
                "error": repr(err)}
    ess = summ["ess_bulk"].to_numpy()
    sampling = float(idata.posterior.attrs.get("sampling_time", float("nan")))
    stats = idata.sample_stats
    try:
        dims = int(sum(np.size(v) for v in model.backend.model.initial_point().values()))
    except Exception:
        dims = None
    return {
        "tool": "bambi", "method": "bambi", "seed": seed, "formula": bform,
        "marginalize": None, "marginalized": [], "plan": "bambi default (PyMC NUTS, non-centered)",
        "wall_s": wall, "sampling_s": sampling,
        "iterations_per_s": chains * (draws + warmup) / sampling,
        "gradient_evals_sampling": int(stats["n_steps"].sum()),
        "divergences": int(stats["diverging"].sum()),
        "min_ess_bulk": float(ess.min()), "median_ess_bulk": float(np.median(ess)),
        "min_ess_per_s": float(ess.min() / wall),
        "min_ess_per_draw": float(ess.min() / (chains * draws)),
        "max_r_hat": float(summ["r_hat"].max()), "n_parameters": int(len(ess)),
        "min_ess_parameter": str(summ["ess_bulk"].idxmin()),
        "min_ess_tail": float(summ["ess_tail"].min()),
        "sampled_dims": dims,
        "chain_method": f"{cores} processes" if cores else "PyMC default cores",
    }


def short(rec: dict) -> str:
    if "error" in rec:
        return f"ERROR {rec['error'][:200]}"
    return (f"wall {rec['wall_s']:7.1f} s  min ESS {rec['min_ess_bulk']:7.0f}  "
            f"ESS/s {rec['min_ess_per_s']:8.2f}  div {rec['divergences']:3d}  "
            f"R-hat {rec['max_r_hat']:.3f}")


def versions() -> dict:
    import matplotlib
    from common import environment

    env = environment()
    env.update(cpus=os.cpu_count(), xla_flags=os.environ.get("XLA_FLAGS", ""),
               matplotlib=matplotlib.__version__, numpy=np.__version__, pandas=pd.__version__,
               platform=f"{os.uname().sysname} {os.uname().release}")
    import lmmhmc

    env["lmmhmc_path"] = str(Path(lmmhmc.__file__).resolve().parent)
    try:
        import subprocess

        git = ["git", "-C", str(REPO)]
        commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "lmmhmc"], capture_output=True,
                               text=True, check=True).stdout.strip()
        env["git_commit"] = commit + (" (lmmhmc/ modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        env["git_commit"] = None
    env["bambi"] = bambi_version()
    if env["bambi"]:
        import pymc

        env["pymc"] = pymc.__version__
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="sleepstudy and df_dillonE1, 300 warm-up + 300 draws, one seed")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..n-1 (3; quick: 1)")
    parser.add_argument("--draws", type=int, default=None, help="draws per chain (1000; 300)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up per chain (= draws)")
    parser.add_argument("--datasets", nargs="+", default=None, help="names to run (default all)")
    parser.add_argument("--scaling", action="store_true",
                        help="also the scaling study on df_eeg_complete and df_stroop_complete")
    parser.add_argument("--no-bambi", action="store_true", help="leave bambi out")
    parser.add_argument("--host-devices", type=int, default=0,
                        help="expose N JAX CPU devices (chains in parallel); 0: JAX default")
    parser.add_argument("--bambi-cores", type=int, default=None,
                        help="PyMC worker processes (default: PyMC's own choice)")
    parser.add_argument("--report-only", action="store_true",
                        help="regenerate markdown and plots from the existing JSON")
    parser.add_argument("--out", default=None, help="file stem (paper; quick: paper_quick)")
    parser.add_argument("--append", action="store_true",
                        help="add to the existing JSON of the stem, replacing the results of the "
                        "data sets run now (to run the data sets in several sessions)")
    args = parser.parse_args()
    stem = args.out or ("paper_quick" if args.quick else "paper")
    path = RESULTS / f"{stem}.json"
    if args.report_only:
        if not path.exists():
            sys.exit(f"{path} not found: run without --report-only first")
        report(json.loads(path.read_text()), stem)
        return
    if args.host_devices:
        if "jax" in sys.modules:
            print("warning: JAX already imported, --host-devices has no effect")
        flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                       os.environ.get("XLA_FLAGS", ""))
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={args.host_devices}".strip())
    os.environ.setdefault("LMMHMC_CACHE_DIR", "off")  # cold starts (common.py does the same)
    import lmmhmc

    draws = args.draws or (300 if args.quick else 1000)
    settings = dict(chains=CHAINS, draws=draws, warmup=args.warmup or draws)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    names = args.datasets or (list(QUICK) if args.quick else [s.name for s in DATASETS])
    known = {s.name: s for s in DATASETS + SCALING}
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"unknown data sets {unknown}; known: {', '.join(known)}")
    main_specs = [known[n] for n in names if known[n].source == "bundled"]
    scaling_specs = [known[n] for n in names if known[n].source == "paper"]
    if args.scaling and not scaling_specs:
        scaling_specs = SCALING
    elif scaling_specs and not args.scaling:
        print("note: the *_complete data sets run as the scaling study (--scaling implied)")
    if not args.scaling and not scaling_specs and not args.quick:
        print("note: df_eeg_complete and df_stroop_complete run with --scaling")

    with_bambi = not args.no_bambi and bambi_version() is not None
    if not args.no_bambi and not with_bambi:
        print('bambi cannot be imported: skipping it (pip install -e ".[bench]")')

    out = {
        "mode": "quick" if args.quick else "full", "argv": sys.argv[1:],
        "environment": versions(),
        "settings": {**settings, "seeds": seeds, "host_devices": args.host_devices or None,
                     "bambi_cores": args.bambi_cores,
                     "LMMHMC_CACHE_DIR": os.environ.get("LMMHMC_CACHE_DIR")},
        "bambi": "included" if with_bambi else ("left out" if args.no_bambi
                                                 else "not importable: skipped"),
        "notes": NOTES, "datasets": [], "scaling": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.append and path.exists():
        # keep the earlier results of the other data sets (and their run time)
        old = json.loads(path.read_text())
        redo = set(names)
        out["datasets"] = [e for e in old["datasets"] if e["name"] not in redo]
        out["scaling"] = [r for r in old.get("scaling", []) if r["name"] not in redo]
        out["argv"] = old.get("argv", []) + ["+"] + out["argv"]

    def save() -> None:
        path.write_text(json.dumps(out, indent=1, default=str))

    t_start = time.perf_counter()
    for spec in main_specs:
        data = load(spec)
        methods, aliases = lmmhmc_methods(spec.formula, data)
        entry = {"name": spec.name, "label": spec.label, "formula": spec.formula,
                 "n_obs": int(lmmhmc.Model(spec.formula, data).design.n_obs),
                 "aliases": aliases, "seeds": seeds, "runs": []}
        out["datasets"].append(entry)
        print(f"\n{spec.name} (N = {entry['n_obs']}): {spec.formula}")
        for label, same in aliases.items():
            print(f"  {label} is the same plan as {same}: not repeated")
        for seed in seeds:
            for label, marg in methods:
                rec = run_lmmhmc(spec.formula, data, label, marg, seed, settings)
                entry["runs"].append(rec)
                print(f"  seed {seed} {label:<34} {short(rec)}", flush=True)
                save()
            if with_bambi:
                if entry["n_obs"] > BAMBI_MAX_OBS:
                    if seed == seeds[0]:
                        print(f"  bambi skipped: N > {BAMBI_MAX_OBS}")
                        entry["bambi_skipped"] = f"N > {BAMBI_MAX_OBS}"
                    continue
                rec = run_bambi(spec.formula, data, seed, settings, args.bambi_cores)
                entry["runs"].append(rec)
                print(f"  seed {seed} {'bambi':<34} {short(rec)}", flush=True)
                save()

    for spec in scaling_specs:
        full = load(spec)
        if full is None:
            out["scaling"].append({"name": spec.name, "skipped": "data not found"})
            continue
        sizes = spec.quick_subjects if args.quick else spec.subjects
        for n_subj in sizes:
            data, n_subj = subsample(full, n_subj)
            n_obs = int(lmmhmc.Model(spec.formula, data).design.n_obs)
            print(f"\nscaling {spec.name}: {n_subj} subjects, N = {n_obs}")
            for label in ("auto", "none"):
                if label == "none" and n_obs > NONE_MAX_OBS:
                    rec = {"name": spec.name, "n_subjects": n_subj, "n_obs": n_obs,
                           "method": label, "skipped": f"N > {NONE_MAX_OBS:,}"}
                    out["scaling"].append(rec)
                    print(f"  {label:<6} skipped: N > {NONE_MAX_OBS:,}", flush=True)
                    continue
                rec = run_lmmhmc(spec.formula, data, label, label, seeds[0], settings)
                rec.update(name=spec.name, label=spec.label, n_subjects=n_subj, n_obs=n_obs)
                out["scaling"].append(rec)
                print(f"  {label:<6} {short(rec)}", flush=True)
                save()

    out["total_wall_s"] = time.perf_counter() - t_start
    save()
    print(f"\nwrote {path} ({out['total_wall_s']:.0f} s)")
    report(out, stem)


# ----------------------------------------------------------------------------- report


def _total_minutes(out: dict) -> float:
    runs = [r for e in out["datasets"] for r in e["runs"]] + out.get("scaling", [])
    return sum(r.get("wall_s", 0.0) for r in runs) / 60


def _other_seeds(out: dict) -> str:
    """Data sets run with other seeds than the settings say (runs added with --append)."""
    other = [f"{e['name']}: seeds {e['seeds']}" for e in out["datasets"]
             if e.get("seeds", out["settings"]["seeds"]) != out["settings"]["seeds"]]
    return f" ({'; '.join(other)})" if other else ""


def _ok(runs):
    return [r for r in runs if "error" not in r]


def _median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return float(np.median(vals)) if vals else float("nan")


def _fmt(x, digits=1):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _row(cells, width: int) -> str:
    """A markdown table row, padded with empty cells to ``width`` columns."""
    cells = [str(c).replace("|", "\\|") for c in cells] + [""] * (width - len(cells))
    return "| " + " | ".join(cells) + " |"


def _methods(entry) -> list[str]:
    seen = []
    for r in entry["runs"]:
        if r["method"] not in seen:
            seen.append(r["method"])
    return seen


def summarize(entry) -> dict[str, dict]:
    """Per method: medians over seeds (sums for divergences, max for R-hat)."""
    table = {}
    for method in _methods(entry):
        runs = [r for r in entry["runs"] if r["method"] == method]
        ok = _ok(runs)
        row = {"runs": len(runs), "errors": len(runs) - len(ok), "tool": runs[0]["tool"]}
        if ok:
            for key in ("wall_s", "iterations_per_s", "gradient_evals_sampling",
                        "min_ess_bulk", "median_ess_bulk", "min_ess_per_draw",
                        "min_ess_per_s", "sampled_dims"):
                row[key] = _median(ok, key)
            row["min_ess_per_s_range"] = (min(r["min_ess_per_s"] for r in ok),
                                          max(r["min_ess_per_s"] for r in ok))
            row["divergences"] = int(sum(r["divergences"] for r in ok))
            row["max_r_hat"] = max(r["max_r_hat"] for r in ok)
            row["marginalized"] = ok[0].get("marginalized", [])
            row["min_ess_parameter"] = ok[0].get("min_ess_parameter")
        table[method] = row
    return table


def _parallelism(out: dict) -> str:
    """How the chains ran, from the records."""
    runs = [r for e in out["datasets"] for r in e["runs"]] + list(out.get("scaling", []))
    lmm = sorted({r["chain_method"] for r in runs if r.get("tool") == "lmmhmc"
                  and r.get("chain_method")})
    bam = sorted({r["chain_method"] for r in runs if r.get("tool") == "bambi"
                  and r.get("chain_method")})
    env = out["environment"]
    text = (f"Chains: lmmhmc chain_method {', '.join(lmm) or '–'} on {env.get('cpu_devices')} "
            f"JAX CPU device(s)")
    if bam:
        text += f"; bambi/PyMC: {', '.join(bam)}"
    return text + "."


def report(out: dict, stem: str) -> None:
    """Markdown tables and PNG plots from a results dictionary (as written to JSON)."""
    env, st = out["environment"], out["settings"]
    lines = [
        f"# lmmhmc on the paper's data sets ({out['mode']} mode)",
        "",
        f"Generated by `python benchmarks/paper.py {' '.join(out.get('argv', []))}`".rstrip()
        + f" on {env.get('date')}, {env.get('machine')} ({env.get('cpus')} CPUs); "
        f"lmmhmc {env.get('lmmhmc')}, jax {env.get('jax')}, numpyro {env.get('numpyro')}, "
        f"arviz {env.get('arviz')}"
        + (f", bambi {env['bambi']}, pymc {env.get('pymc')}" if env.get("bambi") else "")
        + (f", commit {env['git_commit']}" if env.get("git_commit") else "")
        + f". {st['chains']} chains, {st['warmup']} warm-up + {st['draws']} draws per chain, "
        f"seeds {st['seeds']}{_other_seeds(out)}; bambi: {out.get('bambi')}."
        + f" Wall time of all fits together: {_total_minutes(out):.1f} min.",
        "",
        _parallelism(out),
        "",
        "Methods: `auto` is lmmhmc's own plan; `[term]` marginalizes that one grouping term "
        "and samples the others non-centered (the paper's M1/M2); `none` samples every random "
        "effect non-centered (as brms and bambi do); `bambi` is bambi's default PyMC sampler "
        "on the same formula. Min/median ESS: bulk ESS over every parameter, random effects "
        "included; ESS/draw is min ESS over the retained draws of all chains; min ESS/s uses "
        "the whole wall time (compilation included). With several seeds each cell is the "
        "median over seeds, divergences are summed and R-hat is the largest.",
        "",
        "| data set | N | method | marginalized | sampled dims | wall s | it/s | gradients "
        "| div | min ESS | median ESS | ESS/draw | min ESS/s | max R-hat |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    summaries = {}
    for entry in out["datasets"]:
        table = summarize(entry)
        summaries[entry["name"]] = table
        for method, row in table.items():
            if "wall_s" not in row:
                lines.append(_row([entry["name"], f"{entry['n_obs']:,}", method,
                                   f"failed ({row['errors']} runs)"], 14))
                continue
            marg = ", ".join(f"`{m}`" for m in row["marginalized"]) or "–"
            if row["tool"] == "bambi":
                marg = "(PyMC)"
            lo, hi = row["min_ess_per_s_range"]
            spread = f" ({_fmt(lo, 2)}–{_fmt(hi, 2)})" if row["runs"] > 1 else ""
            lines.append(_row([
                entry["name"], f"{entry['n_obs']:,}", method, marg,
                _fmt(row["sampled_dims"], 0), _fmt(row["wall_s"]),
                _fmt(row["iterations_per_s"]), _fmt(row["gradient_evals_sampling"], 0),
                row["divergences"], _fmt(row["min_ess_bulk"], 0),
                _fmt(row["median_ess_bulk"], 0), _fmt(row["min_ess_per_draw"], 2),
                f"{_fmt(row['min_ess_per_s'], 2)}{spread}", f"{row['max_r_hat']:.3f}",
            ], 14))
        for label, same in entry.get("aliases", {}).items():
            lines.append(_row([entry["name"], "", label, f"same plan as `{same}`"], 14))
    lines += [
        "",
        "## auto against none (and bambi)",
        "",
        "Ratio of min ESS per second (higher: `auto` is faster per effective sample). Flagged: "
        "`auto` slower than `none`, or with more divergences.",
        "",
        "| data set | auto min ESS/s | none min ESS/s | auto / none | bambi min ESS/s "
        "| auto / bambi | divergences auto / none / bambi | best | flag |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    flagged, ratios = [], {}
    for name, table in summaries.items():
        auto, none, bambi = (table.get(m, {}) for m in ("auto", "none", "bambi"))
        a, n, b = (r.get("min_ess_per_s", float("nan")) for r in (auto, none, bambi))
        ratio, ratio_b = a / n if n else float("nan"), a / b if b else float("nan")
        if math.isfinite(ratio):
            ratios[name] = ratio
        divs = " / ".join(str(r.get("divergences", "–")) for r in (auto, none, bambi))
        flags = []
        if math.isfinite(ratio) and ratio < 1:
            flags.append("**auto slower than none**")
        if auto.get("divergences", 0) > none.get("divergences", 0):
            flags.append("**more divergences than none**")
        if auto.get("errors") or none.get("errors"):
            flags.append("**failed runs**")
        if flags:
            flagged.append(name)
        rated = {m: r["min_ess_per_s"] for m, r in table.items() if "min_ess_per_s" in r}
        best = max(rated, key=rated.get) if rated else "–"
        lines.append(_row([name, _fmt(a, 2), _fmt(n, 2), _fmt(ratio, 2), _fmt(b, 2),
                           _fmt(ratio_b, 2), divs, best, ", ".join(flags) or "ok"], 9))
    lines += ["", ("Flagged: " + ", ".join(flagged) + ".") if flagged
              else "No data set flagged.", ""]
    if ratios:
        median = float(np.median(list(ratios.values())))
        below = [f"{k} ({v:.2f})" for k, v in ratios.items() if v < TARGET_RATIO]
        lines += [f"Median of auto / none over the {len(ratios)} data sets: **{median:.2f}** "
                  f"(target {TARGET_RATIO:g}: {'met' if median >= TARGET_RATIO else 'not met'})."
                  + (f" Below {TARGET_RATIO:g}: {', '.join(below)}." if below else ""), ""]
    pngs = []
    if summaries:
        pngs.append(plot_ess(summaries, RESULTS / f"{stem}_ess_per_s.png"))
        lines += [f"![min ESS per second]({pngs[-1].name})", ""]
    scaling = [r for r in out.get("scaling", []) if "skipped" not in r]
    if scaling or out.get("scaling"):
        lines += [
            "## Scaling with N",
            "",
            "Subjects drawn at random (fixed seed), all their observations kept; one seed. "
            "Seconds per effective sample = wall time / min bulk ESS (over every parameter).",
            "",
            "| data set | subjects | N | method | sampled dims | wall s | min ESS | div "
            "| s per effective sample | max R-hat |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in out.get("scaling", []):
            if "skipped" in r:
                lines.append(_row([r["name"], r.get("n_subjects", ""),
                                   f"{r['n_obs']:,}" if "n_obs" in r else "",
                                   r.get("method", ""), f"skipped: {r['skipped']}"], 10))
            elif "error" in r:
                lines.append(_row([r["name"], r["n_subjects"], f"{r['n_obs']:,}", r["method"],
                                   f"failed: {r['error'][:80]}"], 10))
            else:
                lines.append(
                    f"| {r['name']} | {r['n_subjects']} | {r['n_obs']:,} | {r['method']} | "
                    f"{r['sampled_dims']:,} | {_fmt(r['wall_s'])} | "
                    f"{_fmt(r['min_ess_bulk'], 0)} | {r['divergences']} | "
                    f"{r['wall_s'] / r['min_ess_bulk']:.3g} | {r['max_r_hat']:.3f} |")
        ok = [r for r in scaling if "error" not in r]
        if ok:
            pngs.append(plot_scaling(ok, RESULTS / f"{stem}_scaling.png"))
            lines += ["", f"![seconds per effective sample against N]({pngs[-1].name})", ""]
    lines += ["## Notes", ""] + [f"- {n}" for n in out.get("notes", [])] + [""]
    md = RESULTS / f"{stem}.md"
    md.write_text("\n".join(lines))
    print(f"wrote {md}" + "".join(f", {p}" for p in pngs))


COLORS = {"auto": "tab:blue", "none": "tab:red", "bambi": "tab:green"}


def _log_axis(axis) -> None:
    """Plain numbers (0.5, 2, 10) on a log axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_ess(summaries: dict, path: Path) -> Path:
    """One panel per data set: min ESS/s per method (dot: median, line: range over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(summaries)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 0.6 + 2.0 * rows), squeeze=False)
    for ax, (name, table) in zip(axes.flat, summaries.items(), strict=False):
        methods = [m for m, r in table.items() if "min_ess_per_s" in r][::-1]
        for y, m in enumerate(methods):
            row = table[m]
            lo, hi = row["min_ess_per_s_range"]
            color = COLORS.get(m, "tab:orange")
            ax.plot([lo, hi], [y, y], color=color, lw=2, alpha=0.5)
            ax.plot(row["min_ess_per_s"], y, "o", color=color, ms=7)
        ax.set_yticks(range(len(methods)), methods, fontsize=8)
        ax.set_ylim(-0.6, len(methods) - 0.4)
        vals = [v for m in methods for v in table[m]["min_ess_per_s_range"]]
        if vals:
            lo, hi = min(vals) / 1.5, max(vals) * 1.5
            if hi / lo < 5:  # at least a factor 5, so that a few ticks show
                mid = math.sqrt(lo * hi)
                lo, hi = mid / math.sqrt(5), mid * math.sqrt(5)
            ax.set_xlim(lo, hi)
        ax.set_xscale("log")
        _log_axis(ax.xaxis)
        ax.set_title(name, fontsize=10)
        ax.grid(axis="x", which="both", alpha=0.3)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("min bulk ESS per second, wall time (log scale; higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scaling(records: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    keys = sorted({(r["name"], r["method"]) for r in records})
    for name, method in keys:
        pts = sorted((r["n_obs"], r["wall_s"] / r["min_ess_bulk"]) for r in records
                     if r["name"] == name and r["method"] == method)
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o", color=COLORS.get(method),
                linestyle="-" if "eeg" in name else "--", label=f"{name}: {method}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_axis(ax.xaxis)
    _log_axis(ax.yaxis)
    ax.set_xlabel("observations N")
    ax.set_ylabel("wall seconds per effective sample")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
