"""Markdown tables and PNG plots of the paper's experiments, from their results record (JSON).

``report(record, folder, stem)`` writes ``<stem>.md``, ``<stem>_ess_per_s.png`` and, with a
scaling study, ``<stem>_scaling.png`` into ``folder``. matplotlib is imported where it plots.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

#: The speed-up of ``auto`` over ``none`` (min ESS per second) the project aims at (issue 19;
#: 5 until 2026-12-02).
TARGET_RATIO = 10.0
COLORS = {"auto": "tab:blue", "none": "tab:red", "bambi": "tab:green"}

METHODS_TEXT = (
    "Methods: `auto` is lmmhmc's own plan; `[term]` marginalizes that one grouping term "
    "and samples the others (the paper's M1/M2); `none` samples every random effect (each "
    "level centered or non-centered by `centering=\"auto\"` since 2026-12-01, before that "
    "non-centered, as brms and bambi do); `bambi` is bambi's default PyMC sampler "
    "on the same formula. Min ESS: the smallest bulk ESS over every parameter, random effects "
    "included; min ESS/s uses the whole wall time (compilation included); `/ none` is the "
    "method's min ESS/s over `none`'s. With several seeds each cell is the median over "
    "seeds, divergences are summed and R-hat is the largest. The table shows the key columns; "
    "the JSON next to it also has the marginalized terms, iterations and gradients per "
    "second, median ESS, ESS per draw and the range of min ESS/s over the seeds."
)

QUICK_TEXT = (
    "**A short smoke run, not a measurement**: `--quick` fits two small data sets with 300 "
    "warm-up + 300 draws and one seed to check that the script works end to end. Its ESS "
    "figures are too noisy and its compilation share too large to measure speed; the "
    "full-mode tables are the benchmark."
)


def report(record: dict, folder: Path, stem: str) -> None:
    """Write the markdown tables and the plots of a results record.

    Parameters
    ----------
    record : dict
        As written to JSON by ``paper.py``.
    folder : pathlib.Path
        Where ``<stem>.md`` and ``<stem>_*.png`` go.
    stem : str
        The file stem (``paper``, ``paper_quick``, ...).
    """
    tables = [(entry, summarize(entry)) for entry in record["datasets"]]
    summaries = {entry["name"]: table for entry, table in tables}
    lines = _header(record)
    if tables:  # a scaling study alone has no per-data-set table
        lines += _TABLE_HEAD
        for entry, table in tables:
            lines += _dataset_rows(entry, table)
        lines += _comparison(summaries, quick=record.get("mode") == "quick")
    pngs = []
    if summaries:
        pngs.append(folder / f"{stem}_ess_per_s.png")
        plot_ess(summaries, pngs[-1])
        lines += [f"![min ESS per second]({pngs[-1].name})", ""]
    if record.get("scaling"):
        lines += _scaling_table(record["scaling"])
        ok = [r for r in record["scaling"] if "skipped" not in r and "error" not in r]
        if ok:
            pngs.append(folder / f"{stem}_scaling.png")
            plot_scaling(ok, pngs[-1])
            lines += ["", f"![seconds per effective sample against N]({pngs[-1].name})", ""]
    lines += ["## Notes", ""] + [f"- {n}" for n in record.get("notes", [])] + [""]
    md = folder / f"{stem}.md"
    md.write_text("\n".join(lines))
    print(f"wrote {md}" + "".join(f", {p}" for p in pngs))


def summarize(entry: dict) -> dict[str, dict]:
    """Per method of a data set's entry: medians over seeds (sums for divergences, max for
    R-hat), the number of runs and of errors."""
    table = {}
    for method in _methods(entry):
        runs = [r for r in entry["runs"] if r["method"] == method]
        ok = [r for r in runs if "error" not in r]
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


# ----------------------------------------------------------------------------- sections


def _header(record: dict) -> list[str]:
    """Title, provenance and settings, parallelism and the methods."""
    env, st = record["environment"], record["settings"]
    quick = record.get("mode") == "quick"
    if record["datasets"]:
        title = ("lmmhmc on the paper's data sets: quick mode, a smoke run" if quick
                 else f"lmmhmc on the paper's data sets ({record['mode']} mode)")
    else:
        title = "Scaling with N: subsets of the paper's large data sets"
    return [
        f"# {title}",
        "",
        *([QUICK_TEXT, ""] if quick else []),
        f"Generated by `python benchmarks/paper.py {' '.join(record.get('argv', []))}`".rstrip()
        + f" on {env.get('date')}, {env.get('machine')} ({env.get('cpus')} CPUs); "
        f"lmmhmc {env.get('lmmhmc')}, jax {env.get('jax')}, numpyro {env.get('numpyro')}, "
        f"arviz {env.get('arviz')}"
        + (f", bambi {env['bambi']}, pymc {env.get('pymc')}" if env.get("bambi") else "")
        + (f", commit {env['git_commit']}" if env.get("git_commit") else "")
        + f". {st['chains']} chains, {st['warmup']} warm-up + {st['draws']} draws per chain, "
        f"seeds {st['seeds']}{_other_seeds(record)}; bambi: {record.get('bambi')}."
        + _appended(record)
        + f" Wall time of all fits together: {_total_minutes(record):.1f} min.",
        "",
        _parallelism(record),
        "",
        METHODS_TEXT,
        "",
    ]


#: The head of the first table: the key columns only (the rest is in the JSON).
_TABLE_HEAD = [
    "| data set | method | sampled dims | wall s | min ESS | min ESS/s | / none | div "
    "| max R-hat |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]
_WIDTH = 9


def _dataset_rows(entry: dict, table: dict[str, dict]) -> list[str]:
    """The first table's rows of one data set: one per method, then its aliases."""
    lines = []
    names = iter([f"{entry['name']}, N = {entry['n_obs']:,}"])  # on the data set's first row
    none = table.get("none", {}).get("min_ess_per_s")
    for method, row in table.items():
        if "wall_s" not in row:
            lines.append(_row([next(names, ""), method, f"failed ({row['errors']} runs)"],
                              _WIDTH))
            continue
        label = "bambi (PyMC)" if row["tool"] == "bambi" else method
        lines.append(_row([
            next(names, ""), label, _fmt(row["sampled_dims"], 0), _fmt(row["wall_s"]),
            _fmt(row["min_ess_bulk"], 0), _fmt(row["min_ess_per_s"], 2),
            _fmt(row["min_ess_per_s"] / none, 2) if none else "–",
            row["divergences"], f"{row['max_r_hat']:.3f}",
        ], _WIDTH))
    for label, same in entry.get("aliases", {}).items():
        lines.append(_row([next(names, ""), label, f"same plan as `{same}`"], _WIDTH))
    return lines


