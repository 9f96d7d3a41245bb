"""Hypotheses about the parameters, evaluated on the posterior draws (brms's ``hypothesis()``).

A hypothesis is ``lhs <op> rhs`` with one comparison ``<op>`` among ``<``, ``<=``, ``>``,
``>=`` and ``=`` (or ``==``); each side is arithmetic (``+ - * /``, parentheses, numbers) on
posterior parameters, named as the rows of
[`lmmhmc.results.FitResult.summary()`][lmmhmc.results.FitResult.summary]: ``Days``, ``int[T.low]``,
``1|Subject_sigma``, ``Subject_corr[1|Subject, Days|Subject]``, a random effect ``1|Subject[308]``.
Per posterior draw ``s`` it gives the difference ``delta_s = lhs_s - rhs_s``.

Names may hold brackets, dots, bars and spaces, so they are not parsed as Python: every name
found in the text (longest first) is replaced by a placeholder, and what remains is parsed with
`ast` and evaluated node by node with NumPy; any node besides numbers, placeholders,
``+ - * /`` and unary signs is refused. Nothing is ever passed to `eval()`.
"""

from __future__ import annotations

import ast
import itertools
import operator
import re

import numpy as np
import xarray as xr

from .errors import LmmhmcError, did_you_mean

__all__ = ["difference"]

#: The comparisons, longest first, and the direction they state of ``lhs - rhs``.
_COMPARISONS = {"<=": "<", ">=": ">", "==": "=", "<": "<", ">": ">", "=": "="}
_COMPARISON = re.compile("|".join(re.escape(op) for op in _COMPARISONS))
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_PLACEHOLDER = "__lmmhmc_{}__"
_ALLOWED = "only parameter names, numbers, + - * / and parentheses are allowed"


def difference(text: str, posterior: xr.Dataset) -> tuple[xr.DataArray, str]:
    """Draws of ``lhs - rhs`` of the hypothesis ``text`` and the direction it states.

    Parameters
    ----------
    text : str
        E.g. ``"Days > 5"``, ``"Intercept - 250 = 0"``, ``"int[T.low] < 0"``.
    posterior : xarray.Dataset
        The posterior group (dimensions ``chain``, ``draw`` first).

    Returns
    -------
    delta : xarray.DataArray
        ``(chain, draw)``: ``lhs - rhs`` per draw.
    direction : {"<", ">", "="}
        What the hypothesis states of ``delta``: negative, positive, or zero.

    Raises
    ------
    LmmhmcError
        If `text` has no comparison or more than one, an unknown name or anything besides
        names, numbers, ``+ - * /`` and parentheses.
    """
    elements = _elements(text, posterior)
    substituted, values = _substitute(text, elements, posterior)
    sides = _COMPARISON.split(substituted)
    ops = _COMPARISON.findall(substituted)
    if len(ops) != 1:
        raise LmmhmcError(
            f"hypothesis '{text}' needs exactly one comparison (<, <=, >, >=, =), "
            f"found {len(ops)}"
        )
    try:
        lhs, rhs = (_node(_parse(side), values, side) for side in sides)
    except _Unknown as err:
        name = _restore(str(err), values)
        raise LmmhmcError(f"unknown parameter '{name}' in hypothesis '{text}'"
                          f"{did_you_mean(name, posterior.data_vars)}") from None
    except (SyntaxError, _Refused):
        raise LmmhmcError(f"cannot read hypothesis '{text}': {_ALLOWED}") from None
    shape = (posterior.sizes["chain"], posterior.sizes["draw"])
    delta = xr.DataArray(np.broadcast_to(lhs - rhs, shape), dims=("chain", "draw"),
                         name="delta")
    return delta, _COMPARISONS[ops[0]]


def _elements(text: str, posterior: xr.Dataset) -> dict[str, tuple[str, dict]]:
    """Parameter names (scalars and the elements of array variables, as ArviZ's summary names
    them: ``var[label]``, ``var[label1, label2]``) that occur in `text`, with their variable and
    coordinates."""
    found = {}
    for name, var in posterior.data_vars.items():
        name = str(name)
        if name not in text:
            continue
        dims = [d for d in var.dims if d not in ("chain", "draw")]
        labels = itertools.product(*(posterior[d].values for d in dims))
        for label in labels:
            element = f"{name}[{', '.join(str(v) for v in label)}]" if dims else name
            if element in text:
                found[element] = (name, dict(zip(dims, label, strict=True)))
    return found


def _substitute(text: str, elements: dict, posterior: xr.Dataset) -> tuple[str, dict]:
    """`text` with every name in `elements` (longest first) replaced by a placeholder, and for
    each placeholder the name and its draws ``(chain, draw)``."""
    if not elements:
        return text, {}
    names = sorted(elements, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(n) for n in names))
    placeholders: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        return placeholders.setdefault(match.group(0), _PLACEHOLDER.format(len(placeholders)))

    substituted = pattern.sub(replace, text)
    values = {}
    for name, placeholder in placeholders.items():
        var, coords = elements[name]
        values[placeholder] = (name, posterior[var].sel(coords).values)
    return substituted, values


class _Unknown(Exception):
    """A name (or subscripted name) that is no parameter; its text is the message."""


class _Refused(Exception):
    """A node outside the whitelist."""


def _parse(side: str) -> ast.AST:
    """The expression tree of one side of the comparison (`side` stripped)."""
    return ast.parse(side.strip(), mode="eval").body


def _restore(name: str, values: dict) -> str:
    """`name` with its placeholders replaced by the parameter names they stand for."""
    for placeholder, (original, _) in values.items():
        name = name.replace(placeholder, original)
    return name


def _node(node: ast.AST, values: dict, source: str):
    """Value of a node of the whitelist (see the module docstring): draws or a number.

    Names, subscripts, attributes and ``|`` that are no parameter (the parameter names hold
    brackets, dots and bars) are reported as unknown names, with their text in `source`.
    """
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id in values:
        return values[node.id][1]
    if (isinstance(node, ast.Name | ast.Subscript | ast.Attribute)
            or isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)):
        raise _Unknown(ast.get_source_segment(source.strip(), node))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_node(node.left, values, source),
                                      _node(node.right, values, source))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_node(node.operand, values, source))
    raise _Refused
