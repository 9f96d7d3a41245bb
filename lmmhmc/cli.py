"""Command-line interface: ``lmmhmc <command> ...``.

Commands
--------
describe
    Parse a formula on a data set and print the design.
fit
    Fit a model by NUTS and print the sampler header and the posterior summary; optionally
    save the fit (``--out result.nc``) and write trace, forest and random-effect plots
    (``--plot DIR``).
summary
    Print the header and summary of a saved fit.
datasets
    List the bundled data sets.

Errors caused by the formula or the data are printed as one line ``error: ...`` on stderr, with
exit status 2 (the status argparse uses for bad arguments).

This module imports only the standard library and lmmhmc's options at module level: pandas,
JAX, NumPyro, ArviZ and matplotlib are imported by the commands that use them, so that
``lmmhmc --help``, ``lmmhmc datasets`` (and ``describe``, which needs pandas and formulaic but
not JAX) start quickly.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lmmhmc import __version__, datasets
from lmmhmc.errors import DataError, LmmhmcError
from lmmhmc.options import CHAIN_METHODS, DEFAULTS, HDI_PROB

if TYPE_CHECKING:
    import pandas as pd

    from lmmhmc.model import Model
    from lmmhmc.results import FitResult

__all__ = ["main", "read_data"]

_CSV_SUFFIXES = {".csv", ".gz", ".txt", ".tsv"}
# Delimiters other than the comma that a data file may use.
_DELIMITERS = (";", "\t", "|")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit status: 0 on success, 2 on an error in the formula, the data, the arguments or
        a missing file, 130 when interrupted (Ctrl-C).
    """
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (LmmhmcError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"interrupted: {exc or 'by the user'}", file=sys.stderr)
        return 130


def read_data(source: str) -> pd.DataFrame:
    """Read ``--data``: a CSV file path, or else the name of a bundled data set.

    Parameters
    ----------
    source : str
        Path to a CSV file (optionally gzipped) or a name from
        [`lmmhmc.datasets.list_datasets()`][lmmhmc.datasets.list_datasets].

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    DataError
        If the file is missing or unreadable, or the name is not a bundled data set.
    """
    path = Path(source)
    if path.is_file():
        return _read_csv(path)
    if path.suffix in _CSV_SUFFIXES or len(path.parts) > 1:
        raise DataError(f"data file '{source}' not found")
    return datasets.load(source)


