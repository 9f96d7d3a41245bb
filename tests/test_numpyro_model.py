"""The NumPyro model: its joint log-posterior against an independent dense NumPy/SciPy reference.

The reference below shares no code with lmmhmc: it builds X and every dense Z_k from the data
frame's columns, recomputes the default priors from the formulas documented in
``lmmhmc/priors.py`` (and the anchors from ``lmmhmc/reparam.py``), implements the unconstrained
-> constrained transforms with their log-Jacobians, and evaluates the Gaussian likelihood with a
dense N x N covariance::

    y ~ N(X beta + sum_{k sampled} Z_k vec(z_k Lambda_k^T),
          sigma^2 W^-1 + sum_{k marginalized} Z_k (I (x) Lambda_k Lambda_k^T) Z_k^T)

with ``Lambda_k = diag(s_k) L_k`` and the offsets ``z_k ~ N(0, I)`` of the sampled terms.

The package's NumPyro potential energy is evaluated at 20 random unconstrained points per case
and plan (one jit-compiled, vmapped call). A potential is defined only up to an additive
constant (normalizing constants of priors and likelihood that do not depend on the parameters),
so the test compares the differences ``potential(u_i) - potential(u_0)`` across the points.

Designs (simulated, N = 100-160, unbalanced, fixed part ``x + cat`` with a 3-level categorical):
crossed ``(1 + x | g) + (1 | h)``; nested ``(1 | a/b)``; ``(1 + x || g) + (1 | h:k)`` (an
interaction of crossed factors); ``(1 + x + z | g) + (1 | h)`` (d = 3); the crossed design with
observation weights; three nested levels ``(1 + x | r) + (1 | r:s) + (1 | r:s:t)``; and a sparse
crossed design whose Schur complement is accumulated pairwise. Each is run with every plan
(``"auto"``, ``"none"``, ``"all"`` and each single term), alternating the plain (log) and the
anchored softplus scale of the sds; user priors (LKJ concentration 0.7 among them) on both
scales; gradients against finite differences of the reference for three plans.

The file takes about 70 s of CPU time (90 s wall on a shared 2-core machine); the one
compilation per case and plan dominates.

Every access to the package goes through :func:`package_potential`, the one place to update
when the package's middle layer changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
import scipy.linalg
import scipy.stats
from threadpoolctl import threadpool_limits

jax.config.update("jax_enable_x64", True)

N_POINTS = 20


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """One BLAS thread: on a shared machine OpenBLAS's workers stall the small dense
    factorizations (tens of times slower); JAX's CPU LAPACK calls use the same library."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ---------------------------------------------------------------------------------------------
# The one helper that touches lmmhmc
# ---------------------------------------------------------------------------------------------


