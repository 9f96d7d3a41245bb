"""Exact marginalization of Gaussian random effects in linear time (pure JAX, no NumPyro).

For residuals ``r = y - X beta - (sampled random effects)`` and a set of *marginalized* grouping
terms with stacked design ``Z`` and covariance factors ``G_k = Lambda_k Lambda_k^T``::

    r ~ N(0, Sigma),   Sigma = sigma^2 W^{-1} + Z Lambda Lambda^T Z^T,
    P = I + Lambda^T Z^T W Z Lambda / sigma^2,   c = Lambda^T Z^T W r,
    log|Sigma| = N log sigma^2 - sum log w + log|P|                   (determinant lemma)
    r^T Sigma^{-1} r = (r^T W r - c^T P^{-1} c / sigma^2) / sigma^2     (Woodbury)

The first marginalized term (the *eliminated* term, normally the largest) makes ``P`` block
diagonal with ``d x d`` blocks, one per level. When the terms are *nested* (each level of a
term lies within one level of the next: observations in broods in locations), the whole of
``P`` is eliminated that way, finest term first: a level's block only updates the blocks of the
levels that contain it, so nothing fills in and the cost is ``O(N d + sum_k L_k d^3)``.
Otherwise the remaining marginalized terms are handled through the Schur complement of the
first term's block-diagonal part::

    S = I + Lambda_2^T (M_22 / sigma^2 - T / sigma^4) Lambda_2,
    T = N_21 Lambda_1 P_11^{-1} Lambda_1^T N_12,

where ``M_22 = Z_2^T W Z_2`` and ``N_12 = Z_1^T W Z_2`` are data-only and precomputed, and ``T``
is accumulated over the pairs of columns that share a level of the eliminated term. Every
evaluation costs ``O(N d + L d^3 + npairs + q_2^3)``; with one term it is ``O(N d + L d^3)``.
The ``O(N d)`` part goes when the residual is given as `Affine` coefficients of fixed columns
and sampled terms' effects, whose cross products with ``Z`` are precomputed.

The same factorization serves three callers: the log-density inside HMC, the generalized
least-squares Gram matrix used by maximum likelihood / REML, and the exact conditional draws of
the random effects (``u | r ~ N(G Z^T Sigma^{-1} r, G - G Z^T Sigma^{-1} Z G)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.tree_util import register_pytree_node_class

from . import _x64  # noqa: F401  (float64 before any JAX array)
from .blocked import blocked_matmul
from .pairs import level_pairs

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
    n_diag: int  # terms eliminated block-diagonally: a nested chain, 1, or 0 (dense joint)
    cross: str  # "pairs" (sparse N_12 and its column pairs) or "dense" (N_12 as L1 x d1 x q2)
    sampled: tuple[tuple[int, int], ...] = ()  # (n_levels, d) of the sampled terms (Affine)

    @property
    def dims_rest(self) -> tuple[tuple[int, int], ...]:
        return self.dims[self.n_diag :]

    @property
    def q2(self) -> int:
        return sum(n * d for n, d in self.dims_rest)


@dataclass(frozen=True)
class Elimination:
    """How the joint precision ``P`` of the marginalized terms is factored (chosen by the planner).

    Attributes
    ----------
    order : tuple of int
        Positions, in the list of terms given to [`prepare()`][lmmhmc.marginal.prepare], in
        elimination order.
    n_diag : int
        How many leading terms of ``order`` are eliminated block-diagonally: all of them for
        nested terms (finest first), 1 for one term followed by the Schur complement of the
        others, 0 for one dense joint system.
    cross : {"pairs", "dense"}
        Form of the Schur-complement update when ``n_diag == 1`` and other terms remain:
        accumulated over column pairs sharing a level of the eliminated term, or as a dense
        ``(L_1 d_1) x q_2`` product.
    """

    order: tuple[int, ...]
    n_diag: int
    cross: str = "dense"

    @classmethod
    def nested(cls, order: Sequence[int]) -> Elimination:
        """Every term block-diagonally, in ``order`` (finest first; see
        [`nested_order()`][lmmhmc.marginal.nested_order])."""
        return cls(tuple(order), len(order))

    @classmethod
    def first(cls, k: int, n_terms: int, cross: str = "dense") -> Elimination:
        """Term ``k`` block-diagonally, then the Schur complement of the other terms."""
        return cls((k, *(j for j in range(n_terms) if j != k)), 1, cross)

    @classmethod
    def dense(cls, n_terms: int) -> Elimination:
        """One dense joint system of every effect."""
        return cls(tuple(range(n_terms)), 0)


#: Block size up to which per-level factorizations are unrolled into elementwise operations.
SMALL_BLOCK = 4


def small_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` over broadcast batch dimensions, for small inner dimension ``d``.

    Written as an elementwise product and a sum over the inner axis: XLA fuses it, where a
    batched ``dot_general`` of many tiny matrices is slow on CPU.
    """
    return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def cholesky(p: jax.Array) -> jax.Array:
    """Lower Cholesky factor(s) of symmetric positive-definite ``p`` (..., q, q).

    It factors ``p^T`` without ``jnp.linalg.cholesky``'s symmetrization ``(p + p^T) / 2``:
    LAPACK reads its operand column-major, so ``p^T`` is ``p``'s own row-major buffer where
    ``p`` itself, or the symmetrization, costs a transposed copy (InstEval's 1142 x 1142 Schur
    complement: 6 to 13 ms of a 150 to 190 ms value and gradient). For symmetric ``p`` the
    factors agree.
    """
    return jax.lax.linalg.cholesky(jnp.swapaxes(p, -1, -2), symmetrize_input=False)


