"""Benchmark: build the InstEval design (73421 ratings; 2972 students, 1128 lecturers, 14 depts).

Run ``python benchmarks/design.py``. Prints wall time (best of 3) and peak extra memory of
:func:`lmmhmc.design.build_design` and writes ``benchmarks/results/design.json``.
Targets: under 2 s and under 200 MB.
"""

from __future__ import annotations

import json
import os
import platform
import time
import tracemalloc
from pathlib import Path

import formulaic
import numpy as np
import pandas as pd

import lmmhmc
from lmmhmc import datasets
from lmmhmc.design import build_design

FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
REPEATS = 3
TARGET_SECONDS = 2.0
TARGET_MB = 200.0
RESULTS = Path(__file__).parent / "results" / "design.json"


def main() -> dict:
    """Time and measure the design build; print a table and write the JSON results."""
    start = time.perf_counter()
    data = datasets.load("InstEval")
    load_s = time.perf_counter() - start

    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        design = build_design(FORMULA, data)
        times.append(time.perf_counter() - start)

    # Peak memory allocated during one build beyond what was held before it (numpy and pandas
    # buffers are traced by tracemalloc); measured in a separate run as tracing slows it down.
    del design
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    design = build_design(FORMULA, data)
    peak_mb = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    tracemalloc.stop()

    result = {
        "formula": FORMULA,
        "n_obs": design.n_obs,
        "n_levels": [t.n_levels for t in design.terms],
        "load_s": round(load_s, 4),
        "build_s_best": round(min(times), 4),
        "build_s_all": [round(t, 4) for t in times],
        "peak_extra_mb": round(peak_mb, 1),
        "target_s": TARGET_SECONDS,
        "target_mb": TARGET_MB,
        "meets_targets": min(times) < TARGET_SECONDS and peak_mb < TARGET_MB,
        "versions": {
            "lmmhmc": lmmhmc.__version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "formulaic": formulaic.__version__,
        },
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
    }
    rows = [
        ("data set", f"InstEval, N = {design.n_obs}, levels {result['n_levels']}"),
        ("load (bundled csv.gz)", f"{load_s:.3f} s"),
        (f"build_design, best of {REPEATS}", f"{min(times):.3f} s  (target < {TARGET_SECONDS} s)"),
        ("peak extra memory", f"{peak_mb:.1f} MB  (target < {TARGET_MB:.0f} MB)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
