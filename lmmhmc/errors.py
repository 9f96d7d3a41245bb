"""Exceptions and warnings raised by lmmhmc.

Every error the user can fix by changing the formula, the data or the arguments is a subclass
of `LmmhmcError`, itself a `ValueError`, so that callers can catch them all at
once and the command-line interface can print them as one line. Every warning is a subclass of
`LmmhmcWarning` (a `UserWarning`), so that they can be filtered together.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

__all__ = [
    "ArgumentError",
    "ConvergenceWarning",
    "DataError",
    "DataWarning",
    "FormulaError",
    "LmmhmcError",
    "LmmhmcWarning",
    "ModelWarning",
    "ResponseWarning",
    "checked_arguments",
    "did_you_mean",
    "warn",
]

F = TypeVar("F", bound=Callable)
_PACKAGE = str(Path(__file__).resolve().parent)


class LmmhmcError(ValueError):
    """Base class of the errors caused by the user's formula, data or arguments."""


class FormulaError(LmmhmcError):
    """The model formula is malformed or cannot be evaluated."""


class DataError(LmmhmcError):
    """The data cannot be used with the formula (missing columns, bad values, ...)."""


class ArgumentError(LmmhmcError, TypeError):
    """A function was called with an unknown or unsupported argument."""


class LmmhmcWarning(UserWarning):
    """Base class of the warnings about a model that lmmhmc can fit but may not identify."""


class DataWarning(LmmhmcWarning):
    """Data that lmmhmc changed before fitting (rows dropped for missing values)."""


class ModelWarning(LmmhmcWarning):
    """A random-effect term that the data hardly inform (few levels, confounded slopes, ...)."""


class ResponseWarning(LmmhmcWarning):
    """A response that does not look Gaussian (binary or counts)."""


class ConvergenceWarning(LmmhmcWarning):
    """A fit failed a convergence check (see `lmmhmc.diagnostics`)."""


class SpeedWarning(LmmhmcWarning):
    """A fit runs slower than the machine allows (chains one after another on several cores)."""


def warn(message: str, category: type[Warning]) -> None:
    """Issue a warning attributed to the first caller outside lmmhmc (the user's line)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def did_you_mean(name: str, choices: Iterable[object]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest matches of `name`, or ``""`` if none.

    A choice that differs from `name` only in case is the one suggested.

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
    names = [str(c) for c in choices]
    matches = [n for n in names if n.lower() == name.lower()]
    matches = matches or difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"


def checked_arguments(func: F) -> F:
    """Decorate `func` so that a call with unknown arguments raises `ArgumentError`.

    The message names the unknown argument, the closest valid ones and all valid ones
    (``family=`` gets its own message: it belongs to the model). The decorated
    function keeps its signature and docstring (``functools.wraps``).
    """
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise _argument_error(func, signature, kwargs, exc) from None
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _argument_error(func: Callable, signature: inspect.Signature, kwargs: dict,
                    exc: TypeError) -> ArgumentError:
    """The ArgumentError of a call of `func` that ``signature.bind`` refused with `exc`."""
    name = func.__qualname__.removesuffix(".__init__")
    if "." not in name:
        name = f"{func.__module__.split('.')[0]}.{name}"
    if "family" in kwargs and "family" not in signature.parameters:
        return ArgumentError(
            f"{name}() got family={kwargs['family']!r}: the family belongs to the model; pass "
            "it to lmmhmc.Model(..., family=...) or lmmhmc.fit(..., family=...)")
    valid = [p for p in signature.parameters if p != "self"]
    unknown = [k for k in kwargs if k not in signature.parameters]
    if not unknown:
        return ArgumentError(f"{name}(): {exc}")
    return ArgumentError(
        f"{name}() got an unknown argument '{unknown[0]}'{did_you_mean(unknown[0], valid)} "
        f"(valid arguments: {', '.join(valid)})")