def batched_cholesky(p: jax.Array) -> jax.Array:
    """Lower Cholesky factors of a batch of small SPD matrices ``p`` (..., d, d).

    For ``d <= SMALL_BLOCK`` the factorization is unrolled into elementwise operations over the
    batch (Cholesky-Banachiewicz), which XLA fuses and differentiates cheaply; larger blocks
    use LAPACK.
    """
    d = p.shape[-1]
    if d > SMALL_BLOCK:
        return cholesky(p)
    rows = [[None] * d for _ in range(d)]
    for i in range(d):
        for j in range(i + 1):
            acc = p[..., i, j] - sum(rows[i][k] * rows[j][k] for k in range(j))
            rows[i][j] = jnp.sqrt(acc) if i == j else acc / rows[j][j]
    zero = jnp.zeros_like(p[..., 0, 0])
    return jnp.stack(
        [jnp.stack([rows[i][j] if j <= i else zero for j in range(d)], -1) for i in range(d)],
        -2,
    )


def batched_solve(chol: jax.Array, b: jax.Array, transpose: bool = False) -> jax.Array:
    """Solve ``L x = b`` (or ``L^T x = b``) for a batch of small lower-triangular ``L``.

    ``chol`` is (..., d, d), ``b`` is (..., d, m); unrolled substitution for small ``d``.
    """
    d = chol.shape[-1]
    if d > SMALL_BLOCK:
        return solve_triangular(chol, b, lower=True, trans=1 if transpose else 0)
    x = [None] * d
    order = range(d - 1, -1, -1) if transpose else range(d)
    for i in order:
        if transpose:  # row i of L^T is column i of L
            known = [(chol[..., k, i], k) for k in range(i + 1, d)]
        else:
            known = [(chol[..., i, k], k) for k in range(i)]
        acc = b[..., i, :] - sum(c[..., None] * x[k] for c, k in known)
        x[i] = acc / chol[..., i, i][..., None]
    return jnp.stack(x, axis=-2)


