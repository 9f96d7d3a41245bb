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

Each family also fixes ``newton_steps``, the ``K`` undamped Newton steps from the ML fit's
conditional modes that define the exact reparameterization of its random effects
(`lmmhmc.laplace.reparameterized`), measured with ``benchmarks/newton_steps.py``: one for the
logistic families, whose weights ``n p (1 - p) <= n / 4`` are bounded, so that the log-likelihood
stays close to its quadratic model (cbpp and VerbAgg: the same ESS per gradient as two steps at
about 60 % of the cost, no divergences); two for poisson, whose weights ``e^eta`` are not
(grouseticks' observation-level effects: 2.5 times the ESS per second of one step).

A new family (negative binomial, ...) is a class here with the same methods, its name in
`FAMILIES`, and its response rule in `lmmhmc.checks.RESPONSE_RULES` (which the design stage
reads without importing JAX). The Gaussian stays `lmmhmc.likelihood.Gaussian`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from . import _x64  # noqa: F401  (float64 before any JAX array)

__all__ = ["FAMILIES", "Bernoulli", "Binomial", "Poisson", "get_family"]

@dataclass(frozen=True)
class _Logistic:
    """Binomial with ``n`` trials and the logit link (``n = 1``: bernoulli)."""

    name: str = "binomial"
    #: Newton steps ``K`` of the reparameterization (see the module docstring).
    newton_steps: int = 1

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
    #: Newton steps ``K`` of the reparameterization (see the module docstring).
    newton_steps: int = 2

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


#: The non-Gaussian families by name (brms's and bambi's names).
FAMILIES = {"bernoulli": Bernoulli(), "binomial": Binomial(), "poisson": Poisson()}


def get_family(name: str):
    """The family object of ``name`` (None for ``"gaussian"``, the linear mixed model); the
    name was checked when the model was built (`lmmhmc.checks.check_family_name`)."""
    return None if name == "gaussian" else FAMILIES[name]