def _read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV file; a file read as one column whose header holds ``;``, a tab or ``|`` is
    read again with that delimiter."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
        header = str(frame.columns[0]) if frame.shape[1] == 1 else ""
        found = [d for d in _DELIMITERS if d in header]
        if found:
            frame = pd.read_csv(path, sep=max(found, key=header.count))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read '{path}' as CSV: {exc}") from exc
    return frame


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmmhmc",
        description="Bayesian linear mixed models with marginalized random effects.",
    )
    parser.add_argument("--version", action="version", version=f"lmmhmc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    describe = commands.add_parser(
        "describe",
        help="print the design of a formula on a data set",
        description=(
            "Parse an lme4-style formula, check it against the data and print the design: "
            "observations, fixed-effect columns and random-effect terms."
        ),
    )
    _add_model_arguments(describe)
    describe.set_defaults(run=_describe)

    fit = commands.add_parser(
        "fit",
        help="fit a model and print the posterior summary",
        description=(
            "Fit an lme4-style model by NUTS with the random effects marginalized, and print "
            "the formula, the marginalization plan, the sampler settings, the divergences and "
            "the posterior summary."
        ),
    )
    _add_model_arguments(fit)
    d = DEFAULTS
    fit.add_argument("--chains", type=int, default=d.chains,
                     help=f"Markov chains (default {d.chains})")
    fit.add_argument("--draws", type=int, default=d.draws,
                     help=f"draws per chain (default {d.draws})")
    fit.add_argument("--warmup", type=int, default=d.warmup,
                     help=f"warm-up iterations (default {d.warmup})")
    fit.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    fit.add_argument("--target-accept", type=float, default=d.target_accept,
                     help=f"NUTS target acceptance probability (default {d.target_accept})")
    fit.add_argument(
        "--marginalize", default=d.marginalize,
        help=f"terms to integrate out: auto, all, none (default {d.marginalize}), or "
             "comma-separated terms given by text or factor, e.g. 'Subject' or "
             "'1 | item,Days | Subject'",
    )
    fit.add_argument("--chain-method", choices=CHAIN_METHODS, default=d.chain_method,
                     help="parallel: as many chains at a time as CPU cores; sequential: one "
                          "after another; vectorized: all in one batch (GPU); auto: parallel "
                          f"on CPU, vectorized on a GPU (default {d.chain_method})")
    fit.add_argument("--out", metavar="FILE", help="save the fit to this netCDF file")
    fit.add_argument("--plot", metavar="DIR",
                     help="write trace.png, forest.png and ranef.png into this directory")
    fit.add_argument("--progress", action=argparse.BooleanOptionalAction, default=d.progress,
                     help="report progress on stderr: bars in a terminal, one line per stage "
                          "when stderr is a file or a pipe (default "
                          f"{'on' if d.progress else 'off'})")
    _add_summary_arguments(fit)
    fit.set_defaults(run=_fit)

    summary = commands.add_parser(
        "summary",
        help="print the summary of a saved fit",
        description="Print the header and posterior summary of a fit saved with `fit --out`.",
    )
    summary.add_argument("file", help="netCDF file written by `lmmhmc fit --out`")
    _add_summary_arguments(summary)
    summary.set_defaults(run=_summary)

    listing = commands.add_parser("datasets", help="list the bundled data sets")
    listing.set_defaults(run=_datasets)
    return parser


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that define a model: formula, data, weights, offset, missing values."""
    parser.add_argument("formula", help='lme4 syntax, e.g. "Reaction ~ Days + (Days | Subject)"')
    parser.add_argument(
        "--data", required=True, help="CSV file, or a bundled data set (see `lmmhmc datasets`)"
    )
    parser.add_argument("--sigma", metavar="TERMS",
                        help='a distributional model: the right-hand side of "sigma ~ ...", '
                             'e.g. "c + (1 + c | subj)" (log link)')
    parser.add_argument("--family", default="gaussian",
                        help="response family: gaussian (default), bernoulli, binomial "
                             "(y | trials(n) or cbind(s, f)) or poisson")
    parser.add_argument("--weights", help="column of positive observation weights")
    parser.add_argument("--offset", metavar="COLUMN",
                        help="column of a known offset of the linear predictor (added to the "
                             "formula's offset() terms)")
    parser.add_argument(
        "--na-action",
        choices=["drop", "raise"],
        default="drop",
        help="drop rows with missing values (default) or fail",
    )


def _add_summary_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the printed summary."""
    parser.add_argument("--random-effects", action="store_true",
                        help="also summarise every random effect (one row per level)")
    parser.add_argument("--hdi-prob", type=_probability, default=HDI_PROB,
                        help=f"probability mass of the HDIs (default {HDI_PROB})")


def _probability(text: str) -> float:
    """argparse type: a number in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


def _model(args: argparse.Namespace) -> Model:
    """Build the Model of the parsed arguments; warnings are printed as ``warning: ...``."""
    from lmmhmc.model import Model

    data = read_data(args.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        formula = args.formula if args.sigma is None else [args.formula,
                                                            f"sigma ~ {args.sigma}"]
        model = Model(formula, data, weights=args.weights, offset=args.offset,
                      na_action=args.na_action, family=args.family)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    return model


def _describe(args: argparse.Namespace) -> int:
    print(_model(args))
    return 0


def _fit(args: argparse.Namespace) -> int:
    model = _model(args)
    if args.marginalize in ("auto", "all", "none"):
        marginalize = args.marginalize
    else:
        marginalize = [m.strip() for m in args.marginalize.split(",") if m.strip()]
    result = model.fit(chains=args.chains, draws=args.draws, warmup=args.warmup,
                       seed=args.seed, target_accept=args.target_accept,
                       marginalize=marginalize, progress=args.progress,
                       chain_method=args.chain_method)
    result.print_summary(random_effects=args.random_effects, hdi_prob=args.hdi_prob)
    if args.out:
        result.save(args.out)
        print(f"\nSaved the fit to {args.out}")
    if args.plot:
        written = _write_plots(result, Path(args.plot), args.hdi_prob)
        print("Plots: " + ", ".join(str(p) for p in written))
    return 0


def _write_plots(result: FitResult, folder: Path, hdi_prob: float) -> list[Path]:
    """Write the trace, forest and caterpillar plots as PNG files into `folder`."""
    import matplotlib.pyplot as plt

    plt.switch_backend("Agg")  # files only: no window, works without a display
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "trace": result.plot_trace(),
        "forest": result.plot_forest(hdi_prob=hdi_prob),
        "ranef": result.plot_ranef(hdi_prob=hdi_prob),
    }
    written = []
    for name, fig in figures.items():
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def _summary(args: argparse.Namespace) -> int:
    from lmmhmc.io import load

    load(args.file).print_summary(random_effects=args.random_effects, hdi_prob=args.hdi_prob)
    return 0


def _datasets(args: argparse.Namespace) -> int:
    names = datasets.list_datasets()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {datasets.describe(name)}")
    return 0
