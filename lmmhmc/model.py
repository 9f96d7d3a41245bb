"""The user-facing [`Model`][lmmhmc.Model]: a formula and a data frame, checked and turned into a
design."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from lmmhmc.checks import check_model
from lmmhmc.design import Design, build_design
from lmmhmc.distributional import complete_rows, sigma_design, split_formulas
from lmmhmc.errors import ArgumentError, LmmhmcError, checked_arguments
from lmmhmc.options import DEFAULTS, ML_STARTS, FitOptions

__all__ = ["Model"]

# Level labels shown per term in the description.
_SHOW_LEVELS = 5


class Model:
    """A linear mixed model given in lme4 syntax.

    Building a Model parses the formula, validates the data (see
    `lmmhmc.design.build_design`) and checks that the model is identified (see
    `lmmhmc.checks`: errors where lme4 refuses a model, `lmmhmc.errors.LmmhmcWarning`
    where the data cannot inform part of it); nothing is sampled yet.

    Parameters
    ----------
    formula : str or list of str
        lme4 syntax, e.g. ``"Reaction ~ Days + (Days | Subject)"``; or, for a distributional
        model, the mean formula and one for the residual sd,
        ``["log(RT) ~ c + (1 + c | subj)", "sigma ~ c + (1 + c | subj)"]``
        (`lmmhmc.distributional`).
    data : pandas.DataFrame
        The observations.
    weights : str or array-like, optional
        Column name or vector of positive observation weights.
    offset : str or array-like, optional
        Column name or vector (length ``len(data)``) of a known offset of the linear
        predictor, added to the formula's ``offset(...)`` terms (lme4's ``offset=``).
    na_action : {"drop", "raise"}
        What to do with rows that have missing values in the used columns.
    allow_one_per_level : bool
        Fit a grouping factor with one observation per level (its random effects are
        confounded with the residual) with a warning, instead of raising
        `lmmhmc.errors.DataError` as lme4 does.
    family : {"gaussian", "bernoulli", "binomial", "poisson"}
        The response distribution (brms's names, canonical links: identity, logit, logit,
        log). A binomial response is written ``y | trials(n) ~ ...`` or
        ``cbind(successes, failures) ~ ...``; see `lmmhmc.families`.

    Attributes
    ----------
    formula : str
    data : pandas.DataFrame
        The data frame as given (not copied).
    weights : str, array-like or None
        As given.
    offset : str, array-like or None
        As given.
    na_action : str
        As given.
    allow_one_per_level : bool
        As given.
    family : str
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

    @checked_arguments
    def __init__(
        self,
        formula: str | Sequence[str],
        data: pd.DataFrame,
        *,
        weights: str | np.ndarray | None = None,
        offset: str | np.ndarray | None = None,
        na_action: str = "drop",
        allow_one_per_level: bool = False,
        family: str = "gaussian",
    ) -> None:
        self.family = family
        self.formula = formula
        self.data = data
        self.weights = weights
        self.offset = offset
        self.na_action = na_action
        self.allow_one_per_level = allow_one_per_level
        mean, sigma = split_formulas(formula)
        if sigma is not None:
            data, args = complete_rows(data, mean, sigma,
                                       {"weights": weights, "offset": offset}, na_action)
            weights, offset = args["weights"], args["offset"]
        self.design: Design = build_design(mean, data, weights=weights, offset=offset,
                                           na_action=na_action)
        if sigma is not None:
            self.design = sigma_design(self.design, sigma, data)
        check_model(self.design, allow_one_per_level, family)

    @checked_arguments
    def fit_ml(self, reml: bool = False, starts: int = ML_STARTS):
        """Maximum-likelihood (or REML) estimates, as lme4's ``lmer``, or for a non-Gaussian
        family the Laplace approximation's, as lme4's ``glmer`` (``nAGQ = 1``).

        See [`lmmhmc.ml.fit_ml()`][lmmhmc.ml.fit_ml] and
        [`lmmhmc.laplace_ml.fit_laplace()`][lmmhmc.laplace_ml.fit_laplace]; returns an
        [`lmmhmc.ml.MLResult`][lmmhmc.ml.MLResult].
        """
        if self.family != "gaussian":
            if reml:
                raise ArgumentError(f"REML is defined for the Gaussian family only, not "
                                    f"'{self.family}' (as lme4's glmer): use reml=False")
            from lmmhmc.families import get_family
            from lmmhmc.laplace_ml import fit_laplace

            return fit_laplace(self.design, get_family(self.family), starts=starts)
        from lmmhmc.ml import fit_ml

        if self.design.sigma_part is not None:
            raise LmmhmcError(
                "fit_ml() is not available for a distributional model (sigma ~ ...); fit() "
                "starts its chains from the ML fit of the mean formula with one sigma "
                "(log sigma's intercept at its log, the rest at 0)")
        if self.design.se is not None:
            raise LmmhmcError(
                "fit_ml() is not available for a model with known standard errors "
                "(y | se(s)): lme4's profiled likelihood estimates a multiplicative sigma. "
                "fit() starts its chains from that fit (weights 1 / s^2) rescaled to the model")
        return fit_ml(self.design, reml=reml, starts=starts)

    @property
    def priors(self):
        """The default priors of this model ([`lmmhmc.priors.Priors`][lmmhmc.priors.Priors])."""
        from lmmhmc.priors import default_priors

        return default_priors(self.design, self.family)

    @checked_arguments
    def fit(
        self,
        *,
        priors: Mapping | None = None,
        marginalize: str | Sequence[str] = DEFAULTS.marginalize,
        chains: int = DEFAULTS.chains,
        draws: int = DEFAULTS.draws,
        warmup: int = DEFAULTS.warmup,
        seed: int = DEFAULTS.seed,
        target_accept: float = DEFAULTS.target_accept,
        progress: bool = DEFAULTS.progress,
        init: str = DEFAULTS.init,
        dense_mass: bool | None = DEFAULTS.dense_mass,
        max_tree_depth: int = DEFAULTS.max_tree_depth,
        chain_method: str = DEFAULTS.chain_method,
        centering: str = DEFAULTS.centering,
        log_likelihood: bool | None = DEFAULTS.log_likelihood,
        posterior_predictive: bool = DEFAULTS.posterior_predictive,
    ):
        """Sample the posterior with NUTS; see [`lmmhmc.fit()`][lmmhmc.fit] for the arguments and
        their defaults (those of [`FitOptions`][lmmhmc.options.FitOptions]).

        Returns
        -------
        FitResult
        """
        from lmmhmc.fitting import fit_model  # JAX is imported only when a model is fitted

        options = FitOptions(
            marginalize=marginalize, chains=chains, draws=draws, warmup=warmup, seed=seed,
            target_accept=target_accept, progress=progress, init=init, dense_mass=dense_mass,
            max_tree_depth=max_tree_depth, chain_method=chain_method, centering=centering,
            log_likelihood=log_likelihood, posterior_predictive=posterior_predictive)
        return fit_model(self, options, priors)

    def __repr__(self) -> str:
        d = self.design
        dropped = f", {d.n_dropped} dropped for missing values" if d.n_dropped else ""
        weighted = (", weighted" if d.weights is not None else "") + (
            ", with offset" if d.has_offset else "")
        lines = [
            f"lmmhmc.Model: {d.formula}" + (
                f" (family {self.family})" if self.family != "gaussian" else ""),
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
        part = d.sigma_part
        if part is not None:
            terms = "".join(f" + ({t.text})" for t in part.terms)
            lines.append(f"  log sigma: {' + '.join(part.x_names) or '0'}{terms} "
                         "(random effects sampled, independent of the mean's)")
        return "\n".join(lines)