def _comparison(summaries: dict[str, dict], quick: bool = False) -> list[str]:
    """The section comparing auto with none and bambi, and the median of auto / none."""
    lines = [
        "",
        "## auto against none (and bambi)",
        "",
        "Ratio of min ESS per second (higher: `auto` is faster per effective sample). Flagged: "
        "`auto` slower than `none`, or with more divergences.",
        "",
        "| data set | auto / none | auto / bambi | divergences auto / none / bambi | best "
        "| flag |",
        "| --- | ---: | ---: | --- | --- | --- |",
    ]
    flagged, ratios = [], {}
    for name, table in summaries.items():
        cells, ratio, flags = _compare(name, table)
        lines.append(_row(cells, 6))
        if math.isfinite(ratio):
            ratios[name] = ratio
        if flags:
            flagged.append(name)
    lines += ["", ("Flagged: " + ", ".join(flagged) + ".") if flagged
              else "No data set flagged.", ""]
    if ratios:
        median = float(np.median(list(ratios.values())))
        below = [f"{k} ({v:.2f})" for k, v in ratios.items() if v < TARGET_RATIO]
        target = (f"the target {TARGET_RATIO:g} applies to full mode, not to this smoke run"
                  if quick else
                  f"target {TARGET_RATIO:g}: {'met' if median >= TARGET_RATIO else 'not met'}")
        lines += [f"Median of auto / none over the {len(ratios)} data sets: **{median:.2f}** "
                  f"({target})."
                  + (f" Below {TARGET_RATIO:g}: {', '.join(below)}." if below else ""), ""]
    return lines


def _compare(name: str, table: dict[str, dict]) -> tuple[list, float, list[str]]:
    """One data set's row of the comparison, its auto / none ratio and its flags."""
    auto, none, bambi = (table.get(m, {}) for m in ("auto", "none", "bambi"))
    a, n, b = (r.get("min_ess_per_s", float("nan")) for r in (auto, none, bambi))
    ratio, ratio_b = a / n if n else float("nan"), a / b if b else float("nan")
    divs = " / ".join(str(r.get("divergences", "–")) for r in (auto, none, bambi))
    flags = []
    if math.isfinite(ratio) and ratio < 1:
        flags.append("**auto slower than none**")
    if auto.get("divergences", 0) > none.get("divergences", 0):
        flags.append("**more divergences than none**")
    if auto.get("errors") or none.get("errors"):
        flags.append("**failed runs**")
    rated = {m: r["min_ess_per_s"] for m, r in table.items() if "min_ess_per_s" in r}
    best = max(rated, key=rated.get) if rated else "–"
    cells = [name, _fmt(ratio, 2), _fmt(ratio_b, 2), divs, best, ", ".join(flags) or "ok"]
    return cells, ratio, flags