def package_potential(formula, data, *, weights=None, marginalize="auto", priors=None,
                      anchor_at=None):
    """The package's potential energy for ``formula`` on ``data``.

    ``priors``: user overrides (name -> numpyro distribution). ``anchor_at``: ``(sds, sigma)``
    ML-like estimates; the sds are then sampled on the anchored softplus scale, as a fit does
    with ``init="ml"``.

    Returns ``(potential, sites, marginalized)``: a function of a dict of batched unconstrained
    arrays (name -> (n, *shape)) returning the (n,) potentials (``grad=True``: their gradients,
    a dict like the input), the unconstrained shape of every latent site, and the texts of the
    marginalized terms.
    """
    import numpyro
    from numpyro.distributions.transforms import biject_to
    from numpyro.infer.util import potential_energy

    import lmmhmc
    from lmmhmc.assembled import assemble
    from lmmhmc.plan import make_plan
    from lmmhmc.priors import resolve_priors
    from lmmhmc.reparam import anchor_priors

    design = lmmhmc.Model(formula, data, weights=weights).design
    plan = make_plan(design, marginalize)
    assembled = assemble(design, plan, resolve_priors(design, priors))
    model_data = assembled.data
    units = assembled.units
    # the sampler sees every scalar on its internal scale, theta = loc + unit * t, with the
    # priors carried there (lmmhmc.scaling); the points below are mapped to it, so that the
    # potential is a function of the reference's coordinates (up to the constant Jacobian)
    prior_tree = assembled.internal_priors()
    if anchor_at is not None:
        prior_tree = anchor_priors(prior_tree, *anchor_at, units.unit)
    model = assembled.numpyro_model()
    fixed = set(design.x_names)

    def internal(p):
        out = dict(p)
        for name, unit in units.unit.items():
            if name in fixed:
                out[name] = (p[name] - units.loc[name]) / unit
            elif anchor_at is None:  # log scale: log(s / unit); the anchored scale is the same
                out[name] = p[name] - np.log(unit)
        return out

    def unconstrained_sites(model_data, prior_tree):
        trace = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace(
            model_data, prior_tree)
        return {name: biject_to(site["fn"].support).inv(site["value"])
                for name, site in trace.items()
                if site["type"] == "sample" and not site["is_observed"]}

    shapes = jax.eval_shape(unconstrained_sites, model_data, prior_tree)  # traced, not run
    sites = {name: tuple(v.shape) for name, v in shapes.items()}

    def one(model_data, prior_tree, p):
        return potential_energy(model, (model_data, prior_tree), {}, internal(p))

    batched = jax.jit(jax.vmap(one, in_axes=(None, None, 0)))
    batched_grad = jax.jit(jax.vmap(jax.grad(one, argnums=2), in_axes=(None, None, 0)))

    def potential(params, grad=False):
        params = {k: jnp.asarray(v) for k, v in params.items()}
        if grad:
            return jax.tree.map(np.asarray, batched_grad(model_data, prior_tree, params))
        return np.asarray(batched(model_data, prior_tree, params))

    marginalized = tuple(design.terms[k].text for k in plan.marginalized)
    return potential, sites, marginalized


# ---------------------------------------------------------------------------------------------
# Reference: the model written out densely
# ---------------------------------------------------------------------------------------------


@dataclass
class Term:
    """A grouping term as the reference understands it (written by hand, not parsed)."""

    text: str  # as lmmhmc writes it (names the offset site)
    factors: list[str]  # data columns whose observed combinations are the levels
    cols: list[str]  # "1" for the intercept, else a data column
    correlated: bool

    @property
    def factor(self) -> str:
        return ":".join(self.factors)

    @property
    def d(self) -> int:
        return len(self.cols)

    @property
    def labels(self) -> list[str]:
        return [f"{c}|{self.factor}" for c in self.cols]

    @property
    def corr(self) -> str:
        return f"{self.factor}_corr"

    @property
    def offset(self) -> str:
        return f"{self.text}_offset"


@dataclass
class Case:
    formula: str
    terms: list[Term]
    data: pd.DataFrame
    weights: str | None = None


