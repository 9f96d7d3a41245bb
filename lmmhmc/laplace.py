"""Newton steps, the Laplace approximation and the exact Laplace-based reparameterization of
the random effects of a non-Gaussian response (DESIGN.md §8), on the marginal kernel's
factorization.

With spherical effects ``v`` (``u = Lambda v``, ``v ~ N(0, I)``), a family's gradient ``g`` and
weights ``W`` at ``eta = eta0 + Z u`` (``eta0``: fixed part, offset and any effects not in the
kernel), one Newton step on ``log p(y | eta) - |v|^2 / 2`` is::

    P = I + Lambda^T Z^T W Z Lambda = L L^T,       r = Z u + g / W,
    v' = P^{-1} Lambda^T Z^T W r   (+ L^{-T} z for the reparameterization)

which is the Gaussian kernel's conditional draw with weights ``W``, ``sigma = 1`` and
residual ``r`` (`lmmhmc.marginal.MarginalKernel.conditional`): the tree-structured
factorization of ``P`` (one term, nested terms, or a Schur complement for crossed ones) is
the kernel's.

- **Laplace** (lme4's ``nAGQ = 1``) at the mode ``v^``:
  ``log p(y | psi) ~ log p(y | v^) - |v^|^2 / 2 - log|L(v^)|``.
- **Reparameterization**: ``K`` (the family's ``newton_steps``) undamped Newton steps from a
  fixed start (the ML fit's conditional modes, a constant of the model; or 0) define
  ``v_K(psi)``; with the factor ``L_{K-1}`` of the last step, ``v = v_K + L_{K-1}^{-T} z`` is
  a bijection for every ``psi`` with log-Jacobian ``-log|L_{K-1}|``, so
  ``log p(y | v) + log N(v; 0, I) - log|L_{K-1}|`` is the exact density of ``(psi, z)``
  whatever ``K`` is. For a Gaussian response, ``P`` does not depend on ``v`` and one step
  gives the conditional mean: the density is ``log p(y | psi) + log N(z; 0, I)``, the
  marginalized model followed by recovery.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .marginal import LOG_2PI, MarginalKernel
from .predictor import linear_predictor

__all__ = ["TINY_WEIGHT", "laplace_log_likelihood", "mode", "newton_step",
           "reparameterized"]

#: Floor of the family's weights ``W`` (a rate or ``p (1 - p)`` that underflows to 0).
TINY_WEIGHT = 1e-200
#: Step lengths tried by the damped Newton iteration of `mode` (halvings).
_HALVINGS = 12


def _eta(eta0: jax.Array, index, block, us: Sequence[jax.Array]) -> jax.Array:
    """``eta0 + sum_k Z_k u_k`` over the kernel's terms."""
    no_fixed = jnp.zeros((eta0.shape[0], 0))
    return linear_predictor(no_fixed, jnp.zeros(0), eta0, index, block, dict(enumerate(us)))


def newton_step(kernel: MarginalKernel, family, y: jax.Array, n: jax.Array, eta0: jax.Array,
                index, block, lams: Sequence[jax.Array], us: Sequence[jax.Array],
                noise: Sequence[jax.Array], params: dict | None = None):
    """One Newton step from the effects ``us``: ``(v', u', log|P|)`` with ``P`` at ``us``.

    Parameters
    ----------
    kernel : MarginalKernel
        The terms' kernel (its weights are replaced by the family's).
    family
        A `lmmhmc.families` family (``working`` gives ``g`` and ``W``).
    y, n : (N,) arrays
        Response and the family's per-observation data (trials of a binomial).
    eta0 : (N,) array
        The linear predictor without the kernel's terms.
    index, block : sequences
        Per kernel term (caller order): each row's level and covariate row.
    lams : sequence of (d, d) arrays
        ``Lambda_k`` per term.
    us : sequence of (L_k, d_k) arrays
        The current effects.
    noise : sequence of (L_k, d_k) arrays
        ``z`` (zeros for a plain Newton step).
    params : dict, optional
        Passed to the family (its own parameters, if any).
    """
    eta = _eta(eta0, index, block, us)
    g, w = family.working(y, eta, params or {}, n)
    w = jnp.maximum(w, TINY_WEIGHT)
    return kernel.reweighted(w).conditional(eta - eta0 + g / w, lams, noise)


def _objective(family, y, n, eta0, index, block, vs, us, params) -> jax.Array:
    """``log p(y | eta) - |v|^2 / 2``: the log posterior of ``v`` up to a constant."""
    eta = _eta(eta0, index, block, us)
    return (jnp.sum(family.log_prob(y, eta, params, n))
            - 0.5 * sum(jnp.sum(v**2) for v in vs))


