"""The likelihood: how the response depends on the linear predictor (the seam for new families).

Every caller (the NumPyro model, the marginal kernel's density, the pointwise log-likelihood,
posterior predictive draws, ``predict``, recovery) reaches the response distribution through
one object with the methods below, so that a new response type (a per-observation ``sigma``, a
non-Gaussian family) is added here without touching the sampler, ML, recovery or the ArviZ
assembly.

[`Gaussian`][lmmhmc.likelihood.Gaussian] is ``y_i ~ N(mu_i, sigma^2 / w_i)`` with known weights
``w`` (1 by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .layout import SIGMA
from .marginal import MarginalKernel

__all__ = ["Gaussian"]


@dataclass(frozen=True)
class Gaussian:
    """Normal response with known observation weights: ``y_i ~ N(mu_i, sigma^2 / w_i)``.

    Hashable and without arrays: part of a compiled program's cache key. The weights are data
    (``data["w"]``).
    """

    name: str = "gaussian"

    def scale(self, params: dict, w: jax.Array) -> jax.Array:
        """Per-observation standard deviation ``sigma / sqrt(w_i)``."""
        return params[SIGMA] / jnp.sqrt(w)

    def log_prob(self, y: jax.Array, mu: jax.Array, params: dict, w: jax.Array) -> jax.Array:
        """Pointwise ``log N(y_i | mu_i, sigma^2 / w_i)``."""
        return dist.Normal(mu, self.scale(params, w)).log_prob(y)

    def sample(self, key: jax.Array, mu: jax.Array, params: dict, w: jax.Array) -> jax.Array:
        """One replicated response ``y_rep ~ N(mu, sigma^2 / w)``."""
        return mu + self.scale(params, w) * jax.random.normal(key, mu.shape)

    def marginal_log_density(self, kernel: MarginalKernel, resid, params: dict,
                             lams: Sequence[jax.Array]) -> jax.Array:
        """``log N(r | 0, sigma^2 W^-1 + Z G Z^T)`` of the residual with the kernel's terms
        integrated out (``resid`` an array or
        [`lmmhmc.marginal.Affine`][lmmhmc.marginal.Affine])."""
        return kernel.log_density(resid, params[SIGMA], lams)

    def conditional_draw(self, kernel: MarginalKernel, resid, params: dict,
                         lams: Sequence[jax.Array], noise: Sequence[jax.Array]) -> list:
        """The kernel's random effects drawn from their exact conditional given ``resid``."""
        return kernel.draw(resid, params[SIGMA], lams, noise)