def _scaling_table(records: list[dict]) -> list[str]:
    """The scaling study's section: one row per fit, skipped or failed one."""
    lines = [
        "## Scaling with N",
        "",
        "Subjects drawn at random (fixed seed), all their observations kept; one seed. "
        "Seconds per effective sample = wall time / min bulk ESS (over every parameter).",
        "",
        "| data set | subjects | N | method | sampled dims | wall s | min ESS | div "
        "| s / ESS | max R-hat |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in records:
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
    return lines


# ----------------------------------------------------------------------------- helpers


def _all_runs(record: dict) -> list[dict]:
    """Every run record: of the data sets and of the scaling study."""
    return [r for e in record["datasets"] for r in e["runs"]] + record.get("scaling", [])


def _total_minutes(record: dict) -> float:
    return sum(r.get("wall_s", 0.0) for r in _all_runs(record)) / 60


def _other_seeds(record: dict) -> str:
    """Data sets run with other seeds than the settings say (runs added with --append)."""
    other = [f"{e['name']}: seeds {e['seeds']}" for e in record["datasets"]
             if e.get("seeds", record["settings"]["seeds"]) != record["settings"]["seeds"]]
    return f" ({'; '.join(other)})" if other else ""


def _appended(record: dict) -> str:
    """The data sets added later with ``--append``, with their run's date and bambi status."""
    later = [f"{e['name']} on {e['environment'].get('date')} (bambi: {e.get('bambi')})"
             for e in record["datasets"] if "environment" in e]
    return f" Added later with --append: {'; '.join(later)}." if later else ""


def _parallelism(record: dict) -> str:
    """How the chains ran, from the records."""
    runs = _all_runs(record)

    def chain_methods(tool: str) -> str:
        return ", ".join(sorted({r["chain_method"] for r in runs
                                 if r.get("tool") == tool and r.get("chain_method")}))

    lmm, bam = chain_methods("lmmhmc"), chain_methods("bambi")
    env = record["environment"]
    where = (f"{env['cores']} cores" if "cores" in env
             else f"{env.get('cpu_devices')} JAX CPU device(s)")
    text = f"Chains: lmmhmc chain_method {lmm or '–'} on {where}"
    if bam:
        text += f"; bambi/PyMC: {bam}"
    return text + "."


def _median(runs: list[dict], key: str) -> float:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return float(np.median(vals)) if vals else float("nan")


def _fmt(x, digits: int = 1) -> str:
    """A number for a table cell: thousands separated, ``–`` for None or not finite."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _row(cells: list, width: int) -> str:
    """A markdown table row, padded with empty cells to ``width`` columns."""
    cells = [str(c).replace("|", "\\|") for c in cells] + [""] * (width - len(cells))
    return "| " + " | ".join(cells) + " |"


def _methods(entry: dict) -> list[str]:
    """The methods of a data set's runs, in the order they ran."""
    seen = []
    for r in entry["runs"]:
        if r["method"] not in seen:
            seen.append(r["method"])
    return seen


# ----------------------------------------------------------------------------- plots


def _pyplot():
    """matplotlib.pyplot on the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Write a figure to ``path`` (PNG) and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def _log_axis(axis) -> None:
    """Plain numbers (0.5, 2, 10) on a log axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_ess(summaries: dict[str, dict], path: Path) -> None:
    """One panel per data set: min ESS/s per method (dot: median, line: range over seeds).

    Parameters
    ----------
    summaries : dict
        Data set name -> :func:`summarize` of its entry.
    path : pathlib.Path
        The PNG to write.
    """
    plt = _pyplot()
    n = len(summaries)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 0.6 + 2.0 * rows), squeeze=False)
    for ax, (name, table) in zip(axes.flat, summaries.items(), strict=False):
        _ess_panel(ax, name, table)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("min bulk ESS per second, wall time (log scale; higher is better)")
    _save(fig, path)


def _ess_panel(ax, name: str, table: dict[str, dict]) -> None:
    """One data set's panel of :func:`plot_ess`."""
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


def plot_scaling(records: list[dict], path: Path) -> None:
    """Wall seconds per effective sample against N, a line per data set and method.

    Parameters
    ----------
    records : list of dict
        The scaling study's successful fits.
    path : pathlib.Path
        The PNG to write.
    """
    plt = _pyplot()
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
    _save(fig, path)
