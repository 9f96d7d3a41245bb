"""Response families beyond the Gaussian: bernoulli, binomial and poisson, canonical links.

A family gives the log-likelihood of a response ``y`` given the linear predictor ``eta``
(``X beta + o + Z u``) and, for the Laplace algebra of `lmmhmc.laplace`, its first two
derivatives in ``eta``::

    bernoulli   log p = y eta - log(1 + e^eta)                      mean e^eta / (1 + e^eta)
    binomial    log p = log C(n, y) + y eta - n log(1 + e^eta)      mean n e^eta / (1 + e^eta)
    poisson     log p = y eta - e^eta - log y!                      mean e^eta

    g = d log p / d eta = y - mean,     W = -d^2 log p / d eta^2 = n p (1 - p)  or  e^eta

The number of trials ``n`` of a binomial response (``y | trials(n)``, or lme4's
``cbind(successes, failures)``) is the family's per-observation data, passed where the
Gaussian takes its weights (``data["w"]``; 1 for bernoulli and poisson). The log-likelihood
includes the normalising constants (``log C(n, y)``, ``log y!``), as lme4's ``logLik``.

A new family (negative binomial, ...) is a class here with the same methods, and its name in
`FAMILIES`. The Gaussian stays `lmmhmc.likelihood.Gaussian`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .errors import ArgumentError, DataError, did_you_mean

__all__ = ["FAMILIES", "Bernoulli", "Binomial", "Poisson", "family_names", "get_family"]

#: Rows named in a response error.
_SHOW_ROWS = 5


@dataclass(frozen=True)
class _Logistic:
    """Binomial with ``n`` trials and the logit link (``n = 1``: bernoulli)."""

    name: str = "binomial"

    def log_prob(self, y: jax.Array, eta: jax.Array, params: dict, n: jax.Array) -> jax.Array:
        """Pointwise ``log C(n, y) + y eta - n log(1 + e^eta)``."""
        const = gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0)
        return const + y * eta - n * jnp.logaddexp(0.0, eta)

    def mean(self, eta: jax.Array, n: jax.Array) -> jax.Array:
        """Expected response ``n / (1 + e^-eta)`` (a probability for bernoulli)."""
        return n * jax.nn.sigmoid(eta)

    def working(self, y: jax.Array, eta: jax.Array, params: dict,
                n: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(g, W)``: ``y - n p`` and ``n p (1 - p)``, ``p = 1 / (1 + e^-eta)``."""
        p = jax.nn.sigmoid(eta)
        return y - n * p, n * p * jax.nn.sigmoid(-eta)

    def sample(self, key: jax.Array, eta: jax.Array, params: dict, n: jax.Array) -> jax.Array:
        """One replicated response ``y_rep ~ Binomial(n, p)``."""
        return jax.random.binomial(key, n, jax.nn.sigmoid(eta)).astype(eta.dtype)

    def check_response(self, y: np.ndarray, n: np.ndarray, response: str) -> None:
        """Raise DataError unless ``0 <= y <= n`` and both are integers, naming rows."""
        bad = ~((y >= 0) & (y <= n) & (y == np.round(y)))
        what = "0 <= y <= trials, whole numbers" if self.name == "binomial" else "0 or 1"
        _refuse(bad, y, response, self.name, what)


@dataclass(frozen=True)
class Bernoulli(_Logistic):
    """Binary response, logit link: ``y_i ~ Bernoulli(1 / (1 + e^-eta_i))``."""

    name: str = "bernoulli"


@dataclass(frozen=True)
class Binomial(_Logistic):
    """Successes out of ``n_i`` trials, logit link: ``y_i ~ Binomial(n_i, 1 / (1 + e^-eta_i))``."""

    name: str = "binomial"


@dataclass(frozen=True)
class Poisson:
    """Counts, log link: ``y_i ~ Poisson(e^eta_i)``."""

    name: str = "poisson"

    def log_prob(self, y: jax.Array, eta: jax.Array, params: dict, n: jax.Array) -> jax.Array:
        """Pointwise ``y eta - e^eta - log y!``."""
        return y * eta - jnp.exp(eta) - gammaln(y + 1.0)

    def mean(self, eta: jax.Array, n: jax.Array) -> jax.Array:
        """Expected count ``e^eta``."""
        return jnp.exp(eta)

    def working(self, y: jax.Array, eta: jax.Array, params: dict,
                n: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(g, W)``: ``y - e^eta`` and ``e^eta``."""
        rate = jnp.exp(eta)
        return y - rate, rate

    def sample(self, key: jax.Array, eta: jax.Array, params: dict, n: jax.Array) -> jax.Array:
        """One replicated response ``y_rep ~ Poisson(e^eta)``."""
        return jax.random.poisson(key, jnp.exp(eta)).astype(eta.dtype)

    def check_response(self, y: np.ndarray, n: np.ndarray, response: str) -> None:
        """Raise DataError unless every ``y`` is a non-negative integer, naming rows."""
        _refuse(~((y >= 0) & (y == np.round(y))), y, response, self.name,
                "non-negative whole numbers")


#: The non-Gaussian families by name (brms's and bambi's names).
FAMILIES = {"bernoulli": Bernoulli(), "binomial": Binomial(), "poisson": Poisson()}


def family_names() -> tuple[str, ...]:
    """Every accepted ``family=`` name, ``"gaussian"`` first."""
    return ("gaussian", *FAMILIES)


def get_family(name: str):
    """The family object of ``name`` (None for ``"gaussian"``, the linear mixed model).

    Raises
    ------
    ArgumentError
        For an unknown name, with the close matches and the accepted names.
    """
    if name == "gaussian":
        return None
    if name not in FAMILIES:
        raise ArgumentError(f"unknown family '{name}'{did_you_mean(str(name), family_names())} "
                            f"(accepted: {', '.join(family_names())})")
    return FAMILIES[name]


def _refuse(bad: np.ndarray, y: np.ndarray, response: str, family: str, what: str) -> None:
    """DataError naming the first rows (0-based, of the rows kept) where ``bad`` holds."""
    if not np.any(bad):
        return
    rows = np.flatnonzero(bad)
    shown = ", ".join(f"{r} ({y[r]:g})" for r in rows[:_SHOW_ROWS])
    more = f" and {len(rows) - _SHOW_ROWS} more" if len(rows) > _SHOW_ROWS else ""
    raise DataError(f"family '{family}' needs a response '{response}' of {what}; "
                    f"{len(rows)} row(s) are not: rows {shown}{more} (0-based, among the rows "
                    "used)")