def fixed_matrix(df: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """``~ x + cat`` with treatment contrasts: Intercept, x, cat[T.b], cat[T.c], ..."""
    cats = sorted(df["cat"].unique())
    cols = [np.ones(len(df)), df["x"].to_numpy(float)]
    names = ["Intercept", "x"]
    for c in cats[1:]:
        cols.append((df["cat"] == c).to_numpy(float))
        names.append(f"cat[T.{c}]")
    return np.column_stack(cols), names


def term_block(df: pd.DataFrame, term: Term) -> np.ndarray:
    return np.column_stack(
        [np.ones(len(df)) if c == "1" else df[c].to_numpy(float) for c in term.cols])


def dense_z(df: pd.DataFrame, term: Term) -> tuple[np.ndarray, int]:
    """Dense N x (L d) design of ``term`` (levels: observed combinations, sorted), and L."""
    keys = list(zip(*(df[f].astype(str) for f in term.factors), strict=True))
    levels = sorted(set(keys))
    where = {key: j for j, key in enumerate(levels)}
    block = term_block(df, term)
    z = np.zeros((len(df), len(levels) * term.d))
    for i, key in enumerate(keys):
        j = where[key]
        z[i, j * term.d:(j + 1) * term.d] = block[i]
    return z, len(levels)


def half_t_logpdf(scale):
    return lambda s: np.log(2.0) + scipy.stats.t.logpdf(s, 3.0, loc=0.0, scale=scale)


def default_reference_priors(case: Case) -> dict:
    """The defaults of priors.py's docstring: name -> log-density (or ("lkj", eta))."""
    df = case.data
    y = df["y"].to_numpy(float)
    X, names = fixed_matrix(df)
    s_y = np.std(y)  # lmmhmc's sd is the population sd (ddof=0)
    out = {}
    means, sds = X.mean(axis=0), X.std(axis=0)
    slope = [j for j in range(X.shape[1]) if names[j] != "Intercept"]
    for j in slope:
        out[names[j]] = lambda b, s=2.5 * s_y / sds[j]: scipy.stats.norm.logpdf(b, 0.0, s)
    icpt_sd = np.sqrt((2.5 * s_y) ** 2 + sum((2.5 * s_y * means[j] / sds[j]) ** 2 for j in slope))
    out["Intercept"] = lambda b: scipy.stats.norm.logpdf(b, np.mean(y), icpt_sd)
    out["sigma"] = half_t_logpdf(2.5 * s_y)
    for term in case.terms:
        for c, label in zip(term.cols, term.labels, strict=True):
            s_x = 1.0 if c == "1" else np.std(df[c].to_numpy(float))
            out[f"{label}_sigma"] = half_t_logpdf(2.5 * s_y / s_x)
        if term.correlated:
            out[term.corr] = ("lkj", 2.0)
    return out


def data_scales(case: Case) -> dict:
    """Scale of each sd (``sd(y) / sd(x)``, ``sd(y)`` for sigma and intercepts)."""
    df = case.data
    s_y = np.std(df["y"].to_numpy(float))
    out = {"sigma": s_y}
    for term in case.terms:
        for c, label in zip(term.cols, term.labels, strict=True):
            out[f"{label}_sigma"] = s_y / (1.0 if c == "1" else np.std(df[c].to_numpy(float)))
    return out


# --- transforms (unconstrained -> constrained) and their log-Jacobians -----------------------


def softplus(u):
    return np.logaddexp(0.0, u)


def positive(u, anchor):
    """``exp(u)`` (anchor None) or ``anchor * softplus(u)``; returns (value, log-Jacobian)."""
    if anchor is None:
        return np.exp(u), u
    return anchor * softplus(u), np.log(anchor) - softplus(-u)  # log a + log sigmoid(u)


def positive_inverse(s, anchor):
    return np.log(s) if anchor is None else np.log(np.expm1(s / anchor))


def corr_cholesky(x: np.ndarray, d: int) -> tuple[np.ndarray, float]:
    """Cholesky factor of a correlation matrix from d(d-1)/2 reals, and the log-Jacobian.

    ``z = tanh(x)`` fills the strict lower triangle row by row; then
    ``L_ij = z_ij sqrt(1 - sum_{k<j} L_ik^2)`` and ``L_ii = sqrt(1 - sum_{k<i} L_ik^2)``.
    Row by row the map z -> L is triangular, so
    ``log|J| = sum_{i>j} log(1 - z_ij^2) + 0.5 log(1 - sum_{k<j} L_ik^2)``.
    """
    z = np.tanh(x)
    L = np.zeros((d, d))
    L[0, 0] = 1.0
    logj, pos = 0.0, 0
    for i in range(1, d):
        rest = 1.0
        for j in range(i):
            L[i, j] = z[pos] * np.sqrt(rest)
            logj += np.log1p(-z[pos] ** 2) + 0.5 * np.log(rest)
            rest -= L[i, j] ** 2
            pos += 1
        L[i, i] = np.sqrt(rest)
    return L, logj


def lkj_cholesky_logpdf(L: np.ndarray, eta: float) -> float:
    """LKJ(eta) on the Cholesky factor, up to a constant: sum_i (d - i + 2 eta - 2) log L_ii."""
    d = L.shape[0]
    return sum((d - i + 2.0 * eta - 2.0) * np.log(L[i - 1, i - 1]) for i in range(2, d + 1))


# --- the log-density ----------------------------------------------------------------------------


class Reference:
    """Dense reference log-posterior of ``case`` with ``marginalized`` term texts."""

    def __init__(self, case: Case, marginalized, priors: dict, anchors: dict | None):
        df = case.data
        self.case = case
        self.y = df["y"].to_numpy(float)
        self.X, self.x_names = fixed_matrix(df)
        self.w = (np.ones(len(df)) if case.weights is None
                  else df[case.weights].to_numpy(float))
        self.Z = [dense_z(df, t) for t in case.terms]
        self.marg = [t.text in marginalized for t in case.terms]
        self.priors = priors
        self.anchors = anchors or {}
        self.plain = anchors is None

    def sites(self) -> dict:
        """Unconstrained shape of every latent site."""
        out = {name: () for name in self.x_names}
        out["sigma"] = ()
        for t, (_, n_levels), m in zip(self.case.terms, self.Z, self.marg, strict=True):
            out.update({f"{label}_sigma": () for label in t.labels})
            if t.correlated:
                out[t.corr] = (t.d * (t.d - 1) // 2,)
            if not m:
                out[t.offset] = (n_levels, t.d)
        return out

    def _anchor(self, name):
        return None if self.plain else self.anchors[name]

    def log_density(self, u: dict) -> float:
        """Log-posterior (up to a constant) at the unconstrained point ``u``."""
        lp = 0.0
        beta = np.array([u[n] for n in self.x_names])
        lp += sum(self.priors[n](u[n]) for n in self.x_names)
        sigma, logj = positive(u["sigma"], self._anchor("sigma"))
        lp += self.priors["sigma"](sigma) + logj
        mean = self.X @ beta
        cov = np.diag(sigma**2 / self.w)
        for t, (z, n_levels), m in zip(self.case.terms, self.Z, self.marg, strict=True):
            sds = []
            for label in t.labels:
                name = f"{label}_sigma"
                s, logj = positive(u[name], self._anchor(name))
                lp += self.priors[name](s) + logj
                sds.append(s)
            L = np.eye(t.d)
            if t.correlated:
                L, logj = corr_cholesky(np.asarray(u[t.corr]), t.d)
                kind, eta = self.priors[t.corr]
                assert kind == "lkj"
                lp += lkj_cholesky_logpdf(L, eta) + logj
            lam = np.diag(sds) @ L
            if m:
                cov += z @ np.kron(np.eye(n_levels), lam @ lam.T) @ z.T
            else:
                off = np.asarray(u[t.offset])
                lp += -0.5 * np.sum(off**2)
                mean += z @ (off @ lam.T).reshape(-1)
        chol = scipy.linalg.cholesky(cov, lower=True)
        white = scipy.linalg.solve_triangular(chol, self.y - mean, lower=True)
        lp += -np.sum(np.log(np.diag(chol))) - 0.5 * white @ white
        return lp


# ---------------------------------------------------------------------------------------------
# Simulated data sets
# ---------------------------------------------------------------------------------------------


def _labels(prefix, codes, width=2):
    return [f"{prefix}{c:0{width}d}" for c in codes]


def _unbalanced(rng, n, n_levels):
    """Level codes with unequal probabilities, every level observed."""
    p = rng.dirichlet(np.full(n_levels, 2.0))
    codes = np.concatenate([np.arange(n_levels), rng.choice(n_levels, n - n_levels, p=p)])
    return rng.permutation(codes)


def _frame(rng, n):
    x = rng.normal(1.5, 2.0, n)  # not centred: the intercept's prior depends on mean(x)
    z = rng.normal(-0.5, 0.7, n)
    cat = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    return pd.DataFrame({"x": x, "z": z, "cat": cat})


def _response(rng, df, effects, sigma=1.0, w=None):
    mu = 2.0 + 0.7 * df["x"] - 1.0 * (df["cat"] == "b") + 0.5 * (df["cat"] == "c") + effects
    scale = sigma / (1.0 if w is None else np.sqrt(w))
    return 10.0 + 3.0 * (mu + rng.normal(0.0, 1.0, len(df)) * scale)  # y not on a unit scale


def _re(rng, codes, n_levels, sd):
    return rng.normal(0.0, sd, n_levels)[codes]


def crossed_case(seed=1, weights=False) -> Case:
    rng = np.random.default_rng(seed)
    n = 150
    df = _frame(rng, n)
    g, h = _unbalanced(rng, n, 12), _unbalanced(rng, n, 7)
    df["g"], df["h"] = _labels("g", g), _labels("h", h)
    eff = _re(rng, g, 12, 1.0) + df["x"] * _re(rng, g, 12, 0.3) + _re(rng, h, 7, 0.7)
    w = rng.uniform(0.3, 3.0, n) if weights else None
    df["y"] = _response(rng, df, eff, w=w)
    if weights:
        df["w"] = w
    terms = [Term("1 + x | g", ["g"], ["1", "x"], True), Term("1 | h", ["h"], ["1"], False)]
    return Case("y ~ x + cat + (1 + x | g) + (1 | h)", terms, df, "w" if weights else None)


def nested_case(seed=2) -> Case:
    """``(1 | a/b)``: b's labels repeat across a, so ``a:b`` is an interaction factor."""
    rng = np.random.default_rng(seed)
    n = 120
    df = _frame(rng, n)
    a = _unbalanced(rng, n, 6)
    b = np.array([rng.integers(0, 2 + (k % 3)) for k in a])  # 2-4 b's per a
    df["a"], df["b"] = _labels("a", a), _labels("b", b)
    ab = pd.factorize(df["a"] + ":" + df["b"])[0]
    eff = _re(rng, a, 6, 1.0) + _re(rng, ab, ab.max() + 1, 0.6)
    df["y"] = _response(rng, df, eff)
    terms = [Term("1 | a", ["a"], ["1"], False), Term("1 | a:b", ["a", "b"], ["1"], False)]
    return Case("y ~ x + cat + (1 | a/b)", terms, df)


def uncorrelated_case(seed=3) -> Case:
    """``(1 + x || g)`` and a factor of the observed combinations of two crossed factors."""
    rng = np.random.default_rng(seed)
    n = 100
    df = _frame(rng, n)
    g = _unbalanced(rng, n, 9)
    h, k = rng.integers(0, 3, n), rng.integers(0, 3, n)
    df["g"], df["h"], df["k"] = _labels("g", g), _labels("h", h), _labels("k", k)
    hk = pd.factorize(df["h"] + ":" + df["k"])[0]
    eff = _re(rng, g, 9, 0.8) + df["x"] * _re(rng, g, 9, 0.4) + _re(rng, hk, hk.max() + 1, 0.5)
    df["y"] = _response(rng, df, eff)
    terms = [Term("1 + x || g", ["g"], ["1", "x"], False),
             Term("1 | h:k", ["h", "k"], ["1"], False)]
    return Case("y ~ x + cat + (1 + x || g) + (1 | h:k)", terms, df)


def d3_case(seed=4) -> Case:
    rng = np.random.default_rng(seed)
    n = 130
    df = _frame(rng, n)
    g, h = _unbalanced(rng, n, 10), _unbalanced(rng, n, 5)
    df["g"], df["h"] = _labels("g", g), _labels("h", h)
    eff = (_re(rng, g, 10, 1.0) + df["x"] * _re(rng, g, 10, 0.3) + df["z"] * _re(rng, g, 10, 0.8)
           + _re(rng, h, 5, 0.5))
    df["y"] = _response(rng, df, eff)
    terms = [Term("1 + x + z | g", ["g"], ["1", "x", "z"], True),
             Term("1 | h", ["h"], ["1"], False)]
    return Case("y ~ x + cat + (1 + x + z | g) + (1 | h)", terms, df)


def nested3_case(seed=5) -> Case:
    """Three nested levels (eliminated one after the other), a correlated slope at the top."""
    rng = np.random.default_rng(seed)
    n = 160
    df = _frame(rng, n)
    r = _unbalanced(rng, n, 4)
    s = rng.integers(0, 3, n)
    t = rng.integers(0, 2, n)
    df["r"], df["s"], df["t"] = _labels("r", r), _labels("s", s), _labels("t", t)
    rs = pd.factorize(df["r"] + ":" + df["s"])[0]
    rst = pd.factorize(df["r"] + ":" + df["s"] + ":" + df["t"])[0]
    eff = (_re(rng, r, 4, 1.0) + df["x"] * _re(rng, r, 4, 0.3) + _re(rng, rs, rs.max() + 1, 0.7)
           + _re(rng, rst, rst.max() + 1, 0.5))
    df["y"] = _response(rng, df, eff)
    terms = [Term("1 + x | r", ["r"], ["1", "x"], True), Term("1 | r:s", ["r", "s"], ["1"], False),
             Term("1 | r:s:t", ["r", "s", "t"], ["1"], False)]
    return Case("y ~ x + cat + (1 + x | r) + (1 | r:s) + (1 | r:s:t)", terms, df)


def sparse_crossed_case(seed=7) -> Case:
    """Many levels, few observations each: the Schur complement is accumulated pairwise."""
    rng = np.random.default_rng(seed)
    n = 120
    df = _frame(rng, n)
    g, h = _unbalanced(rng, n, 45), _unbalanced(rng, n, 30)
    df["g"], df["h"] = _labels("g", g), _labels("h", h)
    eff = _re(rng, g, 45, 0.8) + _re(rng, h, 30, 0.6) + df["x"] * _re(rng, h, 30, 0.3)
    df["y"] = _response(rng, df, eff)
    terms = [Term("1 | g", ["g"], ["1"], False), Term("1 + x | h", ["h"], ["1", "x"], True)]
    return Case("y ~ x + cat + (1 | g) + (1 + x | h)", terms, df)


CASES = {
    "crossed": crossed_case,
    "nested": nested_case,
    "uncorrelated": uncorrelated_case,
    "d3": d3_case,
    "weights": lambda: crossed_case(seed=6, weights=True),
    "nested3": nested3_case,
    "sparse_crossed": sparse_crossed_case,
}


def plans(case: Case) -> list:
    return ["auto", "none", "all", *[[t.text] for t in case.terms]]


def expected_marginalized(case: Case, plan):
    if plan == "auto":
        return None  # the package's cost model decides
    if plan == "none":
        return ()
    if plan == "all":
        return tuple(t.text for t in case.terms)
    return tuple(plan)


# ---------------------------------------------------------------------------------------------
# Random points
# ---------------------------------------------------------------------------------------------


def random_points(case: Case, sites: dict, anchors: dict | None, rng) -> list[dict]:
    """Unconstrained points with moderate values: sds 0.2-3x their data scale, |corr| < 1."""
    df = case.data
    X, names = fixed_matrix(df)
    y = df["y"].to_numpy(float)
    beta_ols = np.linalg.lstsq(X, y, rcond=None)[0]
    s_y = np.std(y)
    scales = data_scales(case)
    points = []
    for _ in range(N_POINTS):
        u = {}
        for j, name in enumerate(names):
            spread = 0.3 * s_y / (1.0 if name == "Intercept" else max(X[:, j].std(), 0.2))
            u[name] = beta_ols[j] + spread * rng.normal()
        for name, scale in scales.items():
            s = scale * np.exp(rng.uniform(np.log(0.2), np.log(3.0)))
            u[name] = positive_inverse(s, None if anchors is None else anchors[name])
        for name, shape in sites.items():
            if name.endswith("_corr"):
                u[name] = rng.normal(0.0, 0.7, shape)
            elif name.endswith("_offset"):
                u[name] = rng.normal(0.0, 1.0, shape)
        points.append(u)
    return points


def anchor_setup(case: Case, rng):
    """ML-like estimates for ``anchor_priors`` and the anchors reparam.py documents:
    ``max(0.3 * estimate, 0.05 * sigma)`` (sigma's own: ``0.3 * sigma``). One estimate is 0."""
    scales = data_scales(case)
    sigma = 0.8 * scales["sigma"]
    sds = {name: scale * rng.uniform(0.3, 2.0) for name, scale in scales.items()
           if name != "sigma"}
    sds[next(iter(sds))] = 0.0  # an sd estimated at the boundary: the anchor's floor
    anchors = {name: max(0.3 * est, 0.05 * sigma) for name, est in sds.items()}
    anchors["sigma"] = 0.3 * sigma
    return (sds, sigma), anchors


# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------


def compare(case: Case, plan, scale: str, rng, *, overrides=None, ref_overrides=None):
    anchor_at, anchors = anchor_setup(case, rng) if scale == "anchored" else (None, None)
    potential, sites, marginalized = package_potential(
        case.formula, case.data, weights=case.weights, marginalize=plan,
        priors=overrides, anchor_at=anchor_at)
    expected = expected_marginalized(case, plan)
    if expected is not None:
        assert set(marginalized) == set(expected)
    priors = default_reference_priors(case)
    priors.update(ref_overrides or {})
    ref = Reference(case, marginalized, priors, anchors)
    assert sites == ref.sites()
    points = random_points(case, sites, anchors, rng)
    batched = {name: np.stack([p[name] for p in points]) for name in sites}
    got = potential(batched)
    want = -np.array([ref.log_density(p) for p in points])
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(want))
    d_got, d_want = got - got[0], want - want[0]
    assert np.ptp(d_want) > 1.0  # the points differ enough for the test to mean something
    tol = 1e-8 * (1.0 + np.abs(want) + np.abs(want[0]))
    err = np.abs(d_got - d_want)
    assert np.all(err <= tol), (
        f"{case.formula}, marginalize={plan!r}, {scale}: max |error| {err.max():.3g} "
        f"(potential differences up to {np.abs(d_want).max():.3g})")


@pytest.mark.parametrize("name", list(CASES))
def test_potential_matches_dense_reference(name):
    """Every plan of every design, alternating the plain (exp) and the anchored scale."""
    case = CASES[name]()
    rng = np.random.default_rng(list(CASES).index(name))
    for i, plan in enumerate(plans(case)):
        compare(case, plan, "plain" if i % 2 == 0 else "anchored", rng)


@pytest.mark.parametrize("scale", ["plain", "anchored"])
def test_user_priors_match_dense_reference(scale):
    """User priors, an LKJ concentration below 1 among them (d = 3)."""
    case = d3_case()
    overrides = {
        "sigma": dist.HalfNormal(2.0),
        "1|g_sigma": dist.Exponential(0.5),
        "z|g_sigma": dist.HalfCauchy(1.5),
        "g_corr": dist.LKJCholesky(3, 0.7),
        "x": dist.Normal(0.5, 3.0),
        "cat[T.b]": dist.StudentT(4.0, 1.0, 2.0),
    }
    ref_overrides = {
        "sigma": lambda s: scipy.stats.halfnorm.logpdf(s, scale=2.0),
        "1|g_sigma": lambda s: scipy.stats.expon.logpdf(s, scale=1.0 / 0.5),
        "z|g_sigma": lambda s: scipy.stats.halfcauchy.logpdf(s, scale=1.5),
        "g_corr": ("lkj", 0.7),
        "x": lambda b: scipy.stats.norm.logpdf(b, 0.5, 3.0),
        "cat[T.b]": lambda b: scipy.stats.t.logpdf(b, 4.0, 1.0, 2.0),
    }
    rng = np.random.default_rng(11 if scale == "plain" else 12)
    for plan in ("none", "all"):
        compare(case, plan, scale, rng, overrides=overrides, ref_overrides=ref_overrides)


@pytest.mark.parametrize("d", [2, 3, 4])
def test_corr_cholesky_jacobian_by_finite_differences(d):
    """The reference's correlation transform: unit rows, lower triangular, and its
    log-Jacobian (of x -> the strict lower triangle of L) equals a finite-difference one."""
    rng = np.random.default_rng(d)
    rows, cols = np.tril_indices(d, -1)  # row-major order of the strict lower triangle
    for _ in range(5):
        x = rng.normal(0.0, 0.8, d * (d - 1) // 2)
        L, logj = corr_cholesky(x, d)
        np.testing.assert_allclose(np.sum(L**2, axis=1), 1.0, rtol=1e-13)
        assert np.allclose(np.triu(L, 1), 0.0) and np.all(np.diag(L) > 0)
        h = 1e-6
        jac = np.empty((x.size, x.size))
        for k in range(x.size):
            e = np.zeros_like(x)
            e[k] = h
            jac[:, k] = (corr_cholesky(x + e, d)[0][rows, cols]
                         - corr_cholesky(x - e, d)[0][rows, cols]) / (2 * h)
        np.testing.assert_allclose(np.linalg.slogdet(jac)[1], logj, rtol=0, atol=1e-7)
        # the first entry of each row is tanh(x) itself: the row-major fill order
        np.testing.assert_allclose(L[1:, 0], np.tanh(x[[i * (i - 1) // 2 for i in range(1, d)]]))


@pytest.mark.parametrize("name, plan", [
    ("sparse_crossed", "all"),  # all marginalized: residuals through precomputed projections
    ("nested3", "all"),  # three nested terms eliminated one after the other
    ("weights", ["1 + x | g"]),  # one marginalized, one sampled, weighted
])
def test_gradient_matches_finite_differences_of_reference(name, plan):
    """NUTS follows the gradient: the package's (custom reverse-mode rules included) against
    central differences of the reference, at 3 points (a few offset entries per site)."""
    case = CASES[name]()
    rng = np.random.default_rng(len(name))
    potential, sites, marginalized = package_potential(
        case.formula, case.data, weights=case.weights, marginalize=plan)
    ref = Reference(case, marginalized, default_reference_priors(case), None)
    points = random_points(case, sites, None, rng)[:3]
    grads = potential({n: np.stack([p[n] for p in points]) for n in sites}, grad=True)
    h = 1e-5
    for i, point in enumerate(points):
        for name_, shape in sites.items():
            entries = list(np.ndindex(*shape)) if shape else [()]
            if name_.endswith("_offset"):
                entries = [entries[j] for j in rng.choice(len(entries), 4, replace=False)]
            for e in entries:
                up, down = dict(point), dict(point)
                up[name_] = np.array(point[name_], dtype=float)
                down[name_] = np.array(point[name_], dtype=float)
                up[name_][e] += h
                down[name_][e] -= h
                fd = -(ref.log_density(up) - ref.log_density(down)) / (2 * h)
                got = grads[name_][i][e]
                assert abs(got - fd) <= 1e-5 * (1.0 + abs(fd)), (name_, e, got, fd)
