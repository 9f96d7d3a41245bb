"""Command-line interface: ``lmmhmc <command> ...``.

Commands
--------
describe
    Parse a formula on a data set and print the design.
datasets
    List the bundled data sets.

Errors caused by the formula or the data are printed as one line ``error: ...`` on stderr, with
exit status 2 (the status argparse uses for bad arguments).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lmmhmc import __version__, datasets
from lmmhmc.errors import DataError, LmmhmcError
from lmmhmc.model import Model

__all__ = ["main", "read_data"]

_CSV_SUFFIXES = {".csv", ".gz", ".txt", ".tsv"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        Exit status: 0 on success, 2 on an error in the formula, the data or the arguments.
    """
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except LmmhmcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def read_data(source: str) -> pd.DataFrame:
    """Read ``--data``: a CSV file path, or else the name of a bundled data set.

    Parameters
    ----------
    source : str
        Path to a CSV file (optionally gzipped) or a name from
        :func:`lmmhmc.datasets.list_datasets`.

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
        try:
            return pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read '{source}' as CSV: {exc}") from exc
    if path.suffix in _CSV_SUFFIXES or len(path.parts) > 1:
        raise DataError(f"data file '{source}' not found")
    return datasets.load(source)


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

    listing = commands.add_parser("datasets", help="list the bundled data sets")
    listing.set_defaults(run=_datasets)
    return parser


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that define a model: formula, data, weights, missing-value handling."""
    parser.add_argument("formula", help='lme4 syntax, e.g. "Reaction ~ Days + (Days | Subject)"')
    parser.add_argument(
        "--data", required=True, help="CSV file, or a bundled data set (see `lmmhmc datasets`)"
    )
    parser.add_argument("--weights", help="column of positive observation weights")
    parser.add_argument(
        "--na-action",
        choices=["drop", "raise"],
        default="drop",
        help="drop rows with missing values (default) or fail",
    )


def _model(args: argparse.Namespace) -> Model:
    """Build the Model of the parsed arguments; warnings are printed as ``warning: ...``."""
    data = read_data(args.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = Model(args.formula, data, weights=args.weights, na_action=args.na_action)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    return model


def _describe(args: argparse.Namespace) -> int:
    print(_model(args))
    return 0


def _datasets(args: argparse.Namespace) -> int:
    names = datasets.list_datasets()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {datasets.describe(name)}")
    return 0
