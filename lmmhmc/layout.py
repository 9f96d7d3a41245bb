"""The parameter layout: every parameter's name, shape and coordinates, spelled in one place.

Names follow bambi (see DESIGN.md §6)::

    fixed effects          the design's column names: "Intercept", "Days", "cond[T.b]"
    residual sd            "sigma" (none with known standard errors, ``y | se(s)``)
    random-effect sds      "<column>_sigma", e.g. "1|Subject_sigma", "Days|Subject_sigma"
    correlations           "<factor>_corr" (made unique when a factor has several correlated
                           terms), its pairs along "<factor>_corr_dim"
    random effects         "<column>", e.g. "1|Subject", along "<factor>__factor_dim"
    non-centered offsets   "<term text>_offset" (sampled terms only; not in the posterior;
                           for a non-Gaussian family also the standard-normal ``z`` of the
                           Laplace-reparameterized terms, `lmmhmc.laplace`)

A distributional model (``sigma ~ c + (1 + c | subj)``, `SIGMA_PREFIX`) has no "sigma"; its
parameters of log sigma carry the prefix "sigma_": "sigma_Intercept", "sigma_c",
"sigma_1|subj" (effects), "sigma_1|subj_sigma" (their sds), "sigma_subj_corr".

A correlated term's correlations are stored as the strict lower triangle of its correlation
matrix, row by row ([`TermLayout.pairs()`][lmmhmc.layout.TermLayout.pairs]); lme4's relative
covariance factors ``T_k`` are read from the flat ``theta`` vector in lme4's order
([`TermLayout.theta_entries()`][lmmhmc.layout.TermLayout.theta_entries]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SIGMA", "SIGMA_PREFIX", "Layout", "TermLayout", "parameter_layout"]

#: Name of the residual standard deviation.
SIGMA = "sigma"
#: Prefix of the parameters of a distributional model's ``log sigma`` (bambi's names).
SIGMA_PREFIX = f"{SIGMA}_"


@dataclass(frozen=True)
class TermLayout:
    """Names and shapes of one grouping term's parameters.

    Attributes
    ----------
    text : str
        The term as written, e.g. ``"Days | Subject"``.
    factor : str
        The grouping factor.
    columns : tuple of str
        The random-effect variables, one per column (``"1|Subject"``, ``"Days|Subject"``).
    n_levels : int
        Levels of the grouping factor.
    correlated : bool
        Whether the term has a correlation parameter.
    corr : str or None
        Name of the correlation parameter.
    marginalized : bool
        Integrated out (True) or sampled non-centered (False).
    prefix : str
        ``""`` for the mean's terms, `SIGMA_PREFIX` for those of log sigma (already in
        ``columns`` and ``corr``).
    parent : int or None
        Position of the term's sampled parent (`lmmhmc.design.Design.parents`), around whose
        effects its centered levels are centered; None without (always for a marginalized
        term or a parent that is marginalized).
    """

    text: str
    factor: str
    columns: tuple[str, ...]
    n_levels: int
    correlated: bool
    corr: str | None
    marginalized: bool = True
    prefix: str = ""
    parent: int | None = None

    @property
    def label(self) -> str:
        """The term as shown in tables: its text, ``"sigma: 1 + c | subj"`` for log sigma's."""
        return f"{self.prefix[:-1]}: {self.text}" if self.prefix else self.text

    @property
    def d(self) -> int:
        """Random effects per level."""
        return len(self.columns)

    @property
    def sds(self) -> tuple[str, ...]:
        """Names of the standard deviations, one per column."""
        return tuple(f"{c}_sigma" for c in self.columns)

    @property
    def offset(self) -> str:
        """Name of the standard-normal site of a sampled (non-centered) term."""
        return f"{self.prefix}{self.text}_offset"

    @property
    def level_dim(self) -> str:
        """Dimension of the random effects' levels in the posterior."""
        return f"{self.factor}__factor_dim"

    @property
    def corr_dim(self) -> str:
        """Dimension of the correlation pairs in the posterior."""
        return f"{self.corr}_dim"

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns of the correlation pairs: the strict lower triangle, row by row."""
        return np.tril_indices(self.d, -1)

    def pair_labels(self) -> list[str]:
        """``"<column j>, <column i>"`` for each pair ``(i, j)`` of
        [`pairs()`][lmmhmc.layout.TermLayout.pairs]."""
        rows, cols = self.pairs()
        return [f"{self.columns[j]}, {self.columns[i]}" for i, j in zip(rows, cols, strict=True)]

    def pair_names(self) -> list[str]:
        """Row names of the correlations in `arviz.summary()`: ``"corr[a, b]"``."""
        return [f"{self.corr}[{label}]" for label in self.pair_labels()]

    def theta_entries(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns in ``T_k`` of the term's ``theta`` entries, in lme4's order.

        Correlated terms: the lower triangle column by column; uncorrelated: the diagonal.
        """
        if self.correlated:
            cols, rows = np.triu_indices(self.d)
            return rows, cols
        return np.arange(self.d), np.arange(self.d)