def take_rows(x: jax.Array, index: jax.Array) -> jax.Array:
    """``x[index]`` along the first axis, for valid non-negative ``index`` (data-only level
    indices): one gather, without the per-call wrapping of negative indices that ``x[index]``
    adds (a compare and a select per index: on InstEval's 1.8 million pairs of the Schur
    update, a sixth of a value-and-gradient)."""
    dims = jax.lax.GatherDimensionNumbers(offset_dims=tuple(range(1, x.ndim)),
                                          collapsed_slice_dims=(0,), start_index_map=(0,))
    return jax.lax.gather(x, index[:, None], dims, slice_sizes=(1, *x.shape[1:]),
                          mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


@jax.custom_vjp
def logdet_and_quad(p: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(log|P|, Y^T P^{-1} Y)`` for symmetric positive-definite ``P`` (q x q), ``Y`` (q x m).

    Forward by Cholesky; the reverse mode uses ``P^{-1}`` directly
    (``d log|P| = P^{-1}``, ``d Y^T P^{-1} Y / dP = -P^{-1} Y (.) Y^T P^{-1}``), which is several
    times faster on CPU than differentiating through the Cholesky factorization.
    """
    return _logdet_and_quad_fwd(p, y)[0]


def _logdet_and_quad_fwd(p, y):
    chol = cholesky(p)
    x = solve_triangular(chol, y, lower=True)
    z = solve_triangular(chol.T, x, lower=False)  # P^{-1} Y
    out = (2.0 * jnp.sum(jnp.log(jnp.diagonal(chol))), x.T @ x)
    return out, (chol, z)


def _logdet_and_quad_bwd(res, g):
    chol, z = res
    g_logdet, g_quad = g
    chol_inv = solve_triangular(chol, jnp.eye(chol.shape[0]), lower=True)
    p_inv = blocked_matmul(chol_inv.T, chol_inv)
    return g_logdet * p_inv - z @ g_quad @ z.T, z @ (g_quad + g_quad.T)


logdet_and_quad.defvjp(_logdet_and_quad_fwd, _logdet_and_quad_bwd)


@jax.custom_vjp
def gram_matrix(e: jax.Array) -> jax.Array:
    """``E^T E``; the reverse mode is one matrix product ``E (G + G^T)`` (both by
    `lmmhmc.blocked.blocked_matmul`)."""
    return blocked_matmul(e.T, e)


def _gram_matrix_fwd(e):
    return blocked_matmul(e.T, e), e


def _gram_matrix_bwd(e, g):
    return (blocked_matmul(e, g + g.T),)


gram_matrix.defvjp(_gram_matrix_fwd, _gram_matrix_bwd)


@dataclass(frozen=True)
class Affine:
    """Residuals given as ``R = F coef - sum_k Z_k u_k`` for the fixed columns ``F`` and the
    sampled terms ``k`` passed to [`prepare()`][lmmhmc.marginal.prepare].

    Typical use: ``F = [X, y]`` and ``coef = [-beta, 1]``, so ``r = y - X beta - sum_k Z_k u_k``
    and every projection ``Z^T W r`` is a precomputed ``(Z^T W F) coef`` less the precomputed
    cross products ``(Z^T W Z_k) u_k``, and ``r^T W r`` a quadratic form in ``coef`` and the
    ``u_k``: no pass over the observations per evaluation.

    Attributes
    ----------
    coef : array (f,) or (f, m)
        Coefficients of the fixed columns (``m`` residual columns).
    effects : tuple of arrays (L_k, d_k)
        The effects ``u_k`` of the sampled terms given to ``prepare(sampled=...)``, in that
        order (only with one residual column); empty: ``R = F coef``.
    """

    coef: jax.Array
    effects: tuple = ()


def _project_columns(a: dict, st: _Static, wr: jax.Array) -> tuple:
    """Segment sums ``Z_i^T (W R)`` of the eliminated terms (L_i, d_i, m) and ``Z_2^T (W R)``."""
    b1 = [
        jax.ops.segment_sum(a[f"A{i}"][:, :, None] * wr[:, None, :], a[f"idx{i}"],
                            num_segments=st.dims[i][0])
        for i in range(st.n_diag)
    ]
    b2 = None
    if st.q2:
        b2 = jax.ops.segment_sum(
            (a["rest_val"][:, :, None] * wr[:, None, :]).reshape(-1, wr.shape[1]),
            a["rest_col"].reshape(-1),
            num_segments=st.q2,
        )
    return b1, b2


def _less_effects(a: dict, st: _Static, coef: jax.Array, effects: tuple, proj: tuple) -> tuple:
    """The projections ``proj`` of ``R = F coef`` turned into those of ``R - sum_k Z_k u_k``:
    ``Z_i^T W R`` less ``(Z_i^T W Z_k) u_k`` and ``R^T W R`` less ``2 coef^T (F^T W Z_k) u_k``
    plus ``sum_{k, l} u_k^T (Z_k^T W Z_l) u_l``, each cross product a gather, a small product
    and a segment sum over its level pairs (`level_pairs`), none over the observations."""
    if coef.shape[1] != 1:
        raise ValueError("Affine residuals with sampled effects have one column")
    b1, b2, rwr = proj
    b1, rest = list(b1), []

    def times(key: str, u: jax.Array) -> jax.Array:  # each pair's block times u at its column
        return small_matmul(a[key + "v"], take_rows(u, a[key + "c"])[..., None])[..., 0]

    for i, (n, _) in enumerate(st.dims):
        zu = sum(jax.ops.segment_sum(times(f"U{i}_{k}", u), a[f"U{i}_{k}r"], num_segments=n,
                                     indices_are_sorted=True)
                 for k, u in enumerate(effects))  # Z_i^T W sum_k Z_k u_k, (n, d_i)
        if i < st.n_diag:
            b1[i] = b1[i] - zu[..., None]
        else:
            rest.append(zu.reshape(-1))
    if rest:
        b2 = b2 - jnp.concatenate(rest)[:, None]
    for k, u in enumerate(effects):
        rwr = rwr - 2.0 * coef.T @ jnp.einsum("jd,jdf->f", u, a[f"UF{k}"])[:, None]
        for m in range(k, len(effects)):
            uzu = jnp.sum(take_rows(u, a[f"UU{k}_{m}r"]) * times(f"UU{k}_{m}", effects[m]))
            rwr = rwr + (1.0 if m == k else 2.0) * uzu
    return b1, b2, rwr


@register_pytree_node_class
class MarginalKernel:
    """Precomputed data-only quantities for marginalizing a set of grouping terms.

    Build it with [`prepare()`][lmmhmc.marginal.prepare]; it is a JAX pytree (data arrays are
    leaves, shapes are static), so it can be passed as an argument to jitted functions without
    recompiling for new data of the same shapes.
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
        for (n, d), lam in zip(self.static.dims_rest, lams_rest, strict=True):
            blk = x[start : start + n * d].reshape(n, d, -1)
            mat = lam.T if transpose else lam
            out.append(small_matmul(mat, blk).reshape((n * d,) + x.shape[1:]))
            start += n * d
        return jnp.concatenate(out, axis=0)

    def _rest_congruence(self, lams_rest: list[jax.Array], m: jax.Array) -> jax.Array:
        """``Lambda_2^T M Lambda_2`` for ``M`` (q2, q2): the rows by ``Lambda_2^T``, then the
        columns by ``Lambda_2`` in place (no transpose: the Cholesky factorization reads the
        result's row-major buffer as it is, see [`cholesky()`][lmmhmc.marginal.cholesky])."""
        left = self._rest_apply(lams_rest, m, True)
        out, start = [], 0
        for (n, d), lam in zip(self.static.dims_rest, lams_rest, strict=True):
            blk = left[:, start : start + n * d].reshape(-1, n, d)
            out.append(small_matmul(blk, lam).reshape(-1, n * d))
            start += n * d
        return jnp.concatenate(out, axis=1)

    def _factor(self, sigma: jax.Array, lams: list[jax.Array]):
        """Block Cholesky factor of P: the eliminated terms' blocks, then the rest matrix S.

        Returns ``(chols, links, e, s)``: per eliminated term ``i`` the lower Cholesky factors
        ``L_i`` of its levels' blocks (L_i, d_i, d_i); for nested terms ``i < j`` the scaled
        off-diagonal blocks ``links[i, j] = L_i^{-1} O_ij`` (L_i, d_i, d_j) that tie each level
        of ``i`` to the level of ``j`` containing it; the cross terms ``e`` and the Schur
        complement ``S`` of the rest (None without a rest).
        """
        a, st = self.arrays, self.static
        s2 = sigma**2
        # P's blocks: D_i = I + Lambda_i^T S_i Lambda_i / s2,  O_ij = Lambda_i^T N_ij Lambda_j / s2
        blocks = [
            jnp.eye(d) + small_matmul(lams[i].T, small_matmul(a[f"S{i}"], lams[i])) / s2
            for i, (_, d) in enumerate(st.dims[: st.n_diag])
        ]
        offs = {
            (i, j): small_matmul(lams[i].T, small_matmul(a[f"N{i}_{j}"], lams[j])) / s2
            for i in range(st.n_diag) for j in range(i + 1, st.n_diag)
        }
        chols, links = [], {}
        for i in range(st.n_diag):
            chols.append(batched_cholesky(blocks[i]))
            for j in range(i + 1, st.n_diag):
                links[i, j] = batched_solve(chols[i], offs[i, j])
            # eliminating term i updates the blocks of the levels that contain each of its levels
            for j in range(i + 1, st.n_diag):
                up = links[i, j].swapaxes(-1, -2)
                parent, n_j = a[f"anc{i}_{j}"], st.dims[j][0]
                blocks[j] = blocks[j] - jax.ops.segment_sum(
                    small_matmul(up, links[i, j]), parent, num_segments=n_j)
                for k in range(j + 1, st.n_diag):
                    offs[j, k] = offs[j, k] - jax.ops.segment_sum(
                        small_matmul(up, links[i, k]), parent, num_segments=n_j)
        e = s = None
        if st.q2 == 0:
            return chols, links, e, s
        inner = a["M22"] / s2
        if st.n_diag:
            # G_j = L11_j^{-1} Lambda_1^T;  e_{j,c} = G_j N_12[j, c];  T = sum_j e_j^T e_j
            g = batched_solve(chols[0], jnp.broadcast_to(lams[0].T, chols[0].shape))
            e = self._cross(g)
            inner = inner - self._cross_gram(g, e) / s2**2
        lams_rest = lams[st.n_diag :]
        return chols, links, e, jnp.eye(st.q2) + self._rest_congruence(lams_rest, inner)

    def _cross(self, g: jax.Array) -> jax.Array:
        """e = G N_12: (nnz, d1) at the non-zeros of N_12, or dense (L1, d1, q2)."""
        a = self.arrays
        if self.static.cross == "dense":
            return small_matmul(g, a["N12"])
        return small_matmul(g[a["nz_level"]], a["nz_val"][:, :, None])[..., 0]

    def _cross_gram(self, g: jax.Array, e: jax.Array) -> jax.Array:
        """T = sum_j e_j^T e_j (q2 x q2) from ``g`` (L1, d1, d1) and ``e = G N_12``.

        With pairs, ``e_a . e_b = <G_j^T G_j, n_a n_b^T>`` for non-zeros ``a, b`` of level
        ``j``: each pair reads the small ``G_j^T G_j`` and its precomputed ``n_a n_b^T``
        (``pair_c``), and the pairs are sorted by cell of ``T``, so the scatter (and in the
        reverse mode the gather) runs along memory.
        """
        a, q2 = self.arrays, self.static.q2
        if self.static.cross == "dense":
            return gram_matrix(e.reshape(-1, e.shape[-1]))
        h = small_matmul(g.swapaxes(-1, -2), g).reshape(g.shape[0], -1)
        pair_dot = jnp.sum(take_rows(h, a["pair_level"]) * a["pair_c"], axis=-1)
        t = jax.ops.segment_sum(pair_dot, a["pair_cell"], num_segments=q2 * q2,
                                indices_are_sorted=True).reshape(q2, q2)
        return t + t.T

    def _cross_apply(self, e: jax.Array, x1: jax.Array) -> jax.Array:
        """sum_j e_j^T x1_j for x1 of shape (L1, d1, m): the (q2, m) update of the rest."""
        a = self.arrays
        if self.static.cross == "dense":
            return e.reshape(-1, e.shape[-1]).T @ x1.reshape(-1, x1.shape[-1])
        return jax.ops.segment_sum(
            jnp.sum(e[:, :, None] * x1[a["nz_level"]], axis=1), a["nz_col"],
            num_segments=self.static.q2,
        )

    def _cross_apply_t(self, e: jax.Array, u2: jax.Array) -> jax.Array:
        """e_j u2 for every level j of term 1: (L1, d1)."""
        a = self.arrays
        if self.static.cross == "dense":
            return (e.reshape(-1, e.shape[-1]) @ u2).reshape(e.shape[:2])
        return jax.ops.segment_sum(
            e * u2[a["nz_col"]][:, None], a["nz_level"], num_segments=self.static.dims[0][0]
        )

    def _project(self, resid) -> tuple:
        """``(Z_1^T W R, Z_2^T W R, R^T W R)`` of residual columns R (the N-dependent part).

        ``resid`` is an array (N,) or (N, m), or [`Affine`][lmmhmc.marginal.Affine] coefficients for
        the residuals ``R = F coef`` of the fixed columns ``F`` given to
        [`prepare()`][lmmhmc.marginal.prepare], whose projections were precomputed (then nothing
        here depends on N).
        """
        a, st = self.arrays, self.static
        if isinstance(resid, Affine) and len(resid.effects) != len(st.sampled):
            raise ValueError(f"Affine residuals with {len(resid.effects)} sampled terms' "
                             f"effects for a kernel with {len(st.sampled)} (reweighted "
                             "kernels have none)")
        if isinstance(resid, Affine) and "FWF" not in a:  # reweighted: R = F coef, O(N)
            resid = a["F"] @ jnp.asarray(resid.coef).reshape(a["F"].shape[1], -1)
        if isinstance(resid, Affine):
            coef = jnp.asarray(resid.coef).reshape(a["FWF"].shape[0], -1)
            b1 = [a[f"BF{i}"] @ coef for i in range(st.n_diag)]
            b2 = a["BFR"] @ coef if st.q2 else None
            proj = b1, b2, coef.T @ a["FWF"] @ coef
            return _less_effects(a, st, coef, resid.effects, proj) if resid.effects else proj
        r = jnp.asarray(resid).reshape(st.n_obs, -1)
        wr = r * a["w"][:, None]
        return _project_columns(a, st, wr) + (r.T @ wr,)

    def _solve_forward(self, proj, sigma: jax.Array, lams: list[jax.Array], fac):
        """x_i = L_i^{-1} c_i of the eliminated terms and the rest's right-hand side y2.

        ``c = Lambda^T Z^T W R``, less the eliminated levels' contributions
        (``c_j -= links[i, j]^T x_i`` into the containing levels);
        ``y2 = Lambda_2^T (Z_2^T W R - sum_j e_j^T x1_j / sigma^2)``, so that
        ``c^T P^{-1} c = sum_i |x_i|^2 + y2^T S^{-1} y2``.
        """
        a, st = self.arrays, self.static
        chols, links, e, s = fac
        b1, b2, _ = proj
        cs = [small_matmul(lams[i].T, b1[i]) for i in range(st.n_diag)]
        xs = []
        for i in range(st.n_diag):
            xs.append(batched_solve(chols[i], cs[i]))
            for j in range(i + 1, st.n_diag):
                cs[j] = cs[j] - jax.ops.segment_sum(
                    small_matmul(links[i, j].swapaxes(-1, -2), xs[i]), a[f"anc{i}_{j}"],
                    num_segments=st.dims[j][0])
        y2 = None
        if s is not None:
            if st.n_diag:
                b2 = b2 - self._cross_apply(e, xs[0]) / sigma**2
            y2 = self._rest_apply(lams[st.n_diag :], b2, True)
        return xs, y2

    @property
    def weights(self) -> jax.Array:
        """The observation weights ``w`` (N,) the kernel was prepared with."""
        return self.arrays["w"]

    def reweighted(self, w: jax.Array) -> MarginalKernel:
        """The kernel for observation weights ``w`` (N,) that depend on the draw.

        Every weighted Gram block (``S_i``, ``N_ij``, ``M_22``, ``N_12``) is recomputed by
        segment sums over the observations, ``O(N (sum_k d_k)^2)``; the precomputed
        projections of the fixed columns and the sampled terms' cross products are dropped
        (residuals given as [`Affine`][lmmhmc.marginal.Affine] are expanded to ``F coef``,
        ``O(N f)``; they can no longer hold sampled effects).
        """
        arrays = {k: v for k, v in self.arrays.items()  # valid for the old weights only
                  if k != "FWF" and not k.startswith(("BF", "U"))}
        arrays.update(_weighted_arrays(arrays, self.static, w))
        return MarginalKernel(replace(self.static, sampled=()), arrays)

    def _per_observation(self, sigma) -> tuple[MarginalKernel, jax.Array]:
        """``(kernel, sigma)`` with a per-observation sd ``sigma_i`` (an (N,) array) folded into
        the weights, ``w_i / sigma_i^2``, and ``sigma = 1``; a scalar ``sigma`` unchanged."""
        if jnp.ndim(sigma) == 0:
            return self, sigma
        return self.reweighted(self.arrays["w"] / jnp.square(sigma)), jnp.ones(())

    # ------------------------------------------------------------------ public kernels
    def gram(
        self, resid, sigma: jax.Array, lams: Sequence[jax.Array]
    ) -> tuple[jax.Array, jax.Array]:
        """Return ``(log|Sigma|, R^T Sigma^{-1} R)`` for residual columns ``R``.

        Parameters
        ----------
        resid : array (N,) or (N, m), or Affine
            Residual vector(s), or [`Affine`][lmmhmc.marginal.Affine] coefficients of the fixed
            columns.
        sigma : scalar or array (N,)
            Residual standard deviation: one scalar (``Var(eps_i) = sigma^2 / w_i``, the
            precomputed Gram blocks) or one per observation (``sigma_i^2 / w_i``, the blocks
            recomputed for this call by
            [`reweighted()`][lmmhmc.marginal.MarginalKernel.reweighted]).
        lams : sequence of (d_k, d_k) arrays
            Lower Cholesky factors of each marginalized term's covariance, in the order the
            terms were given to [`prepare()`][lmmhmc.marginal.prepare].
        """
        kernel, sigma = self._per_observation(sigma)
        if kernel is not self:
            return kernel.gram(resid, sigma, lams)
        lams = self._lams_in_order(lams)
        proj = self._project(resid)
        fac = self._factor(sigma, lams)
        chols, _, _, s = fac
        xs, y2 = self._solve_forward(proj, sigma, lams, fac)
        s2 = sigma**2
        rwr = proj[2]
        cpc = jnp.zeros_like(rwr)
        logdet_p = 0.0
        for x, chol in zip(xs, chols, strict=True):
            xf = x.reshape(-1, x.shape[-1])
            cpc = cpc + xf.T @ xf
            logdet_p = logdet_p + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)))
        if s is not None:
            logdet_s, quad_s = logdet_and_quad(s, y2)
            cpc = cpc + quad_s
            logdet_p = logdet_p + logdet_s
        quad = (rwr - cpc / s2) / s2
        logdet = self.static.n_obs * jnp.log(s2) - self.arrays["logw_sum"] + logdet_p
        return logdet, quad

    def log_density(self, resid, sigma: jax.Array, lams: Sequence[jax.Array]) -> jax.Array:
        """Marginal log-density ``log N(r | 0, Sigma)`` of one residual (see
        [`gram()`][lmmhmc.marginal.MarginalKernel.gram])."""
        logdet, quad = self.gram(resid, sigma, lams)
        return -0.5 * (self.static.n_obs * LOG_2PI + logdet + quad[0, 0])

    def noise_shapes(self) -> list[tuple[int, int]]:
        """Shapes (n_levels, d) of the standard-normal noise
        [`draw()`][lmmhmc.marginal.MarginalKernel.draw] takes, caller order."""
        shapes = [None] * len(self.static.order)
        for pos, dims in zip(self.static.order, self.static.dims, strict=True):
            shapes[pos] = dims
        return shapes

    def draw(
        self,
        resid,
        sigma: jax.Array,
        lams: Sequence[jax.Array],
        noise: Sequence[jax.Array],
    ) -> list[jax.Array]:
        """Draw the marginalized random effects from their exact joint conditional ``u | r``.

        ``resid`` is one residual vector (N,) or [`Affine`][lmmhmc.marginal.Affine] coefficients
        (see [`gram()`][lmmhmc.marginal.MarginalKernel.gram]).

        With ``P = L L^T`` (block Cholesky) and ``u = Lambda v``:
        ``v = L^{-T} (L^{-1} c / sigma^2 + z)``, so ``v ~ N(P^{-1} c / sigma^2, P^{-1})``.
        ``noise`` holds standard-normal arrays of
        [`noise_shapes()`][lmmhmc.marginal.MarginalKernel.noise_shapes]; zeros give the conditional
        mean. ``sigma`` is a scalar or one sd per observation, as in
        [`gram()`][lmmhmc.marginal.MarginalKernel.gram]. Returns one (n_levels, d) array per
        term, in the caller's order.
        """
        kernel, sigma = self._per_observation(sigma)
        if kernel is not self:
            return kernel.draw(resid, sigma, lams, noise)
        return self._solve(resid, sigma, lams, noise)[1]

    def conditional(self, resid, lams: Sequence[jax.Array],
                    noise: Sequence[jax.Array]) -> tuple[list, list, jax.Array]:
        """``(v, u, log|P|)`` of [`draw()`][lmmhmc.marginal.MarginalKernel.draw] with
        ``sigma = 1``: the spherical effects ``v = P^{-1} c + L^{-T} z``, the effects
        ``u = Lambda v`` (one (n_levels, d) array per term, caller order) and ``log|P|``.

        With weights ``W`` from [`reweighted()`][lmmhmc.marginal.MarginalKernel.reweighted],
        ``P = I + Lambda^T Z^T W Z Lambda`` is the negative Hessian of a Laplace approximation in
        ``v`` (`lmmhmc.laplace`).
        """
        return self._solve(resid, 1.0, lams, noise)

    def _solve(self, resid, sigma, lams, noise) -> tuple[list, list, jax.Array]:
        """``(v, u, log|P|)``: the spherical and the actual effects of
        [`draw()`][lmmhmc.marginal.MarginalKernel.draw] (caller order) and ``log|P|``."""
        a, st = self.arrays, self.static
        lams = self._lams_in_order(lams)
        noise = [jnp.asarray(noise[k]) for k in st.order]
        fac = self._factor(sigma, lams)
        chols, links, e, s = fac
        xs, y2 = self._solve_forward(self._project(resid), sigma, lams, fac)
        s2 = sigma**2
        out, vout = [None] * len(lams), [None] * len(lams)
        corr = 0.0
        logdet = sum(2.0 * jnp.sum(jnp.log(jnp.diagonal(c, axis1=-2, axis2=-1)))
                     for c in chols)
        if s is not None:
            l22 = cholesky(s)
            logdet = logdet + 2.0 * jnp.sum(jnp.log(jnp.diagonal(l22)))
            x2 = solve_triangular(l22, y2[:, 0], lower=True)
            w2 = x2 / s2 + jnp.concatenate([z.reshape(-1) for z in noise[st.n_diag :]])
            v2 = solve_triangular(l22.T, w2, lower=False)
            u2 = self._rest_apply(lams[st.n_diag :], v2, False)
            if st.n_diag:
                # (L_21^T v_2)_j = e_j (Lambda_2 v_2) / sigma^2
                corr = self._cross_apply_t(e, u2) / s2
            start = 0
            for k, (n, d) in enumerate(st.dims_rest, start=st.n_diag):
                out[st.order[k]] = u2[start : start + n * d].reshape(n, d)
                vout[st.order[k]] = v2[start : start + n * d].reshape(n, d)
                start += n * d
        # back substitution through the eliminated terms, coarsest first:
        # v_i = L_i^{-T} (x_i / sigma^2 + z_i - sum_{j > i} links[i, j] v_j[containing level])
        vs = [None] * st.n_diag
        for i in reversed(range(st.n_diag)):
            w = xs[i][..., 0] / s2 + noise[i] - (corr if i == 0 else 0.0)
            for j in range(i + 1, st.n_diag):
                w = w - small_matmul(links[i, j], vs[j][a[f"anc{i}_{j}"]][..., None])[..., 0]
            vs[i] = batched_solve(chols[i], w[..., None], transpose=True)[..., 0]
            out[st.order[i]] = vs[i] @ lams[i].T
            vout[st.order[i]] = vs[i]
        return vout, out, logdet