def mode(kernel: MarginalKernel, family, y, n, eta0, index, block, lams, start,
         max_steps: int = 100, tol: float = 1e-10, params: dict | None = None):
    """The conditional mode ``(v^, u^)`` by damped Newton steps (no gradient flows through it).

    Each step is halved (up to `_HALVINGS` times) until the objective does not decrease, as
    lme4's PIRLS; the iteration stops when no effect moves by more than ``tol`` or after
    ``max_steps`` steps. ``start`` is ``(vs, us)`` with ``us = Lambda vs`` for these ``lams``
    (zeros, or a mode found with the same ``lams``).
    """
    params = params or {}
    args = jax.lax.stop_gradient((y, n, eta0, lams, start))
    y, n, eta0, lams, start = args
    zeros = [jnp.zeros_like(u) for u in start[1]]
    steps = 0.5 ** jnp.arange(_HALVINGS + 1)

    def obj(vs, us):
        return _objective(family, y, n, eta0, index, block, vs, us, params)

    def body(state):
        vs, us, _, it = state
        new_v, new_u, _ = newton_step(kernel, family, y, n, eta0, index, block, lams, us,
                                      zeros, params)
        dv = [a - b for a, b in zip(new_v, vs, strict=True)]
        du = [a - b for a, b in zip(new_u, us, strict=True)]
        vals = jax.vmap(lambda t: obj([v + t * d for v, d in zip(vs, dv, strict=True)],
                                      [u + t * d for u, d in zip(us, du, strict=True)]))(steps)
        ok = vals >= obj(vs, us) - 1e-12 * jnp.abs(vals[0])
        t = jnp.where(jnp.any(ok), steps[jnp.argmax(ok)], steps[-1])
        moved = jnp.max(jnp.stack([jnp.max(jnp.abs(t * d)) for d in dv]))
        return ([v + t * d for v, d in zip(vs, dv, strict=True)],
                [u + t * d for u, d in zip(us, du, strict=True)], moved, it + 1)

    def cond(state):
        return (state[2] > tol) & (state[3] < max_steps)

    vs, us, _, _ = jax.lax.while_loop(cond, body, (*start, jnp.asarray(jnp.inf), jnp.asarray(0)))
    return vs, us


def laplace_log_likelihood(kernel: MarginalKernel, family, y, n, eta0, index, block, lams,
                           at, params: dict | None = None, steps: int = 2) -> jax.Array:
    """Laplace approximation of ``log p(y | psi)`` (lme4's ``nAGQ = 1``, constants included).

    ``at`` is the mode ``(vs, us)`` from `mode` (treated as a constant). ``steps``
    differentiable Newton steps from it make the result's derivatives those of the exact
    mode: the Newton map has zero derivative in ``v`` at its fixed point, so one step gives
    exact first derivatives and two give exact second derivatives (standard errors).
    """
    params = params or {}
    zeros = [jnp.zeros_like(u) for u in at[1]]
    vs, us = jax.lax.stop_gradient(at)
    for _ in range(steps):
        vs, us, _ = newton_step(kernel, family, y, n, eta0, index, block, lams, us, zeros,
                                params)
    _, _, logdet = newton_step(kernel, family, y, n, eta0, index, block, lams, us, zeros,
                               params)
    return _objective(family, y, n, eta0, index, block, vs, us, params) - 0.5 * logdet


def reparameterized(kernel: MarginalKernel, family, y, n, eta0, index, block, lams,
                    z: Sequence[jax.Array], steps: int, params: dict | None = None,
                    start: Sequence[jax.Array] | None = None):
    """The effects ``u(psi, z)`` and ``log p(y | u) + log N(v; 0, I) - log|L_{K-1}|``.

    ``steps`` (``K >= 1``) undamped Newton steps from the effects ``start`` (a constant:
    zeros by default); the last one adds ``L_{K-1}^{-T} z``. Adding ``log p(psi)`` gives the
    exact log density of ``(psi, z)``.
    """
    params = params or {}
    zeros = [jnp.zeros_like(zk) for zk in z]
    us = zeros if start is None else list(start)
    for _ in range(steps - 1):
        _, us, _ = newton_step(kernel, family, y, n, eta0, index, block, lams, us, zeros,
                               params)
    vs, us, logdet = newton_step(kernel, family, y, n, eta0, index, block, lams, us, z, params)
    q = sum(v.size for v in vs)
    return us, (_objective(family, y, n, eta0, index, block, vs, us, params)
                - 0.5 * q * LOG_2PI - 0.5 * logdet)
