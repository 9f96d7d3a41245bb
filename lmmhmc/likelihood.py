"""The likelihood: how the response depends on the linear predictor (the seam for new families).

Every caller (the NumPyro model, the marginal kernel's density, the pointwise log-likelihood,
posterior predictive draws, ``predict``, recovery) reaches the response distribution through
one object with the methods below, so that a new response type (a per-observation ``sigma``, a
non-Gaussian family) is added here without touching the sampler, ML, recovery or the ArviZ
assembly.

[`Gaussian`][lmmhmc.likelihood.Gaussian] is ``y_i ~ N(mu_i, sigma^2 / w_i)`` with known weights
``w`` (1 by default); [`KnownSE`][lmmhmc.likelihood.KnownSE] is brms's ``y | se(s)``,
``y_i ~ N(mu_i, s_i^2)``, or with ``se(s, sigma = TRUE)`` ``N(mu_i, s_i^2 + sigma^2)``.
[`for_design()`][lmmhmc.likelihood.for_design] picks the likelihood of a design and
[`observation_weights()`][lmmhmc.likelihood.observation_weights] the known weights ``w`` that
every kernel and ``data["w"]`` hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .design import Design
from .layout import SIGMA
from .marginal import MarginalKernel

__all__ = ["Gaussian", "KnownSE", "for_design", "observation_weights"]


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


@dataclass(frozen=True)
class KnownSE(Gaussian):
    """Normal response with known standard errors ``s_i`` (brms ``y | se(s)``).

    ``y_i ~ N(mu_i, s_i^2)``; with ``sigma=True`` (``se(s, sigma = TRUE)``) a residual sd is
    estimated on top and the variances add, ``N(mu_i, s_i^2 + sigma^2)``. The data's weights
    are ``w_i = 1 / s_i^2`` (`observation_weights`). Without ``sigma`` the kernel's Gram
    blocks are precomputed with these weights and ``sigma = 1``; with it the per-observation
    sd ``sqrt(1 + sigma^2 w_i)`` (in units of ``s_i``) depends on the draw and the kernel
    recomputes its blocks per evaluation (DESIGN.md §7).
    """

    sigma: bool = False

    def scale(self, params: dict, w: jax.Array) -> jax.Array:
        """Per-observation standard deviation ``sqrt(s_i^2 + sigma^2)`` (``s_i`` without
        sigma)."""
        var = 1.0 / w
        return jnp.sqrt(var + params[SIGMA] ** 2) if self.sigma else jnp.sqrt(var)

    def _kernel_sd(self, kernel: MarginalKernel, params: dict):
        """The kernel's sd relative to its weights ``1 / s_i^2``: 1, or per observation
        ``sqrt(1 + sigma^2 / s_i^2)``."""
        if not self.sigma:
            return jnp.ones(())
        return jnp.sqrt(1.0 + params[SIGMA] ** 2 * kernel.weights)

    def marginal_log_density(self, kernel: MarginalKernel, resid, params: dict,
                             lams: Sequence[jax.Array]) -> jax.Array:
        """``log N(r | 0, diag(s_i^2 [+ sigma^2]) + Z G Z^T)``."""
        return kernel.log_density(resid, self._kernel_sd(kernel, params), lams)

    def conditional_draw(self, kernel: MarginalKernel, resid, params: dict,
                         lams: Sequence[jax.Array], noise: Sequence[jax.Array]) -> list:
        """The kernel's random effects drawn from their exact conditional given ``resid``."""
        return kernel.draw(resid, self._kernel_sd(kernel, params), lams, noise)


def for_design(design: Design) -> Gaussian:
    """The likelihood of ``design``: `KnownSE` with ``y | se(s)``, else `Gaussian`."""
    return Gaussian() if design.se is None else KnownSE(sigma=design.se_sigma)


def observation_weights(design: Design) -> np.ndarray | None:
    """The known weights ``w`` of ``design``: ``1 / s_i^2`` with ``y | se(s)``, else the
    ``weights=`` argument (None without)."""
    return design.weights if design.se is None else 1.0 / design.se**2