def prepare(
    terms: Sequence[TermData],
    weights: np.ndarray | None = None,
    elimination: Elimination | None = None,
    fixed: np.ndarray | None = None,
    sampled: Sequence[TermData] = (),
) -> MarginalKernel:
    """Precompute the data-only quantities for marginalizing ``terms`` jointly.

    Parameters
    ----------
    terms : sequence of GroupTerm-like objects
        The grouping terms to marginalize (each with ``index``, ``block``, ``n_levels``).
    weights : array (N,), optional
        Known positive observation weights ``W`` (``Var(eps_i) = sigma^2 / w_i``).
    elimination : Elimination
        The factorization order, as chosen by
        [`lmmhmc.plan.elimination()`][lmmhmc.plan.elimination]; it may be omitted for a single term.
    fixed : array (N, f), optional
        Fixed columns ``F`` (e.g. ``[X, y]``) whose projections ``Z^T W F`` and ``F^T W F`` are
        precomputed, for residuals given as [`Affine`][lmmhmc.marginal.Affine] coefficients.
    sampled : sequence of GroupTerm-like objects, optional
        Terms whose effects ``u_k`` enter the residuals ``F coef - sum_k Z_k u_k`` (given as
        ``Affine(coef, effects)``; needs ``fixed``): the cross products ``Z^T W Z_k``,
        ``Z_k^T W Z_l`` and ``F^T W Z_k`` are precomputed over the distinct level pairs of
        the observations, so an evaluation costs ``O(sum of the pairs' d_i d_k)``, not
        ``O(N)``.

    Notes
    -----
    Cost ``O(N sum_k d_k^2 + sum_k L_k d_k^3)`` for nested terms; otherwise
    ``O(N sum_k d_k^2 + npairs + q_2^2)`` with ``q_2`` the effects not eliminated and
    ``npairs`` the pairs of their columns that share a level of the eliminated term.
    """
    if not terms:
        raise ValueError("prepare() needs at least one grouping term to marginalize")
    if elimination is None:
        if len(terms) > 1:
            raise ValueError("prepare() needs the elimination order of several terms: "
                             "pass lmmhmc.plan.elimination(terms)")
        elimination = Elimination.nested((0,))
    if sorted(elimination.order) != list(range(len(terms))):
        raise ValueError(f"elimination order {elimination.order} is not a permutation of the "
                         f"{len(terms)} terms")
    order, n_diag, cross = elimination.order, elimination.n_diag, elimination.cross
    ts = [terms[k] for k in order]
    if n_diag > 1 and nested_order(ts[:n_diag]) != tuple(range(n_diag)):
        raise ValueError("a block-diagonal elimination of several terms needs nested terms, "
                         "finest first: each level of a term within one level of the next")
    n_obs = len(ts[0].index)
    w = np.ones(n_obs) if weights is None else np.asarray(weights, dtype=np.float64)
    arrays = _prepare_chain(ts[:n_diag])
    if len(ts) > n_diag:
        arrays.update(_prepare_rest(ts, n_diag, cross))
    dims = tuple((t.n_levels, np.asarray(t.block).shape[1]) for t in ts)
    f = None if fixed is None else np.asarray(fixed, dtype=np.float64).reshape(n_obs, -1)
    if sampled:
        if f is None:
            raise ValueError("prepare(sampled=...) needs the fixed columns (fixed=...)")
        arrays.update(_prepare_sampled(ts, sampled, f, w))
    static = _Static(n_obs=n_obs, order=order, dims=dims, n_diag=n_diag, cross=cross,
                     sampled=tuple((t.n_levels, np.asarray(t.block).shape[1]) for t in sampled))
    arrays = {k: jnp.asarray(v) for k, v in arrays.items()}
    arrays.update(_derived_program(arrays, static, w, f))
    return MarginalKernel(static, arrays)


