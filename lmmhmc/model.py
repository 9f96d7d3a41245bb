"""The user-facing :class:`Model`: a formula and a data frame, checked and turned into a design."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lmmhmc.design import Design, build_design

__all__ = ["Model"]

# Level labels shown per term in the description.
_SHOW_LEVELS = 5


class Model:
    """A linear mixed model given in lme4 syntax.

    Building a Model parses the formula and validates the data (see
    :func:`lmmhmc.design.build_design`); nothing is sampled yet.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : pandas.DataFrame
        The observations.
    weights : str or array-like, optional
        Column name or vector of positive observation weights.
    na_action : {"drop", "raise"}
        What to do with rows that have missing values in the used columns.

    Attributes
    ----------
    formula : str
    data : pandas.DataFrame
        The data frame as given (not copied).
    weights : str, array-like or None
        As given.
    na_action : str
        As given.
    design : Design
        Response, fixed-effects matrix and random-effect terms.

    Examples
    --------
    >>> import lmmhmc
    >>> data = lmmhmc.datasets.load("sleepstudy")
    >>> model = lmmhmc.Model("Reaction ~ Days + (Days | Subject)", data)
    >>> model.design.X.shape, model.design.terms[0].n_levels
    ((180, 2), 18)
    """

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        *,
        weights: str | np.ndarray | None = None,
        na_action: str = "drop",
    ) -> None:
        self.formula = formula
        self.data = data
        self.weights = weights
        self.na_action = na_action
        self.design: Design = build_design(formula, data, weights=weights, na_action=na_action)

    def fit_ml(self, reml: bool = False, starts: int = 3):
        """Maximum-likelihood (or REML) estimates, as lme4's ``lmer``.

        See :func:`lmmhmc.ml.fit_ml`; returns an :class:`lmmhmc.ml.MLResult`.
        """
        from lmmhmc.ml import fit_ml

        return fit_ml(self.design, reml=reml, starts=starts)

    @property
    def priors(self):
        """The default priors of this model (:class:`lmmhmc.priors.Priors`)."""
        from lmmhmc.priors import default_priors

        return default_priors(self.design)

    def fit(self, **kwargs):
        """Sample the posterior with NUTS; see :func:`lmmhmc.fit` for the arguments."""
        from lmmhmc.sampling import fit_model

        return fit_model(self, **kwargs)

    def __repr__(self) -> str:
        d = self.design
        dropped = f", {d.n_dropped} dropped for missing values" if d.n_dropped else ""
        weighted = ", weighted" if d.weights is not None else ""
        lines = [
            f"lmmhmc.Model: {d.formula}",
            f"  observations: {d.n_obs} (response: {d.response}{weighted}{dropped})",
            f"  fixed effects ({len(d.x_names)}): {', '.join(d.x_names) or '(none)'}",
            f"  group terms ({len(d.terms)}):",
        ]
        for t in d.terms:
            shown = ", ".join(t.levels[:_SHOW_LEVELS]) + (
                ", ..." if t.n_levels > _SHOW_LEVELS else ""
            )
            kind = ", correlated" if t.correlated else ", uncorrelated" if t.d > 1 else ""
            lines += [
                f"    ({t.text})",
                f"      factor {t.factor}: {t.n_levels} levels ({shown})",
                f"      columns ({t.d}{kind}): {', '.join(t.columns)}",
            ]
        return "\n".join(lines)