@dataclass(frozen=True)
class Layout:
    """Every parameter of a model (hashable: part of a compiled program's cache key).

    Attributes
    ----------
    fixed : tuple of str
        Fixed-effect names (design column order).
    terms : tuple of TermLayout
        One per grouping term, in formula order.
    residual_sd : bool
        Whether ``sigma`` is one parameter (False for ``y | se(s)``: the residual sds are
        data; for a distributional model, where log sigma has its own linear predictor; and
        for a non-Gaussian family).
    sigma_fixed : tuple of str
        A distributional model's fixed effects of log sigma (``"sigma_Intercept"``, ...).
    sigma_terms : tuple of TermLayout
        Its grouping terms of log sigma (always sampled non-centered).
    family : str
        The response family (`lmmhmc.families`).
    """

    fixed: tuple[str, ...]
    terms: tuple[TermLayout, ...]
    residual_sd: bool = True
    sigma_fixed: tuple[str, ...] = ()
    sigma_terms: tuple[TermLayout, ...] = ()
    family: str = "gaussian"

    @property
    def gaussian(self) -> bool:
        """Whether the response is Gaussian (the marginalized terms integrated out exactly; the
        link is the identity)."""
        return self.family == "gaussian"

    @property
    def distributional(self) -> bool:
        """Whether log sigma has its own linear predictor (``sigma ~ ...``)."""
        return bool(self.sigma_fixed or self.sigma_terms)

    @property
    def sigma(self) -> str | None:
        """Name of the residual standard deviation; None when the model has none (known
        standard errors ``y | se(s)``, a distributional model, a non-Gaussian family)."""
        return SIGMA if self.residual_sd else None

    @property
    def marginalized(self) -> tuple[int, ...]:
        """Positions of the integrated-out terms."""
        return tuple(k for k, t in enumerate(self.terms) if t.marginalized)

    @property
    def sampled(self) -> tuple[int, ...]:
        """Positions of the terms sampled non-centered."""
        return tuple(k for k, t in enumerate(self.terms) if not t.marginalized)

    def sd_names(self) -> list[str]:
        """Every random-effect standard deviation, term by term."""
        return [name for t in self.terms for name in t.sds]

    def scale_names(self) -> list[str]:
        """``sigma`` (if any) and every random-effect standard deviation."""
        return [SIGMA, *self.sd_names()] if self.residual_sd else self.sd_names()

    def sigma_sd_names(self) -> list[str]:
        """The sds of log sigma's random effects (distributional models)."""
        return [name for t in self.sigma_terms for name in t.sds]

    def effect_names(self) -> list[str]:
        """Every random-effect variable (one per term column), log sigma's included."""
        return [c for t in (*self.terms, *self.sigma_terms) for c in t.columns]

    def corr_names(self) -> list[str]:
        """The correlation parameters, log sigma's included."""
        return [t.corr for t in (*self.terms, *self.sigma_terms) if t.correlated]

    def site_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of every sampled site, by name, in sampling order."""
        shapes: dict[str, tuple[int, ...]] = dict.fromkeys(
            [*self.fixed, SIGMA] if self.residual_sd else self.fixed, ())
        shapes.update(dict.fromkeys(self.sigma_fixed, ()))
        for t in (*self.terms, *self.sigma_terms):
            shapes.update(dict.fromkeys(t.sds, ()))
            if t.correlated:
                shapes[t.corr] = (t.d, t.d)
            if not t.marginalized or not self.gaussian:
                shapes[t.offset] = (t.n_levels, t.d)
        return shapes

    def effect_sites(self) -> frozenset[str]:
        """The random effects' standard-normal sites (one per term, of log sigma's too)."""
        return frozenset(t.offset for t in (*self.terms, *self.sigma_terms))

    def n_theta(self) -> int:
        """Length of lme4's ``theta`` vector."""
        return sum(len(t.theta_entries()[0]) for t in self.terms)


def parameter_layout(design, marginalized: tuple[int, ...] | None = None,
                     family: str = "gaussian") -> Layout:
    """The layout of ``design``'s parameters.

    Parameters
    ----------
    design : Design
    marginalized : tuple of int, optional
        Positions of the integrated-out terms (every term when omitted); for a non-Gaussian
        family, the Laplace-reparameterized ones.
    family : str
        The response family.
    """
    every = range(len(design.terms))
    marginalized = tuple(every) if marginalized is None else tuple(marginalized)
    part = design.sigma_part
    residual_sd = (family == "gaussian" and (design.se is None or design.se_sigma)
                   and part is None)
    parents = [None if p is None or p[0] in marginalized else p[0] for p in design.parents()]
    terms = _term_layouts(design.terms, marginalized, parents=parents)
    if part is None:
        return Layout(tuple(design.x_names), terms, residual_sd, family=family)
    return Layout(tuple(design.x_names), terms, residual_sd,
                  tuple(SIGMA_PREFIX + n for n in part.x_names),
                  _term_layouts(part.terms, (), SIGMA_PREFIX), family)


def _term_layouts(terms, marginalized: tuple[int, ...], prefix: str = "",
                  parents=None) -> tuple:
    """The TermLayout of every term (``prefix`` on the names of log sigma's terms; the sampled
    ``parents`` of the sampled ones, when given)."""
    return tuple(
        TermLayout(
            text=t.text,
            factor=t.factor,
            columns=tuple(prefix + c for c in t.columns),
            n_levels=t.n_levels,
            correlated=t.correlated,
            corr=prefix + _corr_name(terms, k) if t.correlated else None,
            marginalized=k in marginalized,
            prefix=prefix,
            parent=None if parents is None or k in marginalized else parents[k],
        )
        for k, t in enumerate(terms)
    )


def _corr_name(terms, k: int) -> str:
    """``"<factor>_corr"`` of term ``k``, numbered when a factor has several correlated terms."""
    term = terms[k]
    same = [j for j, t in enumerate(terms) if t.factor == term.factor and t.correlated]
    suffix = "" if len(same) <= 1 else f"_{same.index(k) + 1}"
    return f"{term.factor}_corr{suffix}"
