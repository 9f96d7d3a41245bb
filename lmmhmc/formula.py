"""Parse lme4-style mixed-model formulas.

formulaic understands the fixed-effects part of a formula but not lme4's random-effect terms
``(expr | g)``. [`parse_formula()`][lmmhmc.formula.parse_formula] splits them off, like lme4's
``findbars`` / ``nobars``: the right-hand side is cut at its top-level ``+`` and ``-`` signs, and
every parenthesised summand whose content has a top-level ``|`` or ``||`` is a *bar term*.
Everything else is handed back, as text, for formulaic to evaluate.

Supported bar terms:

========================  ========================================================"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lmmhmc.errors import FormulaError

__all__ = ["ADDITIONS", "Addition", "BarTerm", "ParsedFormula", "parse_formula"]

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_QUOTES = "'\"`"
# A name in a grouping-factor expression: a Python identifier (dots allowed, as in R) or a
# backtick-quoted column name.
_NAME = re.compile(r"^(?:[A-Za-z_.][\w.]*|`[^`]+`)$")
# Text ending in the mantissa of a number in scientific notation, e.g. "1e" of "1e-3".
_EXPONENT = re.compile(r"(?<![\w.])\d+\.?\d*[eE]$")
# The start of an offset term, ``offset(``.
_OFFSET = re.compile(r"^offset\s*\(")
# ``offset(`` anywhere, as a call (not the end of a longer name).
_OFFSET_CALL = re.compile(r"(?<![\w.])offset\s*\(")
# A call ``name(...)`` filling a whole piece of text: an addition term or ``cbind``.
_CALL = re.compile(r"^([A-Za-z_.][\w.]*)\s*\((.*)\)$", re.DOTALL)

#: brms's response addition terms that lmmhmc supports, with their options and defaults.
ADDITIONS = {"se": {"sigma": "FALSE"}, "trials": {}}


@dataclass(frozen=True)
class BarTerm:
    """One random-effect term ``(lhs | factor)`` after expansion of nesting.

    Attributes
    ----------
    lhs : str
        The left-hand side (covariates), e.g. ``"1 + Days"``; evaluated by formulaic, so an
        intercept is implied unless removed with ``0 +`` or ``-1``.
    factor : str
        The grouping factor: a column name, or names joined by ``:`` for an interaction.
    correlated : bool
        False for ``||`` (independent columns).
    text : str
        The term as written after expansion, e.g. ``"1 + Days | Subject"``.
    """

    lhs: str
    factor: str
    correlated: bool
    text: str

    @property
    def factor_names(self) -> list[str]:
        """The column names that make up the grouping factor (one for a plain factor)."""
        return self.factor.split(":")


@dataclass(frozen=True)
class Addition:
    """One response addition term of brms's ``y | name(args)`` syntax.

    Attributes
    ----------
    name : str
        ``"se"`` (known standard errors) or ``"trials"`` (binomial trials).
    args : tuple of str
        The positional arguments as written: expressions evaluated as Python on the data.
    options : tuple of (str, str)
        The named arguments, every supported one present (defaults from `ADDITIONS`), e.g.
        ``(("sigma", "TRUE"),)``.
    """

    name: str
    args: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()

    def option(self, key: str) -> str:
        """The value of the named argument `key`."""
        return dict(self.options)[key]


@dataclass(frozen=True)
class ParsedFormula:
    """A mixed-model formula split into its parts.

    Attributes
    ----------
    response : str
        The left-hand side of ``~`` as written (whitespace collapsed), e.g. ``"log(rt)"``.
    fixed : str
        The fixed-effects right-hand side for formulaic: ``"1"`` when no fixed term is left,
        ``"0"`` (or ``"-1"``) when the user removed the intercept and wrote nothing else.
    bars : list of BarTerm
        The random-effect terms in formula order, nested terms expanded.
    offsets : tuple of str
        The expressions inside the ``offset(...)`` terms, in formula order (empty without
        offsets), e.g. ``("np.log(n)",)``.
    additions : tuple of Addition
        The response's addition terms (``y | se(s)``, ``y | trials(n)``); lme4's
        ``cbind(s, f)`` response becomes the response ``s`` with ``trials((s) + (f))``.
    """

    response: str
    fixed: str
    bars: list[BarTerm]
    offsets: tuple[str, ...] = ()
    additions: tuple[Addition, ...] = ()


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4-style formula into response, fixed part and random-effect terms.

    Parameters
    ----------
    formula : str
        For example ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    FormulaError
        If the formula has no single ``~``, an empty side, unbalanced parentheses, or a malformed
        random-effect term (the message quotes the term).

    Examples
    --------
    >>> p = parse_formula("y ~ x + (1 | a/b)")
    >>> p.fixed, [b.text for b in p.bars]
    ('x', ['1 | a', '1 | a:b'])
    >>> parse_formula("y ~ x + offset(np.log(n)) + (1 | g)").offsets
    ('np.log(n)',)
    >>> parse_formula("y | se(s, sigma = TRUE) ~ 1 + (1 | g)").additions
    (Addition(name='se', args=('s',), options=(('sigma', 'TRUE'),)),)
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, got {type(formula).__name__}")
    depth = _depths(formula)
    tildes = [i for i, ch in enumerate(formula) if ch == "~" and depth[i] == 0]
    if len(tildes) != 1:
        raise FormulaError(f"formula must have the form 'response ~ terms': '{formula}'")
    response, additions = _response_part(_squash(formula[: tildes[0]]))
    rhs = formula[tildes[0] + 1 :]
    if not response:
        raise FormulaError(f"formula has no response (left of '~'): '{formula}'")
    if not rhs.strip():
        raise FormulaError(f"formula has no terms (right of '~'): '{formula}'")

    fixed: list[str] = []
    bars: list[BarTerm] = []
    offsets: list[str] = []
    for sign, piece in _summands(rhs):
        offset = _offset_content(piece)
        inner = None if offset is not None else _bar_content(piece)
        if offset is not None:
            if sign == "-":
                raise FormulaError(f"offset term '{piece}' cannot be subtracted; write "
                                   "'offset(-x)' for a negative offset")
            offsets.append(offset)
        elif inner is None:
            if _OFFSET_CALL.search(piece):
                raise FormulaError(f"offset in '{piece}' must be a separate term of the sum, "
                                   "like 'x + offset(o)'")
            fixed.append(piece if not fixed and sign == "+" else f"{sign} {piece}")
        elif sign == "-":
            raise FormulaError(f"random-effect term '{piece}' cannot be subtracted")
        else:
            bars.extend(_expand_bar(inner, piece))
    return ParsedFormula(response=response, fixed=" ".join(fixed) or "1", bars=bars,
                         offsets=tuple(offsets), additions=additions)


def _response_part(lhs: str) -> tuple[str, tuple[Addition, ...]]:
    """Split the left-hand side into the response and its addition terms.

    ``y | se(s) + trials(n)`` (brms) gives ``y`` and the two terms; ``cbind(s, f)`` (lme4's
    binomial response) gives ``s`` and ``trials((s) + (f))``.
    """
    depth = _depths(lhs)
    bars = [i for i, ch in enumerate(lhs) if ch == "|" and depth[i] == 0]
    if len(bars) > 1:
        raise FormulaError(f"response '{lhs}' has more than one '|'; write several addition "
                           "terms as 'y | se(s) + trials(n)'")
    response = _squash(lhs[: bars[0]]) if bars else lhs
    additions = []
    for sign, piece in _summands(lhs[bars[0] + 1:]) if bars else []:
        if sign == "-":
            raise FormulaError(f"addition term '{piece}' in '{lhs}' cannot be subtracted")
        additions.append(_addition(piece, lhs))
    if bars and not additions:
        raise FormulaError(f"response '{lhs}' has nothing after '|'; write e.g. 'y | se(s)'")
    call = _CALL.match(response)
    if call and call.group(1) == "cbind":
        args = _arguments(call.group(2), response)
        if len(args) != 2 or any("=" in a for a in args):
            raise FormulaError(f"'{response}' must have two arguments, successes and failures: "
                               "'cbind(successes, failures)'")
        if any(a.name == "trials" for a in additions):
            raise FormulaError(f"'{lhs}' gives the trials twice: use 'cbind(s, f)' or "
                               "'s | trials(n)', not both")
        response = args[0]
        additions.append(Addition("trials", (f"({args[0]}) + ({args[1]})",)))
    names = [a.name for a in additions]
    for name in set(names):
        if names.count(name) > 1:
            raise FormulaError(f"response '{lhs}' has the addition term '{name}()' twice")
    return response, tuple(additions)


def _addition(piece: str, lhs: str) -> Addition:
    """Parse one addition term ``name(arg, key = value)``."""
    call = _CALL.match(piece)
    if not call or call.group(1) not in ADDITIONS:
        name = call.group(1) if call else piece
        hint = (f"; pass weights='{call.group(2).strip()}' instead"
                if call and name == "weights" else "")
        raise FormulaError(
            f"unsupported response addition term '{piece}' in '{lhs}'; lmmhmc supports "
            f"{', '.join(f'{n}()' for n in ADDITIONS)}{hint}")
    name, known = call.group(1), ADDITIONS[call.group(1)]
    args, options = [], dict(known)
    for arg in _arguments(call.group(2), piece):
        key, eq, value = arg.partition("=")
        if eq and key.strip() in known and value.strip():
            options[key.strip()] = _option_value(value.strip(), key.strip(), piece)
        elif eq and _NAME.match(key.strip()) and not value.startswith("="):
            raise FormulaError(f"'{piece}' has no argument '{key.strip()}'; "
                               f"{name}() takes {_quoted_options(known)}")
        else:
            args.append(arg)
    if len(args) != 1:
        raise FormulaError(f"'{piece}' must name one column or expression, e.g. '{name}(s)'")
    return Addition(name, tuple(args), tuple(sorted(options.items())))


def _option_value(value: str, key: str, piece: str) -> str:
    """A logical option as ``"TRUE"`` or ``"FALSE"`` (R's and Python's spellings)."""
    logical = {"TRUE": "TRUE", "T": "TRUE", "True": "TRUE",
               "FALSE": "FALSE", "F": "FALSE", "False": "FALSE"}
    if value not in logical:
        raise FormulaError(f"'{key}' in '{piece}' must be TRUE or FALSE, got '{value}'")
    return logical[value]


def _quoted_options(known: dict[str, str]) -> str:
    """``sigma = FALSE`` style list of the named arguments, or "no named arguments"."""
    return ", ".join(f"'{k} = {v}'" for k, v in known.items()) or "no named arguments"


def _arguments(text: str, piece: str) -> list[str]:
    """The comma-separated top-level arguments of a call, squashed."""
    depth = _depths(text)
    cuts = [-1] + [i for i, ch in enumerate(text) if ch == "," and depth[i] == 0] + [len(text)]
    args = [_squash(text[a + 1:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    if any(not a for a in args):
        raise FormulaError(f"'{piece}' has an empty argument")
    return args


def _squash(text: str) -> str:
    """Collapse runs of whitespace to single spaces and strip the ends."""
    return " ".join(text.split())


def _depths(text: str) -> list[int]:
    """Bracket depth of each character of `text`; -1 inside quotes.

    An opening or closing bracket gets the depth outside it.

    Raises
    ------
    FormulaError
        On unbalanced brackets or an unterminated quote.
    """
    depths: list[int] = []
    stack: list[tuple[str, int]] = []
    quote, escaped = "", False
    for i, ch in enumerate(text):
        if quote:
            depths.append(-1)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in _QUOTES:
            quote = ch
            depths.append(-1)
        elif ch in _OPEN:
            depths.append(len(stack))
            stack.append((ch, i))
        elif ch in _CLOSE:
            if not stack or stack[-1][0] != _CLOSE[ch]:
                raise FormulaError(
                    f"unbalanced parentheses: unexpected '{ch}' in '{_squash(text)}'"
                )
            stack.pop()
            depths.append(len(stack))
        else:
            depths.append(len(stack))
    if quote:
        raise FormulaError(f"unterminated quote {quote} in '{_squash(text)}'")
    if stack:
        start = stack[-1][1]
        raise FormulaError(f"unbalanced parentheses: '{_squash(text[start:])}' is never closed")
    return depths


def _summands(rhs: str) -> list[tuple[str, str]]:
    """Cut `rhs` at its top-level ``+`` and ``-`` signs into ``(sign, text)`` pairs."""
    depth = _depths(rhs)
    pieces: list[tuple[str, str]] = []
    sign, start = "+", 0
    for i, ch in enumerate(rhs):
        if ch not in "+-" or depth[i] != 0 or _EXPONENT.search(rhs[start:i]):
            continue
        pieces.append((sign, rhs[start:i].strip()))
        sign, start = ch, i + 1
    pieces.append((sign, rhs[start:].strip()))
    if pieces[0][1] == "":  # a leading sign, as in "-1 + x"
        pieces.pop(0)
    for sign, text in pieces:
        if not text:
            raise FormulaError(f"misplaced '{sign}' (empty term) in '{_squash(rhs)}'")
    return [(sign, _squash(text)) for sign, text in pieces]


def _offset_content(piece: str) -> str | None:
    """The expression inside a summand ``offset(expr)``, or None for any other summand.

    Raises
    ------
    FormulaError
        If the offset is empty or holds a random-effect bar ``|``.
    """
    match = _OFFSET.match(piece)
    if match is None:
        return None
    start = match.end() - 1
    if _closing(piece[start:]) != len(piece) - 1 - start:
        return None  # e.g. "offset(a) * b": not a whole offset term
    inner = _squash(piece[start + 1 : -1])
    if not inner:
        raise FormulaError(f"offset term '{piece}' is empty; write 'offset(column)'")
    if any(ch == "|" and d >= 0 for ch, d in zip(inner, _depths(inner), strict=True)):
        raise FormulaError(f"offset term '{piece}' cannot hold a random-effect bar '|'")
    return inner


def _bar_content(piece: str) -> str | None:
    """The inside of a summand ``(lhs | g)``, or None if the summand is a fixed-effects term.

    Raises
    ------
    FormulaError
        If ``|`` appears in the summand other than as a parenthesised random-effect term.
    """
    depth = _depths(piece)
    if not any(ch == "|" and d >= 0 for ch, d in zip(piece, depth, strict=True)):
        return None
    if any(ch == "|" and d == 0 for ch, d in zip(piece, depth, strict=True)):
        raise FormulaError(
            f"'|' outside parentheses in '{piece}'; write random-effect terms as '(1 | g)'"
        )
    inner = piece
    while inner.startswith("(") and _closing(inner) == len(inner) - 1:
        inner = inner[1:-1].strip()
        if any(ch == "|" and d == 0 for ch, d in zip(inner, _depths(inner), strict=True)):
            return inner
    raise FormulaError(
        f"random-effect term '{piece}' must be a separate term of the sum, like 'x + (1 | g)'"
    )


def _closing(text: str) -> int:
    """Index of the bracket closing the one at ``text[0]``."""
    depth = _depths(text)
    return next(i for i in range(1, len(text)) if depth[i] == 0)


def _expand_bar(inner: str, piece: str) -> list[BarTerm]:
    """Split ``lhs | factor`` (or ``||``) and expand nesting ``a/b`` into BarTerms."""
    depth = _depths(inner)
    bars = [i for i, ch in enumerate(inner) if ch == "|" and depth[i] == 0]
    double = len(bars) == 2 and bars[1] == bars[0] + 1
    if len(bars) > 2 or (len(bars) == 2 and not double):
        raise FormulaError(f"random-effect term '{piece}' has more than one '|'")
    lhs = _squash(inner[: bars[0]])
    rhs = _squash(inner[bars[-1] + 1 :])
    if not lhs:
        raise FormulaError(f"random-effect term '{piece}' has an empty left-hand side")
    if not rhs:
        raise FormulaError(f"random-effect term '{piece}' has no grouping factor")
    nests = [[name.strip() for name in part.split(":")] for part in rhs.split("/")]
    for name in (name for part in nests for name in part):
        if not _NAME.match(name):
            raise FormulaError(
                f"grouping factor of '{piece}' must be column names joined by ':' or '/', "
                f"got '{rhs}'"
            )
    bar = "||" if double else "|"
    terms: list[BarTerm] = []
    names: list[str] = []
    for part in nests:
        names.extend(name.strip("`") for name in part)
        factor = ":".join(names)
        terms.append(BarTerm(lhs, factor, not double, f"{lhs} {bar} {factor}"))
    return terms