def _derived_arrays(a: dict, st: _Static, w, f) -> dict:
    """The weighted arrays of `_weighted_arrays` and,
    for fixed columns ``f`` (N, k) (None: none), ``F``, ``F^T W F`` and the projections
    ``Z_i^T W F`` (``BF{i}``) and ``Z_2^T W F`` (``BFR``)."""
    out = _weighted_arrays(a, st, w)
    if f is None:
        return out
    wf = f * out["w"][:, None]
    b1, b2 = _project_columns(a, st, wf)
    out.update({"F": f, "FWF": f.T @ wf})
    out.update({f"BF{i}": b for i, b in enumerate(b1)})
    if b2 is not None:
        out["BFR"] = b2
    return out


# one compiled program per structure (the shapes static), in place of some forty eager
# operations that a new process would each compile, or find in the cache, on its own
_derived_program = jax.jit(_derived_arrays, static_argnums=1)


def _weighted_arrays(a: dict, st: _Static, w) -> dict:
    """Every array that depends on the weights ``w`` (N,), by segment sums over observations.

    ``S_i = sum w a_i a_i^T`` and ``N_ij = sum w a_i a_j^T`` per level of the eliminated terms,
    ``M_22 = Z_2^T W Z_2`` and ``N_12 = Z_1^T W Z_2`` (dense, or its non-zeros) of the rest:
    ``O(N (sum_k d_k)^2)``. Called once by [`prepare()`][lmmhmc.marginal.prepare] and, for
    weights that depend on the draw, per evaluation by
    [`MarginalKernel.reweighted()`][lmmhmc.marginal.MarginalKernel.reweighted].
    """
    seg = jax.ops.segment_sum
    w = jnp.asarray(w, dtype=jnp.float64)
    out = {"w": w, "logw_sum": jnp.sum(jnp.log(w))}
    for i in range(st.n_diag):
        wa = a[f"A{i}"] * w[:, None]
        for j in range(i, st.n_diag):
            out[f"S{i}" if j == i else f"N{i}_{j}"] = seg(
                wa[:, :, None] * a[f"A{j}"][:, None, :], a[f"idx{i}"],
                num_segments=st.dims[i][0])
    if not st.q2:
        return out
    q2, col = st.q2, a["rest_col"].astype(jnp.int64)
    wval = a["rest_val"] * w[:, None]
    cell = col[:, :, None] * q2 + col[:, None, :]
    out["M22"] = seg((wval[:, :, None] * a["rest_val"][:, None, :]).reshape(-1),
                     cell.reshape(-1), num_segments=q2 * q2).reshape(q2, q2)
    if not st.n_diag:
        return out
    (n1, d1), a1 = st.dims[0], a["A0"]
    contrib = a1[:, None, :] * wval[:, :, None]  # (N, rest columns per row, d1)
    if st.cross == "dense":
        rows = a["idx0"].astype(jnp.int64)[:, None, None] * d1 + jnp.arange(d1)[None, None, :]
        out["N12"] = seg(contrib.reshape(-1), (rows * q2 + col[:, :, None]).reshape(-1),
                         num_segments=n1 * d1 * q2).reshape(n1, d1, q2)
    else:
        nz_val = seg(contrib.reshape(-1, d1), a["nz_inv"], num_segments=a["nz_level"].shape[0])
        pair_c = (take_rows(nz_val, a["pair_a"])[:, :, None]
                  * take_rows(nz_val, a["pair_b"])[:, None, :])
        out["nz_val"] = nz_val
        out["pair_c"] = (pair_c * a["pair_w"][:, None, None]).reshape(-1, d1 * d1)
    return out


