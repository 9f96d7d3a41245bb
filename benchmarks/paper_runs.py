"""The paper's fits: lmmhmc (through :func:`common.measure`) and bambi, interleaved per data set
and seed, each appended to the results record and saved to its JSON file at once.

The record is the dictionary that ``paper.py`` writes as JSON: ``settings`` (chains, draws,
warm-up, seeds, bambi's cores), ``bambi`` (whether it runs), ``datasets`` (one entry per data
set, with its runs) and ``scaling`` (one record per fit of the scaling study). jax, lmmhmc,
common and bambi are imported where they are used: ``--host-devices`` must reach XLA_FLAGS
before JAX is imported, and PyMC's worker processes (forkserver) import ``paper.py``, and so
this module, again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
from paper_specs import REPO, Spec, load, subsample

#: The scaling study leaves out ``none`` above this many observations (hours per fit).
NONE_MAX_OBS = 60_000
#: bambi is skipped above this many observations (its non-centered fit gets very long).
BAMBI_MAX_OBS = 30_000
#: ``record["bambi"]`` when bambi runs.
BAMBI_INCLUDED = "included"
#: An lmmhmc fit of a data set: its label in the tables and its ``marginalize``.
Method = tuple[str, str | list[str]]

NOTES = [
    "lmmhmc runs use the package's default priors; bambi uses its own defaults (normal "
    "fixed effects, half-normal group sds, half-Student-t sigma), so its posterior is close "
    "to but not the same as lmmhmc's.",
    "bambi models the terms of `(1 + x | g)` as uncorrelated (no LKJ correlation): its model "
    "has one parameter less per correlated term than lmmhmc's.",
    "`none` is lmmhmc with every random effect sampled: since 2026-12-01 each level centered "
    "or non-centered as `centering=\"auto\"` chooses, before that every level non-centered "
    "(u = Lambda z, z ~ N(0, I)), the parameterization brms and bambi use; the random effects "
    "of marginalized terms are drawn exactly from their conditional posterior after sampling, "
    "so ESS covers them too.",
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


# ----------------------------------------------------------------------------- one fit


def lmmhmc_methods(formula: str, data: pd.DataFrame) -> tuple[int, list[Method], dict[str, str]]:
    """The lmmhmc fits of a data set: auto, each single-term plan and none.

    Returns
    -------
    tuple of (int, list of (str, str or list of str), dict of str to str)
        The number of observations; (label, marginalize) per fit; the single-term plans left
        out because they are the same as ``auto`` (label -> ``"auto"``).
    """
    import lmmhmc
    from lmmhmc.plan import make_plan

    design = lmmhmc.Model(formula, data, allow_one_per_level=True).design
    auto = make_plan(design, "auto").marginalized
    methods, aliases = [("auto", "auto")], {}
    for k, term in enumerate(design.terms):
        label = f"[{term.text}]"
        if auto == (k,):
            aliases[label] = "auto"
            continue
        methods.append((label, [term.text]))
    methods.append(("none", "none"))
    return int(design.n_obs), methods, aliases


def run_lmmhmc(formula: str, data: pd.DataFrame, method: str, marginalize: str | list[str],
               seed: int, settings: dict) -> dict:
    """One cold lmmhmc fit measured by :func:`common.measure`; a failure becomes an error record.

    Parameters
    ----------
    formula : str
    data : pandas.DataFrame
    method : str
        The label of the fit in the tables.
    marginalize : str or list of str
        As for :func:`lmmhmc.fit`.
    seed : int
    settings : dict
        ``chains``, ``draws`` and ``warmup``.
    """
    from common import measure

    try:
        rec = measure(formula, data, marginalize, seed=seed, log_likelihood=False, **settings)
    except Exception as err:  # one failing fit must not end an hour-long run
        return {"tool": "lmmhmc", "method": method, "seed": seed, "error": repr(err)}
    return {"tool": "lmmhmc", "method": method, "seed": seed, **rec}


def bambi_formula(formula: str | tuple[str, ...]):
    """lme4/formulaic syntax as bambi (formulae) reads it: ``log(x)`` -> ``np.log(x)``; a
    distributional model's formulas as one ``bambi.Formula``."""
    if not isinstance(formula, str):
        import bambi as bmb

        return bmb.Formula(*(bambi_formula(f) for f in formula))
    return re.sub(r"(?<![\w.])log\(", "np.log(", formula)


