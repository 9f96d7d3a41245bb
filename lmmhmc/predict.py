"""Posterior predictions of a fitted model: linear predictor and new observations.

For posterior draw ``s`` and a row with fixed-effect covariates ``x`` and, per grouping term
``k``, level ``j_k`` and covariate row ``z_k``::

    mean      mu_s = x . beta_s + o + sum_k z_k . u_{k, j_k, s}      (o: the row's offset)
    response  y_s  = mu_s + sigma_s / sqrt(w) * eps,    eps ~ N(0, 1)

A level not seen in training has no posterior of its own. ``new_levels="sample"`` draws its
effects from the fitted population distribution, once per posterior draw and new level (rows
of the same new level share them): ``u_{k, new, s} ~ N(0, G_{k, s})`` with
``G_{k, s} = diag(s_{k, s}) R_{k, s} diag(s_{k, s})``, as brms's
``sample_new_levels = "gaussian"``. ``"zero"`` uses the population level (effects 0), and
``"error"`` refuses. A missing grouping value always means the population level of that term.

The offset ``o`` of a new row is the sum of the formula's ``offset(...)`` terms evaluated on
it and, for a model fitted with an ``offset=`` argument, the ``offset=`` given to
`predict` (required then, as the model cannot know it). The training rows use the
training offset.

The linear predictor is `lmmhmc.numpyro_model.linear_predictor`, the routine of the
model's likelihood, mapped over the draws; new observations come from the fit's likelihood.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import _x64  # noqa: F401  (float64 before any JAX array)
from . import numpyro_model as nm
from .errors import DataError, LmmhmcError
from .layout import SIGMA
from .likelihood import observation_weights

__all__ = ["draw_indices", "predict"]

KINDS = ("mean", "link", "response", "sigma")
NEW_LEVELS = ("sample", "zero", "error")
#: New levels named in the error of ``new_levels="error"``.
_SHOW_LEVELS = 5


def predict(
    result,
    newdata: pd.DataFrame | None = None,
    *,
    kind: str = "mean",
    include_random: bool = True,
    new_levels: str = "sample",
    draws: int | None = None,
    seed: int = 0,
    weights: str | np.ndarray | None = None,
    offset: str | np.ndarray | None = None,
) -> np.ndarray:
    """Posterior draws of the linear predictor or of new observations.

    Parameters
    ----------
    result : FitResult
        The fit.
    newdata : pandas.DataFrame, optional
        Rows to predict; the training observations if omitted. Needs every predictor and
        grouping column (not the response). Transforms (``center(x)``, ``log(x)``, ...) and
        categorical encodings are those of the training data.
    kind : {"mean", "link", "response", "sigma"}
        ``"link"``: the linear predictor ``X beta + o + Z u``. ``"mean"``: the expected
        response, the same for a Gaussian model (on the scale of the formula's left-hand side,
        e.g. ``log(rt)``), its inverse link for a non-Gaussian family (probabilities of a
        bernoulli, ``trials x`` probability of a binomial, rates of a poisson response), as
        brms's ``posterior_epred``. ``"response"``: new observations drawn from the family (for
        a Gaussian model, the mean plus ``N(0, sigma^2 / w)`` noise). ``"sigma"`` (Gaussian
        models): the residual sd of each row (a distributional model's
        ``exp(X_s gamma + Z_s v)``, its random effects included as for the mean;
        ``sqrt(s^2 + sigma^2)`` with known standard errors).
    include_random : bool
        Add the random effects; ``False`` gives the population-level prediction
        ``X beta + o``.
    new_levels : {"sample", "zero", "error"}
        Effects of grouping levels not seen in training: drawn from ``N(0, G_k)`` per
        posterior draw, set to zero, or an error naming them.
    draws : int, optional
        Use this many posterior draws, evenly spaced over the chain-major sequence of all
        draws (see `draw_indices()`); all draws by default.
    seed : int
        Seed of the NumPy generator for new-level effects and observation noise.
    weights : str or array-like, optional
        Observation weights for ``kind="response"``: a column of `newdata` or an array of
        one positive weight per row. Defaults to the training weights when `newdata` is
        omitted and to 1 otherwise. For a model with known standard errors
        (``y | se(s)``) the weights are ``1 / s^2`` (the training ones by default; required
        with `newdata`). For a binomial model: the number of trials (of ``kind="mean"`` and
        ``"response"``; the training trials by default, else 1).
    offset : str or array-like, optional
        With `newdata`, for a model fitted with an ``offset=`` argument (and required then):
        a column of `newdata` or an array of one finite value per row, added to the offsets
        of the formula's ``offset(...)`` terms (which are evaluated on `newdata`). Without
        `newdata` the training offset is used.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(draws, rows)``. Row ``i`` of the result is posterior draw
        ``draw_indices(...)[i]``; draws are ordered chain by chain (chain 0 first), as
        ``posterior.stack(sample=("chain", "draw"))``.

    Raises
    ------
    LmmhmcError
        With ``new_levels="error"``, if `newdata` holds levels not seen in training; if a
        column is missing, a categorical predictor has an unseen level or a predictor is not
        finite (`lmmhmc.errors.DataError`); if an offset is missing or not finite.
    """
    if kind not in KINDS:
        raise LmmhmcError(f"kind must be one of {KINDS}, got {kind!r}")
    if new_levels not in NEW_LEVELS:
        raise LmmhmcError(f"new_levels must be one of {NEW_LEVELS}, got {new_levels!r}")
    design, layout = result.design, result.layout
    post = result.idata.posterior
    n_total = post.sizes["chain"] * post.sizes["draw"]
    take = draw_indices(n_total, draws)

    def param(name: str) -> np.ndarray:
        """Draws of a posterior variable, flattened over chains: (draws, *shape)."""
        values = post[name].values
        return values.reshape((n_total,) + values.shape[2:])[take]

    if newdata is None and offset is not None:
        raise LmmhmcError("offset= applies to newdata; the training rows use the training "
                          "offset")
    rng = np.random.default_rng(seed)
    extra = None if newdata is None else _argument_offset(design, newdata, offset)
    if kind == "sigma" and not layout.gaussian:
        raise LmmhmcError(f"kind='sigma' is a Gaussian model's residual sd; the "
                          f"'{layout.family}' family has none")
    mu = None if kind == "sigma" else _predictor_draws(
        design, layout.fixed, layout.terms, param, newdata, extra, include_random, new_levels,
        rng)
    if kind == "link" or (kind == "mean" and layout.gaussian):
        return np.asarray(mu)
    params = {}
    if layout.sigma is not None:
        params[layout.sigma] = jnp.asarray(param(layout.sigma))
    if layout.distributional:
        log_sd = _predictor_draws(design.sigma_part, layout.sigma_fixed, layout.sigma_terms,
                                  param, newdata, 0.0, include_random, new_levels, rng)
        params[SIGMA] = jnp.exp(log_sd)
    w = _weights(design, newdata, weights, len(design.y) if newdata is None else len(newdata))
    if kind == "sigma":
        scale = result.assembled.likelihood.scale
        sd = jax.vmap(scale, in_axes=(0, None))(params, w) if params else scale(params, w)
        return np.asarray(sd) * np.ones((len(take), len(w)))
    likelihood = result.assembled.likelihood
    if kind == "mean":
        return np.asarray(likelihood.mean(jnp.asarray(mu), jnp.asarray(w)))
    sample = jax.vmap(likelihood.sample, in_axes=(0, 0, 0, None))
    keys = jax.random.split(jax.random.key(seed), len(take))
    return np.asarray(sample(keys, mu, params, w))


def _predictor_draws(part, fixed, terms, param, newdata: pd.DataFrame | None, extra,
                     include_random: bool, new_levels: str,
                     rng: np.random.Generator) -> jax.Array:
    """Draws ``(draws, rows)`` of one linear predictor: the mean's (``part`` the design,
    ``fixed`` and ``terms`` its names in the layout) or a distributional model's log sigma,
    on the training rows or `newdata` (offset: the formula's plus ``extra``)."""
    if newdata is None:
        X, index, block = part.X, [t.index for t in part.terms], [t.block for t in part.terms]
        labels, rows_offset = [None] * len(part.terms), part.offset
    else:
        encoded = part.encode(newdata)
        X, index, block, labels = encoded.X, encoded.index, encoded.block, encoded.labels
        rows_offset = encoded.offset + extra
    n_draws = len(param(fixed[0] if fixed else terms[0].sds[0]))
    beta = np.reshape([param(n) for n in fixed], (len(fixed), n_draws)).T
    effects, codes = {}, {}
    if include_random:
        for k, t in enumerate(terms):
            codes[k], n_new = _level_codes(t, index[k], labels[k], new_levels)
            u = np.stack([param(c) for c in t.columns], axis=-1)  # (draws, levels, d)
            sds = np.stack([param(name) for name in t.sds], axis=-1)
            pairs = param(t.corr) if t.correlated else None
            new = _population_draws(sds, pairs, t.pairs(), n_new, rng)
            zero = np.zeros((n_draws, 1, t.d))
            effects[k] = np.concatenate([u, new, zero], axis=1)
    return _linear_predictors(X, beta, rows_offset, codes, {k: block[k] for k in codes},
                              effects)


@jax.jit
def _linear_predictors(X, beta, offset, index: dict, block: dict, effects: dict) -> jax.Array:
    """`lmmhmc.numpyro_model.linear_predictor` of every draw: ``(draws, rows)``.

    One draw at a time, so that a draw's prediction does not depend on which other draws are
    predicted with it (batched programs may round differently).
    """

    def one(args):
        b, eff = args
        return nm.linear_predictor(X, b, offset, index, block, eff)

    return jax.lax.map(one, (beta, effects))


def draw_indices(n_total: int, draws: int | None) -> np.ndarray:
    """Positions of ``draws`` evenly spaced draws among ``n_total`` (all when ``None``).

    Parameters
    ----------
    n_total : int
        Number of posterior draws (chains x draws per chain).
    draws : int or None
        How many to keep, 1 to `n_total`.

    Returns
    -------
    numpy.ndarray
        Increasing int positions in the chain-major sequence of draws.
    """
    if draws is None:
        return np.arange(n_total)
    if not isinstance(draws, int | np.integer) or not 1 <= draws <= n_total:
        raise LmmhmcError(f"draws must be an integer from 1 to {n_total}, got {draws!r}")
    return np.round(np.linspace(0, n_total - 1, draws)).astype(np.int64)


def _level_codes(term, index: np.ndarray, labels: np.ndarray | None,
                 new_levels: str) -> tuple[np.ndarray, int]:
    """Rows' positions in ``[training levels, new levels, zero]`` and the number of new levels.

    Seen levels keep their code; with ``new_levels="sample"`` each distinct unseen label gets
    its own slot after the training levels; unseen labels under ``"zero"`` and missing
    grouping values point at the final all-zero slot.
    """
    unseen = index < 0
    if not unseen.any():
        return index, 0
    new = unseen & pd.notna(labels)
    names, new_codes = np.unique(labels[new].astype(str), return_inverse=True)
    if new_levels == "error" and len(names):
        shown = ", ".join(f"'{n}'" for n in names[:_SHOW_LEVELS])
        more = f" and {len(names) - _SHOW_LEVELS} more" if len(names) > _SHOW_LEVELS else ""
        levels = "a level" if len(names) == 1 else f"{len(names)} levels"
        raise LmmhmcError(
            f"new data has {levels} of '{term.factor}' not seen in training: {shown}{more}; "
            "use new_levels='sample' or 'zero' to predict them"
        )
    n_new = len(names) if new_levels == "sample" else 0
    codes = np.where(unseen, term.n_levels + n_new, index)  # the zero slot
    if n_new:
        codes[new] = term.n_levels + new_codes
    return codes, n_new


def _population_draws(sds: np.ndarray, pairs: np.ndarray | None,
                      order: tuple[np.ndarray, np.ndarray], n: int,
                      rng: np.random.Generator) -> np.ndarray:
    """``n`` draws per posterior draw from ``N(0, G)``, ``G = diag(sds) R diag(sds)``.

    Parameters
    ----------
    sds : numpy.ndarray
        ``(draws, d)`` standard deviations.
    pairs : numpy.ndarray or None
        ``(draws, d (d - 1) / 2)`` correlations in the posterior's pair order, or None for an
        uncorrelated term (``R = I``).
    order : (rows, cols)
        The matrix position of each pair
        ([`lmmhmc.layout.TermLayout.pairs()`][lmmhmc.layout.TermLayout.pairs]).
    n : int
        Number of new levels.
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray
        ``(draws, n, d)``.
    """
    n_draws, d = sds.shape
    if not n:
        return np.zeros((n_draws, 0, d))
    corr = np.broadcast_to(np.eye(d), (n_draws, d, d)).copy()
    if pairs is not None:
        rows, cols = order
        corr[:, rows, cols] = pairs
        corr[:, cols, rows] = pairs
    factor = sds[:, :, None] * np.linalg.cholesky(corr)  # G = factor factor^T
    return np.einsum("sij,snj->sni", factor, rng.standard_normal((n_draws, n, d)))


def _weights(design, newdata: pd.DataFrame | None, weights, n_rows: int) -> np.ndarray:
    """Observation weights of the predicted rows (see [`predict()`][lmmhmc.predict.predict])."""
    known = observation_weights(design) if design.trials is None else design.trials
    if weights is None:
        if newdata is None and known is not None:
            return known
        if design.se is not None:
            raise LmmhmcError("the model has known standard errors (y | se(s)): "
                              "predict(kind='response') on new data needs them; pass "
                              "weights=1 / s**2 of the new rows")
        return np.ones(n_rows)
    if isinstance(weights, str):
        if newdata is None or weights not in newdata.columns:
            raise DataError(f"weights column '{weights}' not found in new data")
        weights = newdata[weights]
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_rows,) or not (np.all(np.isfinite(w)) and np.all(w > 0)):
        raise LmmhmcError(f"weights must be {n_rows} finite positive numbers, one per row")
    return w


def _argument_offset(design, newdata: pd.DataFrame, offset) -> np.ndarray | float:
    """The ``offset=`` part of the new rows' offset (see `predict`); 0 without one."""
    if offset is None:
        if design.offset_argument is not None:
            raise LmmhmcError("the model was fitted with an offset= argument: pass offset= (a "
                              "column of newdata or one value per row) for the new rows")
        return 0.0
    if isinstance(offset, str):
        if offset not in newdata.columns:
            raise DataError(f"offset column '{offset}' not found in new data")
        offset = newdata[offset]
    try:
        o = np.asarray(offset, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError("offset must be numeric") from exc
    if o.shape != (len(newdata),) or not np.all(np.isfinite(o)):
        raise DataError(f"offset must be {len(newdata)} finite numbers, one per row of newdata")
    return o
