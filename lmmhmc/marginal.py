"""Exact marginalization of Gaussian random effects in linear time (pure JAX, no NumPyro).

For residuals ``r = y - X beta - (sampled random effects)`` and a set of *marginalized* grouping
terms with stacked design ``Z`` and covariance factors ``G_k = Lambda_k Lambda_k^T``::

    r ~ N(0, Sigma),   Sigma = sigma^2 W^{-1} + Z Lambda Lambda^T Z^T,
    P = I + Lambda^T Z^T W Z Lambda / sigma^2,   c = Lambda^T Z^T W r,
    log|Sigma| = N log sigma^2 - sum log w + log|P|                   (determinant lemma)
    r^T Sigma^{-1} r = (r^T W r - c^T P^{-1} c / sigma^2) / sigma^2     (Woodbury)

The first marginalized term (the *eliminated* term, normally the largest) makes ``P`` block
diagonal with ``d x d`` blocks, one per level. The remaining marginalized terms (if any) are
handled through the Schur complement of that block-diagonal part::

    S = I + Lambda_2^T (M_22 / sigma^2 - T / sigma^4) Lambda_2,
    T = N_21 Lambda_1 P_11^{-1} Lambda_1^T N_12,

where ``M_22 = Z_2^T W Z_2`` and ``N_12 = Z_1^T W Z_2`` are data-only and precomputed, and ``T``
is accumulated over the pairs of columns that share a level of the eliminated term. Every
evaluation costs ``O(N d + L d^3 + npairs + q_2^3)``; with one term it is ``O(N d + L d^3)``.

The same factorization serves three callers: the log-density inside HMC, the generalized
least-squares Gram matrix used by maximum likelihood / REML, and the exact conditional draws of
the random effects (``u | r ~ N(G Z^T Sigma^{-1} r, G - G Z^T Sigma^{-1} Z G)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.tree_util import register_pytree_node_class
from scipy import sparse

LOG_2PI = float(np.log(2.0 * np.pi))


class TermData(Protocol):
    """What the kernels need of a grouping term (``design.GroupTerm`` satisfies it)."""

    index: np.ndarray  # int (N,) level of each observation
    block: np.ndarray  # float (N, d) covariate row of each observation

    @property
    def n_levels(self) -> int: ...


@dataclass(frozen=True)
class _Static:
    """Shapes and orderings fixed at preparation time (the pytree's auxiliary data)."""

    n_obs: int
    order: tuple[int, ...]  # position in the caller's term list of term 1, 2, ...
    dims: tuple[tuple[int, int], ...]  # (n_levels, d) of term 1, 2, ... in elimination order
    weighted: bool

    @property
    def q2(self) -> int:
        return sum(n * d for n, d in self.dims[1:])


@register_pytree_node_class
class MarginalKernel:
    """Precomputed data-only quantities for marginalizing a set of grouping terms.

    Build it with :func:`prepare`; it is a JAX pytree (data arrays are leaves, shapes are
    static), so it can be passed as an argument to jitted functions without recompiling for
    new data of the same shapes.
    """

    def __init__(self, static: _Static, arrays: dict[str, jax.Array]):
        self.static = static
        self.arrays = arrays

    def tree_flatten(self):
        keys = tuple(sorted(self.arrays))
        return tuple(self.arrays[k] for k in keys), (self.static, keys)

    @classmethod
    def tree_unflatten(cls, aux, leaves):
        static, keys = aux
        return cls(static, dict(zip(keys, leaves, strict=True)))

    # ------------------------------------------------------------------ helpers
    def _lams_in_order(self, lams: Sequence[jax.Array]) -> list[jax.Array]:
        return [jnp.asarray(lams[k]) for k in self.static.order]

    def _rest_apply(self, lams_rest: list[jax.Array], x: jax.Array, transpose: bool) -> jax.Array:
        """Multiply the stacked rest vector(s) ``x`` (q2, ...) by Lambda_2 or Lambda_2^T."""
        out, start = [], 0
        for (n, d), lam in zip(self.static.dims[1:], lams_rest, strict=True):
            blk = x[start : start + n * d].reshape((n, d) + x.shape[1:])
            mat = lam.T if transpose else lam
            out.append(jnp.einsum("ab,lb...->la...", mat, blk).reshape((n * d,) + x.shape[1:]))
            start += n * d
        return jnp.concatenate(out, axis=0)

    def _factor(self, sigma: jax.Array, lams: list[jax.Array]):
        """Cholesky factors of P: per-level blocks of term 1 and the Schur complement."""
        a = self.arrays
        lam1 = lams[0]
        d1 = self.static.dims[0][1]
        s2 = sigma**2
        p11 = jnp.eye(d1) + jnp.einsum("ba,lbc,cd->lad", lam1, a["S1"], lam1) / s2
        l11 = jnp.linalg.cholesky(p11)
        if self.static.q2 == 0:
            return l11, None, None
        # G_j = L11_j^{-1} Lambda_1^T;  e_{j,c} = G_j N_12[j, c]
        g = solve_triangular(l11, jnp.broadcast_to(lam1.T, p11.shape), lower=True)
        e = jnp.einsum("nab,nb->na", g[a["nz_level"]], a["nz_val"])
        pair_dot = jnp.sum(e[a["pair_a"]] * e[a["pair_b"]], axis=-1) * a["pair_w"]
        q2 = self.static.q2
        t = jax.ops.segment_sum(pair_dot, a["pair_cell"], num_segments=q2 * q2).reshape(q2, q2)
        t = t + t.T
        inner = a["M22"] / s2 - t / s2**2
        lams_rest = lams[1:]
        s = self._rest_apply(lams_rest, self._rest_apply(lams_rest, inner, True).T, True)
        l22 = jnp.linalg.cholesky(jnp.eye(q2) + s)
        return l11, e, l22

    def _solve_forward(self, r: jax.Array, sigma: jax.Array, lams: list[jax.Array], fac):
        """x = L^{-1} c with c = Lambda^T Z^T W R, for residual columns R of shape (N, m)."""
        a = self.arrays
        l11, e, l22 = fac
        n1 = self.static.dims[0][0]
        wr = r * a["w"][:, None]
        b1 = jax.ops.segment_sum(a["A1"][:, :, None] * wr[:, None, :], a["idx1"], num_segments=n1)
        x1 = solve_triangular(l11, jnp.einsum("ba,lbm->lam", lams[0], b1), lower=True)
        if l22 is None:
            return wr, x1, None
        q2 = self.static.q2
        b2 = jax.ops.segment_sum(
            (a["rest_val"][:, :, None] * wr[:, None, :]).reshape(-1, r.shape[1]),
            a["rest_col"].reshape(-1),
            num_segments=q2,
        )
        t = jax.ops.segment_sum(
            jnp.einsum("na,nam->nm", e, x1[a["nz_level"]]), a["nz_col"], num_segments=q2
        )
        y2 = self._rest_apply(lams[1:], b2 - t / sigma**2, True)
        x2 = solve_triangular(l22, y2, lower=True)
        return wr, x1, x2

    # ------------------------------------------------------------------ public kernels
    def gram(
        self, r: jax.Array, sigma: jax.Array, lams: Sequence[jax.Array]
    ) -> tuple[jax.Array, jax.Array]:
        """Return ``(log|Sigma|, R^T Sigma^{-1} R)`` for residual columns ``R`` of shape (N, m).

        Parameters
        ----------
        r : array (N,) or (N, m)
            Residual vector(s).
        sigma : scalar
            Residual standard deviation.
        lams : sequence of (d_k, d_k) arrays
            Lower Cholesky factors of each marginalized term's covariance, in the order the
            terms were given to :func:`prepare`.
        """
        r2 = jnp.asarray(r).reshape(self.static.n_obs, -1)
        lams = self._lams_in_order(lams)
        fac = self._factor(sigma, lams)
        l11, _, l22 = fac
        wr, x1, x2 = self._solve_forward(r2, sigma, lams, fac)
        s2 = sigma**2
        cpc = jnp.einsum("lam,lan->mn", x1, x1)
        logdet_p = 2.0 * jnp.sum(jnp.log(jnp.diagonal(l11, axis1=-2, axis2=-1)))
        if x2 is not None:
            cpc = cpc + x2.T @ x2
            logdet_p = logdet_p + 2.0 * jnp.sum(jnp.log(jnp.diagonal(l22)))
        quad = (r2.T @ wr - cpc / s2) / s2
        logdet = self.static.n_obs * jnp.log(s2) - self.arrays["logw_sum"] + logdet_p
        return logdet, quad

    def log_density(self, r: jax.Array, sigma: jax.Array, lams: Sequence[jax.Array]) -> jax.Array:
        """Marginal log-density ``log N(r | 0, Sigma)`` of a residual vector ``r`` (N,)."""
        logdet, quad = self.gram(r, sigma, lams)
        return -0.5 * (self.static.n_obs * LOG_2PI + logdet + quad[0, 0])

    def noise_shapes(self) -> list[tuple[int, int]]:
        """Shapes (n_levels, d) of the standard-normal noise :meth:`draw` takes, caller order."""
        shapes = [None] * len(self.static.order)
        for pos, dims in zip(self.static.order, self.static.dims, strict=True):
            shapes[pos] = dims
        return shapes

    def draw(
        self,
        r: jax.Array,
        sigma: jax.Array,
        lams: Sequence[jax.Array],
        noise: Sequence[jax.Array],
    ) -> list[jax.Array]:
        """Draw the marginalized random effects from their exact joint conditional ``u | r``.

        With ``P = L L^T`` (block Cholesky) and ``u = Lambda v``:
        ``v = L^{-T} (L^{-1} c / sigma^2 + z)``, so ``v ~ N(P^{-1} c / sigma^2, P^{-1})``.
        ``noise`` holds standard-normal arrays of :meth:`noise_shapes`; zeros give the
        conditional mean. Returns one (n_levels, d) array per term, in the caller's order.
        """
        a = self.arrays
        lams = self._lams_in_order(lams)
        noise = [jnp.asarray(noise[k]) for k in self.static.order]
        fac = self._factor(sigma, lams)
        l11, e, l22 = fac
        _, x1, x2 = self._solve_forward(jnp.asarray(r).reshape(-1, 1), sigma, lams, fac)
        s2 = sigma**2
        w1 = x1[..., 0] / s2 + noise[0]
        out = [None] * len(lams)
        if l22 is not None:
            w2 = x2[:, 0] / s2 + jnp.concatenate([z.reshape(-1) for z in noise[1:]])
            v2 = solve_triangular(l22.T, w2, lower=False)
            u2 = self._rest_apply(lams[1:], v2, False)
            # (L_21^T v_2)_j = sum_c e_{j,c} (Lambda_2 v_2)_c / sigma^2
            corr = jax.ops.segment_sum(
                e * u2[a["nz_col"]][:, None], a["nz_level"], num_segments=self.static.dims[0][0]
            )
            w1 = w1 - corr / s2
            start = 0
            for k, (n, d) in enumerate(self.static.dims[1:], start=1):
                out[self.static.order[k]] = u2[start : start + n * d].reshape(n, d)
                start += n * d
        v1 = solve_triangular(jnp.swapaxes(l11, -1, -2), w1[..., None], lower=False)[..., 0]
        out[self.static.order[0]] = v1 @ lams[0].T
        return out


def prepare(
    terms: Sequence[TermData],
    weights: np.ndarray | None = None,
    eliminate: int | None = None,
) -> MarginalKernel:
    """Precompute the data-only quantities for marginalizing ``terms`` jointly.

    Parameters
    ----------
    terms : sequence of GroupTerm-like objects
        The grouping terms to marginalize (each with ``index``, ``block``, ``n_levels``).
    weights : array (N,), optional
        Known positive observation weights ``W`` (``Var(eps_i) = sigma^2 / w_i``).
    eliminate : int, optional
        Position in ``terms`` of the term whose block-diagonal part is eliminated first.
        Defaults to the term with the most random effects ``n_levels * d``.

    Notes
    -----
    Cost ``O(N sum_k d_k^2 + npairs)``, where ``npairs`` is the number of pairs of other-term
    columns that share a level of the eliminated term (see :func:`pair_count`).
    """
    if not terms:
        raise ValueError("prepare() needs at least one grouping term to marginalize")
    sizes = [t.n_levels * np.asarray(t.block).shape[1] for t in terms]
    first = int(np.argmax(sizes)) if eliminate is None else int(eliminate)
    order = (first,) + tuple(k for k in range(len(terms)) if k != first)
    ts = [terms[k] for k in order]
    n_obs = len(ts[0].index)
    w = np.ones(n_obs) if weights is None else np.asarray(weights, dtype=np.float64)
    idx1 = np.asarray(ts[0].index, dtype=np.int64)
    a1 = np.asarray(ts[0].block, dtype=np.float64)
    n1, d1 = ts[0].n_levels, a1.shape[1]
    s1 = np.zeros((n1, d1, d1))
    np.add.at(s1, idx1, w[:, None, None] * a1[:, :, None] * a1[:, None, :])
    arrays = {
        "w": w,
        "logw_sum": np.sum(np.log(w)),
        "idx1": idx1.astype(np.int32),
        "A1": a1,
        "S1": s1,
    }
    dims = tuple((t.n_levels, np.asarray(t.block).shape[1]) for t in ts)
    if len(ts) > 1:
        arrays.update(_prepare_rest(ts, w, idx1, a1))
    static = _Static(n_obs=n_obs, order=order, dims=dims, weighted=weights is not None)
    return MarginalKernel(static, {k: jnp.asarray(v) for k, v in arrays.items()})


def _rest_columns(ts: Sequence[TermData]) -> tuple[np.ndarray, np.ndarray]:
    """Column (in the stacked rest vector) and value of each observation's non-zeros of Z_2."""
    cols, vals, start = [], [], 0
    for t in ts[1:]:
        blk = np.asarray(t.block, dtype=np.float64)
        d = blk.shape[1]
        idx = np.asarray(t.index, dtype=np.int64)
        cols.append(start + idx[:, None] * d + np.arange(d)[None, :])
        vals.append(blk)
        start += t.n_levels * d
    return np.concatenate(cols, axis=1), np.concatenate(vals, axis=1)


def _prepare_rest(ts, w, idx1, a1) -> dict[str, np.ndarray]:
    """Data-only pieces of the Schur complement: M_22, the non-zeros of N_12 and their pairs."""
    col, val = _rest_columns(ts)
    q2 = sum(t.n_levels * np.asarray(t.block).shape[1] for t in ts[1:])
    n_obs, width = col.shape
    # M_22 = Z_2^T W Z_2 (dense q2 x q2; data only)
    z2 = sparse.csr_matrix(
        (val.reshape(-1), (np.repeat(np.arange(n_obs), width), col.reshape(-1))),
        shape=(n_obs, q2),
    )
    m22 = (z2.T @ sparse.diags(w) @ z2).toarray()
    wv = w[:, None] * val
    # N_12 non-zeros: (level j of term 1, rest column c) -> d1-vector sum w a1 z2
    key = (idx1[:, None] * q2 + col).reshape(-1)
    uniq, inv = np.unique(key, return_inverse=True)
    contrib = (a1[:, None, :] * wv[:, :, None]).reshape(-1, a1.shape[1])
    nz_val = np.zeros((len(uniq), a1.shape[1]))
    np.add.at(nz_val, inv, contrib)
    nz_level, nz_col = uniq // q2, uniq % q2
    # pairs (a <= b) of non-zeros that share a level of term 1 (uniq is sorted by level, col)
    starts = np.searchsorted(nz_level, np.arange(ts[0].n_levels))
    counts = np.bincount(nz_level, minlength=ts[0].n_levels)
    pos = np.arange(len(uniq)) - starts[nz_level]  # rank of each non-zero within its level
    n_after = counts[nz_level] - pos  # partners b >= a in the same level
    pair_a = np.repeat(np.arange(len(uniq)), n_after)
    offs = np.arange(len(pair_a)) - np.repeat(np.cumsum(n_after) - n_after, n_after)
    pair_b = pair_a + offs
    return {
        "rest_col": col.astype(np.int32),
        "rest_val": val,
        "M22": m22,
        "nz_level": nz_level.astype(np.int32),
        "nz_col": nz_col.astype(np.int32),
        "nz_val": nz_val,
        "pair_a": pair_a.astype(np.int32),
        "pair_b": pair_b.astype(np.int32),
        "pair_w": np.where(pair_a == pair_b, 0.5, 1.0),
        "pair_cell": (nz_col[pair_a] * q2 + nz_col[pair_b]).astype(np.int64),
    }


def pair_count(terms: Sequence[TermData], eliminate: int) -> int:
    """Number of column pairs the Schur complement accumulates when ``eliminate`` goes first.

    A cheap data-only cost estimate (no arrays of that size are built) for the planner.
    """
    first = terms[eliminate]
    others = [t for k, t in enumerate(terms) if k != eliminate]
    if not others:
        return 0
    idx1 = np.asarray(first.index, dtype=np.int64)
    total = np.zeros(first.n_levels, dtype=np.int64)
    for t in others:
        d = np.asarray(t.block).shape[1]
        key = np.unique(idx1 * t.n_levels + np.asarray(t.index, dtype=np.int64))
        total += d * np.bincount(key // t.n_levels, minlength=first.n_levels)
    return int(np.sum(total * (total + 1) // 2))