def _cross_blocks(a: TermData, b: TermData, w: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """``Z_a^T W Z_b`` over its level pairs: rows ``{prefix}r``, columns ``{prefix}c`` (int32)
    and blocks ``{prefix}v`` (pairs, d_a, d_b), ``sum w a_i b_i^T`` over each pair's
    observations."""
    rows, cols, inverse = level_pairs(a, b)
    blocks = _segment_outer(inverse, len(rows), np.asarray(a.block) * w[:, None], b.block)
    return {prefix + "r": rows.astype(np.int32), prefix + "c": cols.astype(np.int32),
            prefix + "v": blocks}


def _segment_outer(segment: np.ndarray, n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum a_i b_i^T`` over the rows ``i`` of each of ``n`` segments: (n, a cols, b cols)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.stack([np.stack([np.bincount(segment, a[:, i] * b[:, j], n)
                               for j in range(b.shape[1])], -1) for i in range(a.shape[1])], -2)


def _prepare_sampled(ts: Sequence[TermData], sampled: Sequence[TermData], f: np.ndarray,
                     w: np.ndarray) -> dict[str, np.ndarray]:
    """The sampled terms' cross products (`_less_effects`): ``U{i}_{k}*`` of marginalized term
    ``i`` (elimination order) with sampled term ``k``, ``UU{k}_{l}*`` of sampled terms
    ``k <= l``, and ``UF{k} = F^T W Z_k`` as (L_k, d_k, f)."""
    out = {}
    for k, t in enumerate(sampled):
        for i, m in enumerate(ts):
            out.update(_cross_blocks(m, t, w, f"U{i}_{k}"))
        for m in range(k, len(sampled)):
            out.update(_cross_blocks(t, sampled[m], w, f"UU{k}_{m}"))
        out[f"UF{k}"] = _segment_outer(t.index, t.n_levels, np.asarray(t.block) * w[:, None], f)
    return out


def nested_order(terms: Sequence[TermData]) -> tuple[int, ...] | None:
    """Positions of ``terms`` from the finest to the coarsest if they are nested, else None.

    Nested: every level of a term lies within one level of the next term in that order
    (observations within broods within locations); a single term is trivially nested.
    """
    order = tuple(sorted(range(len(terms)), key=lambda k: -terms[k].n_levels))
    for fine, coarse in zip(order, order[1:], strict=False):
        pairs = level_pairs(terms[fine], terms[coarse])[0]
        if len(pairs) != len(np.unique(terms[fine].index)):
            return None
    return order


def _prepare_chain(ts: Sequence[TermData]) -> dict[str, np.ndarray]:
    """Data-only structure of the block-diagonally eliminated terms (a nested chain, finest
    first): each observation's level ``idx{i}`` and block ``A{i}``, and for each coarser term
    ``j`` the level containing each level of ``i``, ``anc{i}_{j}``."""
    out = {}
    for i, t in enumerate(ts):
        idx = np.asarray(t.index, dtype=np.int64)
        out[f"idx{i}"] = idx.astype(np.int32)
        out[f"A{i}"] = np.asarray(t.block, dtype=np.float64)
        for j, coarse in enumerate(ts[i + 1:], start=i + 1):
            parent = np.zeros(t.n_levels, dtype=np.int32)
            parent[idx] = np.asarray(coarse.index)
            out[f"anc{i}_{j}"] = parent
    return out


def _rest_columns(ts: Sequence[TermData]) -> tuple[np.ndarray, np.ndarray]:
    """Column (in the stacked rest vector) and value of each observation's non-zeros of Z_2."""
    cols, vals, start = [], [], 0
    for t in ts:
        blk = np.asarray(t.block, dtype=np.float64)
        d = blk.shape[1]
        idx = np.asarray(t.index, dtype=np.int64)
        cols.append(start + idx[:, None] * d + np.arange(d)[None, :])
        vals.append(blk)
        start += t.n_levels * d
    return np.concatenate(cols, axis=1), np.concatenate(vals, axis=1)


def _prepare_rest(ts, n_diag, cross) -> dict[str, np.ndarray]:
    """Data-only structure of the rest: the non-zeros of Z_2 and (after an elimination with
    ``cross == "pairs"``) those of N_12 and their pairs that share a level of term 1."""
    col, val = _rest_columns(ts[n_diag:])
    q2 = sum(t.n_levels * np.asarray(t.block).shape[1] for t in ts[n_diag:])
    out = {"rest_col": col.astype(np.int32), "rest_val": val}
    if not n_diag or cross == "dense":
        return out
    idx1 = np.asarray(ts[0].index, dtype=np.int64)
    n1 = ts[0].n_levels
    # N_12 non-zeros: (level j of term 1, rest column c); nz_inv maps each observation's
    # rest columns to theirs
    key = (idx1[:, None] * q2 + col).reshape(-1)
    uniq, inv = np.unique(key, return_inverse=True)
    nz_level, nz_col = uniq // q2, uniq % q2
    # pairs (a <= b) of non-zeros that share a level of term 1 (uniq is sorted by level, col)
    starts = np.searchsorted(nz_level, np.arange(n1))
    counts = np.bincount(nz_level, minlength=n1)
    pos = np.arange(len(uniq)) - starts[nz_level]  # rank of each non-zero within its level
    n_after = counts[nz_level] - pos  # partners b >= a in the same level
    pair_a = np.repeat(np.arange(len(uniq)), n_after)
    offs = np.arange(len(pair_a)) - np.repeat(np.cumsum(n_after) - n_after, n_after)
    pair_b = pair_a + offs
    cell = nz_col[pair_a] * q2 + nz_col[pair_b]
    by_cell = np.argsort(cell, kind="stable")
    pair_a, pair_b, cell = pair_a[by_cell], pair_b[by_cell], cell[by_cell]
    return out | {
        "nz_inv": inv.astype(np.int32),
        "nz_level": nz_level.astype(np.int32),
        "nz_col": nz_col.astype(np.int32),
        "pair_a": pair_a.astype(np.int32),
        "pair_b": pair_b.astype(np.int32),
        "pair_level": nz_level[pair_a].astype(np.int32),
        "pair_w": np.where(pair_a == pair_b, 0.5, 1.0),
        # int32 where it fits: a scatter converts wider indices on every call
        "pair_cell": cell.astype(np.int32 if q2 * q2 < 2**31 else np.int64),
    }