def bambi_version() -> str | None:
    """bambi's version, or None when it cannot be imported."""
    try:
        import bambi
    except Exception:  # any import failure: not available
        return None
    return bambi.__version__


def run_bambi(formula: str, data: pd.DataFrame, seed: int, settings: dict,
              cores: int | None = None) -> dict:
    """bambi's default sampler (PyMC NUTS), measured like :func:`common.measure`.

    Parameters
    ----------
    formula : str
        lmmhmc's formula (see :func:`bambi_formula`).
    data : pandas.DataFrame
    seed : int
    settings : dict
        ``chains``, ``draws`` and ``warmup``.
    cores : int, optional
        PyMC worker processes; None: PyMC's own choice.
    """
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
        return {"tool": "bambi", "method": "bambi", "seed": seed, "formula": str(bform),
                "error": repr(err)}
    ess = summ["ess_bulk"].to_numpy()
    sampling = float(idata.posterior.attrs.get("sampling_time", float("nan")))
    stats = idata.sample_stats
    try:
        dims = int(sum(np.size(v) for v in model.backend.model.initial_point().values()))
    except Exception:
        dims = None
    return {
        "tool": "bambi", "method": "bambi", "seed": seed, "formula": str(bform),
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
    """One line on a run record: wall time, ESS, divergences, R-hat (or its error)."""
    if "error" in rec:
        return f"ERROR {rec['error'][:200]}"
    return (f"wall {rec['wall_s']:7.1f} s  min ESS {rec['min_ess_bulk']:7.0f}  "
            f"ESS/s {rec['min_ess_per_s']:8.2f}  div {rec['divergences']:3d}  "
            f"R-hat {rec['max_r_hat']:.3f}")


# ----------------------------------------------------------------------------- the record


def versions() -> dict:
    """Machine, versions, date and commit for the record (:func:`common.environment` and more)."""
    import matplotlib
    from common import environment

    import lmmhmc

    env = environment()
    env.update(cpus=os.cpu_count(), xla_flags=os.environ.get("XLA_FLAGS", ""),
               matplotlib=matplotlib.__version__, numpy=np.__version__, pandas=pd.__version__,
               platform=f"{os.uname().sysname} {os.uname().release}")
    env["lmmhmc_path"] = str(Path(lmmhmc.__file__).resolve().parent)
    env["git_commit"] = _git_commit()
    env["bambi"] = bambi_version()
    if env["bambi"]:
        import pymc

        env["pymc"] = pymc.__version__
    return env


def _git_commit() -> str | None:
    """The checkout's commit, marked when lmmhmc/ has uncommitted changes; None without git."""
    git = ["git", "-C", str(REPO)]
    try:
        commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "lmmhmc"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + (" (lmmhmc/ modified)" if dirty else "")


def keep_earlier(record: dict, path: Path, names: list[str]) -> None:
    """``--append``: keep the results in ``path`` of the data sets not run again now.

    The earlier record's environment and bambi status stay the record's; each data set run now
    carries this run's (``entry["environment"]``, ``entry["bambi"]``), which the report names.
    """
    old = json.loads(path.read_text())
    redo = set(names)
    record["datasets"] = [e for e in old["datasets"] if e["name"] not in redo]
    record["scaling"] = [r for r in old.get("scaling", []) if r["name"] not in redo]
    record["argv"] = old.get("argv", []) + ["+"] + record["argv"]
    record["appended"] = {"environment": record["environment"], "bambi": record["bambi"]}
    record["environment"], record["bambi"] = old["environment"], old["bambi"]


def save(record: dict, path: Path) -> None:
    """Write the record as JSON."""
    path.write_text(json.dumps(record, indent=1, default=str))


def _fit_settings(record: dict) -> dict:
    """The record's chains, draws and warm-up, as keyword arguments of a fit."""
    return {key: record["settings"][key] for key in ("chains", "draws", "warmup")}


# ----------------------------------------------------------------------------- the studies


def run_dataset(record: dict, path: Path, spec: Spec) -> None:
    """Every lmmhmc method and bambi on one data set, per seed, saving after every fit."""
    settings, seeds = _fit_settings(record), record["settings"]["seeds"]
    data = load(spec)
    n_obs, methods, aliases = lmmhmc_methods(spec.formula, data)
    entry = {"name": spec.name, "label": spec.label, "formula": spec.formula, "n_obs": n_obs,
             "aliases": aliases, "seeds": seeds, "runs": []}
    status = record.get("appended", record)["bambi"]  # this run's (`keep_earlier`)
    if "appended" in record:
        entry.update(environment=record["appended"]["environment"], bambi=status)
    record["datasets"].append(entry)
    print(f"\n{spec.name} (N = {n_obs}): {spec.formula}")
    for label, same in aliases.items():
        print(f"  {label} is the same plan as {same}: not repeated")
    with_bambi = status == BAMBI_INCLUDED
    if with_bambi and n_obs > BAMBI_MAX_OBS:
        print(f"  bambi skipped: N > {BAMBI_MAX_OBS}")
        entry["bambi_skipped"] = f"N > {BAMBI_MAX_OBS}"
        with_bambi = False
    for seed in seeds:
        for label, marg in methods:
            _add(record, path, entry["runs"], f"seed {seed} {label:<34}",
                 run_lmmhmc(spec.formula, data, label, marg, seed, settings))
        if with_bambi:
            _add(record, path, entry["runs"], f"seed {seed} {'bambi':<34}",
                 run_bambi(spec.formula, data, seed, settings,
                           record["settings"]["bambi_cores"]))


def run_scaling(record: dict, path: Path, spec: Spec, sizes: tuple[int | None, ...]) -> None:
    """``auto`` and ``none`` on subsamples of a large data set, with the first seed.

    ``none`` is left out above :data:`NONE_MAX_OBS` observations; a data set whose CSV is
    absent is recorded as skipped.
    """
    full = load(spec)
    if full is None:
        record["scaling"].append({"name": spec.name, "skipped": "data not found"})
        return
    settings, seed = _fit_settings(record), record["settings"]["seeds"][0]
    for n_subjects in sizes:
        data, n_subj = subsample(full, n_subjects)
        n_obs = _n_obs(spec.formula, data)
        print(f"\nscaling {spec.name}: {n_subj} subjects, N = {n_obs}")
        where = {"name": spec.name, "n_subjects": n_subj, "n_obs": n_obs}
        for label in ("auto", "none"):
            if label == "none" and n_obs > NONE_MAX_OBS:
                record["scaling"].append({**where, "method": label,
                                          "skipped": f"N > {NONE_MAX_OBS:,}"})
                print(f"  {label:<6} skipped: N > {NONE_MAX_OBS:,}", flush=True)
                continue
            rec = run_lmmhmc(spec.formula, data, label, label, seed, settings)
            rec.update(name=spec.name, label=spec.label, n_subjects=n_subj, n_obs=n_obs)
            _add(record, path, record["scaling"], f"{label:<6}", rec)


def _n_obs(formula: str, data: pd.DataFrame) -> int:
    """The number of observations lmmhmc's model of ``formula`` keeps."""
    import lmmhmc

    return int(lmmhmc.Model(formula, data, allow_one_per_level=True).design.n_obs)


def _add(record: dict, path: Path, runs: list, label: str, rec: dict) -> None:
    """Append a run record, print it and save the whole record."""
    runs.append(rec)
    print(f"  {label} {short(rec)}", flush=True)
    save(record, path)
