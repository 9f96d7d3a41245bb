"""The paper's experiments: lmmhmc with and without marginalization, and bambi, per data set.

For each data set and formula (the cognitive-science data of Lai, Domke & Sheldon, NeurIPS 2024,
plus sleepstudy, grouseticks and InstEval) this fits

- lmmhmc ``marginalize="auto"`` (the plan the cost model picks),
- lmmhmc with each single grouping term marginalized, ``marginalize=[term]`` (the paper's M1,
  M2; left out where it is the same plan as ``auto``),
- lmmhmc ``marginalize="none"``: every random effect sampled, each level centered or
  non-centered as ``centering="auto"`` chooses (brms and bambi sample every level
  non-centered),
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

Both samplers run with their own defaults for parallelism: lmmhmc's ``chain_method="auto"``
runs as many chains at a time as there are cores (threads calling one compiled program), and
PyMC uses ``min(4, CPUs // 2)`` processes; ``--bambi-cores N`` gives PyMC N processes.
lmmhmc's persistent JAX compilation cache is off for the runs
(``LMMHMC_CACHE_DIR=off``, as in common.py) unless LMMHMC_CACHE_DIR names a folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from paper_report import report
from paper_runs import (
    BAMBI_INCLUDED,
    NOTES,
    bambi_version,
    keep_earlier,
    run_dataset,
    run_scaling,
    save,
    versions,
)
from paper_specs import DATASETS, KNOWN, QUICK, REPO, SCALING, Spec

# jax and lmmhmc are imported where they are used (paper_runs, paper_specs): --host-devices
# must reach XLA_FLAGS before JAX is imported, and PyMC's worker processes (forkserver) import
# this module again.

CHAINS = 4
# benchmark the checkout this script lives in, not whichever lmmhmc is installed
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    """Run the experiments the options select (or only the report), then write the report."""
    args = parse_args()
    stem = args.out or ("paper_quick" if args.quick else "paper")
    path = RESULTS / f"{stem}.json"
    if args.report_only:
        if not path.exists():
            sys.exit(f"{path} not found: run without --report-only first")
        report(json.loads(path.read_text()), RESULTS, stem)
        return
    os.environ.setdefault("LMMHMC_CACHE_DIR", "off")  # cold starts (common.py does the same)
    names = args.datasets or (list(QUICK) if args.quick else [s.name for s in DATASETS])
    main_specs, scaling_specs = select(names, args.scaling, args.quick)
    record = new_record(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.append and path.exists():
        keep_earlier(record, path, names)

    t_start = time.perf_counter()
    for spec in main_specs:
        run_dataset(record, path, spec)
    for spec in scaling_specs:
        run_scaling(record, path, spec, spec.quick_subjects if args.quick else spec.subjects)
    record["total_wall_s"] = time.perf_counter() - t_start
    save(record, path)
    print(f"\nwrote {path} ({record['total_wall_s']:.0f} s)")
    report(record, RESULTS, stem)


def parse_args() -> argparse.Namespace:
    """The command-line options."""
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
    parser.add_argument("--bambi-cores", type=int, default=None,
                        help="PyMC worker processes (default: PyMC's own choice)")
    parser.add_argument("--report-only", action="store_true",
                        help="regenerate markdown and plots from the existing JSON")
    parser.add_argument("--out", default=None, help="file stem (paper; quick: paper_quick)")
    parser.add_argument("--append", action="store_true",
                        help="add to the existing JSON of the stem, replacing the results of the "
                        "data sets run now (to run the data sets in several sessions)")
    return parser.parse_args()


def select(names: list[str], scaling: bool, quick: bool) -> tuple[list[Spec], list[Spec]]:
    """The specs of the data sets to run and of the scaling study's.

    The ``*_complete`` data sets named run as the scaling study; ``scaling`` without any of
    them named runs both. Exits on an unknown name.
    """
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        sys.exit(f"unknown data sets {unknown}; known: {', '.join(KNOWN)}")
    main_specs = [KNOWN[n] for n in names if KNOWN[n].source == "bundled"]
    scaling_specs = [KNOWN[n] for n in names if KNOWN[n].source == "paper"]
    if scaling and not scaling_specs:
        scaling_specs = SCALING
    elif scaling_specs and not scaling:
        print("note: the *_complete data sets run as the scaling study (--scaling implied)")
    if not scaling and not scaling_specs and not quick:
        print("note: df_eeg_complete and df_stroop_complete run with --scaling")
    return main_specs, scaling_specs


def new_record(args: argparse.Namespace) -> dict:
    """The results record of this run, without results yet: mode, settings, environment."""
    environment = versions()  # first: JAX is imported before bambi and PyMC are
    draws = args.draws or (300 if args.quick else 1000)
    with_bambi = not args.no_bambi and bambi_version() is not None
    if not args.no_bambi and not with_bambi:
        print('bambi cannot be imported: skipping it (pip install -e ".[bench]")')
    return {
        "mode": "quick" if args.quick else "full", "argv": sys.argv[1:],
        "environment": environment,
        "settings": {"chains": CHAINS, "draws": draws, "warmup": args.warmup or draws,
                     "seeds": list(range(args.seeds or (1 if args.quick else 3))),
                     "bambi_cores": args.bambi_cores,
                     "LMMHMC_CACHE_DIR": os.environ.get("LMMHMC_CACHE_DIR")},
        "bambi": BAMBI_INCLUDED if with_bambi else ("left out" if args.no_bambi
                                                    else "not importable: skipped"),
        "notes": NOTES, "datasets": [], "scaling": [],
    }


if __name__ == "__main__":
    main()
