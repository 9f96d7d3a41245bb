"""Exceptions raised by lmmhmc.

Every error the user can fix by changing the formula or the data is a subclass of
[`LmmhmcError`][lmmhmc.errors.LmmhmcError], itself a `ValueError`, so that callers can catch them
all at once and the command-line interface can print them as one line.
"""

from __future__ import annotations

import difflib
import sys
import warnings
from collections.abc import Iterable

__all__ = ["ConvergenceWarning", "DataError", "FormulaError", "LmmhmcError"]


class LmmhmcError(ValueError):
    """Base class of the errors caused by the user's formula or data."""


class FormulaError(LmmhmcError):
    """The model formula is malformed or cannot be evaluated."""


class DataError(LmmhmcError):
    """The data cannot be used with the formula (missing columns, bad values, ...)."""


class ConvergenceWarning(UserWarning):
    """A fit failed a convergence check (see `lmmhmc.diagnostics`)."""


def warn_user(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first caller outside lmmhmc (the user's line)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("lmmhmc"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)


def did_you_mean(name: str, choices: Iterable[object]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest matches of `name`, or ``""`` if none.

    Parameters
    ----------
    name : str
        The name that was not found.
    choices : iterable
        The names that exist (converted with ``str``).

    Returns
    -------
    str
        A suffix to append to an error message.
    """
    matches = difflib.get_close_matches(name, [str(c) for c in choices], n=3, cutoff=0.6)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"
