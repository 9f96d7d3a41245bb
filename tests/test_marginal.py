"""The marginalization kernels against dense-matrix references (scipy/numpy, no Woodbury)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from lmmhmc.marginal import Affine, Elimination, nested_order, prepare
from lmmhmc.plan import pair_count, schur_cost

jax.config.update("jax_enable_x64", True)


def compiled(f, *args):
    """``f(*args)`` run as one compiled program: the same operations as calling ``f`` eagerly,
    but compiled once instead of primitive by primitive (each example of a property test has
    new shapes, and eager dispatch compiles every primitive anew for them)."""
    return jax.jit(f)(*args)


@dataclass
class Term:
    index: np.ndarray
    block: np.ndarray
    n_levels: int


def form(terms, eliminate="largest", cross=None) -> Elimination:
    """The elimination of ``prepare``'s former arguments: ``"largest"`` (nested terms all
    block-diagonally, else the term with the most effects first), a position, or None (one
    dense joint system); ``cross`` None picks the cheaper Schur update."""
    if eliminate is None:
        return Elimination.dense(len(terms))
    if eliminate == "largest":
        chain = nested_order(terms)
        if chain is not None:
            return Elimination.nested(chain)
        eliminate = int(np.argmax([t.n_levels * t.block.shape[1] for t in terms]))
    return Elimination.first(eliminate, len(terms), cross or schur_cost(terms, eliminate)[0])


def dense_z(term: Term) -> np.ndarray:
    """Reference only: the dense N x (L d) design of one term."""
    n, d = term.block.shape
    z = np.zeros((n, term.n_levels * d))
    for i in range(n):
        z[i, term.index[i] * d : (term.index[i] + 1) * d] = term.block[i]
    return z


def random_lambda(rng, d: int, scale: float) -> np.ndarray:
    m = rng.normal(size=(d, d)) * scale
    return np.tril(m) + np.diag(np.abs(np.diag(m)) + 0.05 * scale)


def random_problem(rng, n_obs, specs, weighted, nested=False, chain=False):
    """specs: list of (n_levels, d). Unbalanced groups, some levels with one observation.

    ``nested``: later terms partly follow term 0's levels; ``chain``: the terms are nested, each
    level of a term within one level of the next (specs sorted by decreasing n_levels).
    """
    if chain:
        specs = sorted(specs, key=lambda s: -s[0])
    terms = []
    for k, (n_levels, d) in enumerate(specs):
        n_levels = min(n_levels, n_obs)
        if chain and k > 0:
            finer = terms[k - 1]
            n_levels = min(n_levels, finer.n_levels)
            parent = rng.integers(0, n_levels, finer.n_levels)
            parent[:n_levels] = np.arange(n_levels)
            idx = parent[finer.index]
        elif nested and k > 0:
            # level of term k determined by term 0's level (nested inside it)
            idx = (terms[0].index * 7 + rng.integers(0, 2, n_obs)) % n_levels
        else:
            p = rng.dirichlet(np.full(n_levels, 0.7))
            idx = rng.choice(n_levels, size=n_obs, p=p)
            idx[:n_levels] = np.arange(n_levels)  # every level observed, some just once
        idx = np.unique(idx, return_inverse=True)[1]
        block = np.column_stack([np.ones(n_obs)] + [rng.normal(size=n_obs) for _ in range(d - 1)])
        terms.append(Term(idx.astype(np.int32), block, int(idx.max()) + 1))
    w = rng.uniform(0.3, 3.0, n_obs) if weighted else None
    return terms, w


def dense_cov(terms, lams, sigma, w):
    n = len(terms[0].index)
    cov = sigma**2 * np.diag(1.0 / (np.ones(n) if w is None else w))
    for t, lam in zip(terms, lams, strict=True):
        z = dense_z(t)
        g = np.kron(np.eye(t.n_levels), lam @ lam.T)
        cov += z @ g @ z.T
    return cov


problem_strategy = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31 - 1),
        "n_obs": st.integers(5, 60),
        "specs": st.lists(
            st.tuples(st.integers(1, 9), st.integers(1, 3)), min_size=1, max_size=3
        ),
        "weighted": st.booleans(),
        "nested": st.booleans(),
        "chain": st.booleans(),
        "scale": st.sampled_from([1e-3, 0.3, 1.0, 5.0]),
        "sigma": st.sampled_from([0.2, 1.0, 3.0]),
        "form": st.sampled_from([("largest", "dense"), ("largest", "pairs"), (None, None)]),
    }
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem_strategy)
def test_log_density_and_gram_match_dense(p):
    rng = np.random.default_rng(p["seed"])
    terms, w = random_problem(rng, p["n_obs"], p["specs"], p["weighted"], p["nested"],
                              p["chain"])
    lams = [random_lambda(rng, t.block.shape[1], p["scale"]) for t in terms]
    r = rng.normal(size=p["n_obs"]) * 2.0
    cov = dense_cov(terms, lams, p["sigma"], w)
    ref = multivariate_normal.logpdf(r, np.zeros(len(r)), cov)
    rr = rng.normal(size=(p["n_obs"], 3))
    kernel = prepare(terms, w, form(terms, *p["form"]), fixed=rr)
    coef = rng.normal(size=(3, 2))
    got, (logdet, quad), (logdet_a, quad_a) = compiled(
        lambda k, ls: (k.log_density(r, p["sigma"], ls), k.gram(rr, p["sigma"], ls),
                       k.gram(Affine(coef), p["sigma"], ls)), kernel, lams)
    assert float(got) == pytest.approx(ref, rel=1e-10, abs=1e-10)
    # the Gram form on several columns: log|Sigma| and R^T Sigma^-1 R
    sign, ref_logdet = np.linalg.slogdet(cov)
    assert sign > 0
    np.testing.assert_allclose(float(logdet), ref_logdet, rtol=1e-10, atol=1e-9)
    ref_quad = rr.T @ np.linalg.solve(cov, rr)
    np.testing.assert_allclose(np.asarray(quad), ref_quad, rtol=1e-9)
    # residuals as Affine coefficients of the precomputed fixed columns: R = rr @ coef
    np.testing.assert_allclose(float(logdet_a), ref_logdet, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(np.asarray(quad_a), coef.T @ ref_quad @ coef, rtol=1e-8,
                               atol=1e-10 * np.abs(ref_quad).max())


@pytest.mark.parametrize("cross", ["dense", "pairs"])
@pytest.mark.parametrize("eliminate", [0, 1, 2, None])
def test_every_elimination_order_agrees(eliminate, cross):
    """Eliminating any term first, or none (one dense joint system), gives the same density."""
    rng = np.random.default_rng(4)
    terms, w = random_problem(rng, 80, [(6, 2), (9, 1), (4, 3)], weighted=True)
    lams = [random_lambda(rng, t.block.shape[1], 1.0) for t in terms]
    r = rng.normal(size=80)
    ref = multivariate_normal.logpdf(r, np.zeros(80), dense_cov(terms, lams, 0.7, w))
    kernel = prepare(terms, w, form(terms, eliminate, cross))
    got = float(compiled(lambda k: k.log_density(r, 0.7, lams), kernel))
    assert got == pytest.approx(ref, rel=1e-10)


def conditional_reference(terms, lams, sigma, w, r):
    """u | r ~ N(G Z^T Sigma^-1 r, G - G Z^T Sigma^-1 Z G), built densely."""
    z = np.hstack([dense_z(t) for t in terms])
    blocks = [np.kron(np.eye(t.n_levels), lam @ lam.T) for t, lam in zip(terms, lams, strict=True)]
    q = z.shape[1]
    g = np.zeros((q, q))
    start = 0
    for b in blocks:
        g[start : start + len(b), start : start + len(b)] = b
        start += len(b)
    cov = dense_cov(terms, lams, sigma, w)
    gz = g @ z.T
    mean = gz @ np.linalg.solve(cov, r)
    var = g - gz @ np.linalg.solve(cov, gz.T)
    return mean, var


def test_pair_count_matches_prepared_pairs():
    rng = np.random.default_rng(8)
    terms, _ = random_problem(rng, 70, [(8, 2), (5, 1), (6, 2)], weighted=False)
    for k in range(3):
        kernel = prepare(terms, elimination=form(terms, k, "pairs"))
        assert pair_count(terms, k) == kernel.arrays["pair_a"].shape[0]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem_strategy)
def test_recovery_mean_and_covariance_match_dense(p):
    rng = np.random.default_rng(p["seed"])
    terms, w = random_problem(rng, p["n_obs"], p["specs"], p["weighted"], p["nested"],
                              p["chain"])
    lams = [random_lambda(rng, t.block.shape[1], p["scale"]) for t in terms]
    fixed = rng.normal(size=(p["n_obs"], 2))
    coef = np.array([1.0, -0.5])
    r = fixed @ coef
    kernel = prepare(terms, w, form(terms, *p["form"]), fixed=fixed)
    resid = Affine(coef) if p["seed"] % 2 else r
    assert_draws_match_dense(kernel, terms, lams, p["sigma"], w, resid, r)


def assert_draws_match_dense(kernel, terms, lams, sigma, w, resid, r):
    """The draws' conditional mean and covariance equal the dense reference (to 1e-8)."""
    shapes = kernel.noise_shapes()
    sizes = [n * d for n, d in shapes]
    q = sum(sizes)

    def flat_draw(z_flat):
        parts = jnp.split(z_flat, np.cumsum(sizes)[:-1])
        noise = [z.reshape(s) for z, s in zip(parts, shapes, strict=True)]
        draws = kernel.draw(resid, sigma, lams, noise)
        return jnp.concatenate([u.reshape(-1) for u in draws])

    # zero noise: the conditional mean; the draw is affine in the noise, so the columns of
    # draw(e_i) - mean are L^{-T} e_i (scaled by Lambda)
    out = np.asarray(compiled(jax.vmap(flat_draw), jnp.vstack([jnp.zeros(q), jnp.eye(q)])))
    mean, cols = out[0], out[1:] - out[0]
    cov = cols.T @ cols
    ref_mean, ref_cov = conditional_reference(terms, lams, sigma, w, r)
    scale = max(1.0, np.abs(ref_mean).max())
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-8, atol=1e-8 * scale)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-8, atol=1e-8 * max(1.0, np.abs(ref_cov).max()))


def test_nested_terms_are_eliminated_in_linear_time_and_match_dense():
    """Observations in broods in locations: every term eliminated block-diagonally, exactly."""
    rng = np.random.default_rng(21)
    terms, w = random_problem(rng, 90, [(60, 1), (14, 2), (4, 2)], weighted=True, chain=True)
    lams = [random_lambda(rng, t.block.shape[1], 0.8) for t in terms]
    fixed = rng.normal(size=(90, 2))
    coef = np.array([1.0, -0.3])
    r = fixed @ coef
    kernel = prepare(terms, w, form(terms), fixed=fixed)
    assert kernel.static.n_diag == 3 and kernel.static.q2 == 0  # no dense part at all
    ref = multivariate_normal.logpdf(r, np.zeros(90), dense_cov(terms, lams, 0.6, w))
    got = compiled(lambda k: (k.log_density(r, 0.6, lams), k.log_density(Affine(coef), 0.6, lams)),
                   kernel)
    assert float(got[0]) == pytest.approx(ref, rel=1e-10)
    assert float(got[1]) == pytest.approx(ref, rel=1e-10)
    assert_draws_match_dense(kernel, terms, lams, 0.6, w, Affine(coef), r)
    # gradients agree with the dense joint system's (another factorization, same function)
    joint = prepare(terms, w, form(terms, None))

    def f(theta, kernel):
        scaled = [lam * theta[k] for k, lam in enumerate(lams)]
        return kernel.log_density(r, jnp.exp(theta[3]), scaled)

    theta = jnp.array([1.0, 0.7, 1.3, np.log(0.6)])
    grads = compiled(lambda t, k1, k2: (jax.grad(f)(t, k1), jax.grad(f)(t, k2)), theta, kernel,
                     joint)
    np.testing.assert_allclose(np.asarray(grads[0]), np.asarray(grads[1]), rtol=1e-8)


def test_terms_of_one_factor_are_nested_in_each_other():
    """`(x || g)`: two terms with the same levels form a chain and stay exact."""
    rng = np.random.default_rng(3)
    idx = np.concatenate([np.arange(9), rng.integers(0, 9, 51)]).astype(np.int32)
    x = rng.normal(size=60)
    terms = [Term(idx, np.ones((60, 1)), 9), Term(idx, x[:, None], 9)]
    lams = [np.array([[0.7]]), np.array([[0.4]])]
    r = rng.normal(size=60)
    kernel = prepare(terms, elimination=form(terms))
    assert kernel.static.n_diag == 2
    ref = multivariate_normal.logpdf(r, np.zeros(60), dense_cov(terms, lams, 0.8, None))
    assert float(kernel.log_density(r, 0.8, lams)) == pytest.approx(ref, rel=1e-10)


def test_nested_order_detects_chains_only():
    rng = np.random.default_rng(5)
    chain, _ = random_problem(rng, 50, [(20, 1), (6, 1), (3, 1)], weighted=False, chain=True)
    assert nested_order(chain) == (0, 1, 2)
    assert nested_order(chain[::-1]) == (2, 1, 0)
    crossed, _ = random_problem(rng, 50, [(8, 1), (5, 1)], weighted=False)
    assert nested_order(crossed) is None
    assert prepare(crossed, elimination=form(crossed)).static.n_diag == 1  # one + Schur
    with pytest.raises(ValueError, match="nested"):
        prepare(crossed, elimination=Elimination.nested((0, 1)))


@pytest.mark.parametrize(("eliminate", "cross"), [("largest", "pairs"), (None, None)])
def test_recovery_monte_carlo(eliminate, cross):
    """Draws with random noise have the dense conditional mean and covariance (MC check)."""
    rng = np.random.default_rng(11)
    terms, w = random_problem(rng, 40, [(5, 2), (4, 1)], weighted=False)
    lams = [random_lambda(rng, t.block.shape[1], 1.0) for t in terms]
    r = rng.normal(size=40)
    n_draws = 20000
    keys = jax.random.split(jax.random.key(0), n_draws)

    kernel = prepare(terms, w, form(terms, eliminate, cross))

    def one(key):
        k1, k2 = jax.random.split(key)
        shapes = kernel.noise_shapes()
        noise = [jax.random.normal(k, s) for k, s in zip((k1, k2), shapes, strict=True)]
        return jnp.concatenate([u.reshape(-1) for u in kernel.draw(r, 0.8, lams, noise)])

    draws = np.asarray(jax.jit(jax.vmap(one))(keys))

    ref_mean, ref_cov = conditional_reference(terms, lams, 0.8, w, r)
    sd = np.sqrt(np.diag(ref_cov))
    # standard error of a mean of 20000 draws is sd/141; 5 standard errors
    assert np.all(np.abs(draws.mean(0) - ref_mean) < 5 * sd / np.sqrt(n_draws))
    # sd of a sample variance ~ var*sqrt(2/n) = 1% of var; 5% tolerance is 5 standard errors
    np.testing.assert_allclose(draws.var(0), np.diag(ref_cov), rtol=0.05)


def _finite_difference(f, x, h=1e-6):
    """Central differences of the scalar JAX function ``f`` at ``x`` (compiled once)."""
    f = jax.jit(f)
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        g.flat[i] = (float(f(jnp.asarray(x + e))) - float(f(jnp.asarray(x - e)))) / (2 * h)
    return g


@pytest.mark.parametrize(
    ("sds", "rho"),
    [((1.0, 0.5), 0.3), ((0.0, 0.7), 0.2), ((1e-8, 1e-8), 0.0), ((1.2, 0.4), 0.999999)],
)
def test_gradients_finite_and_match_finite_differences(sds, rho):
    """Gradient wrt (log sigma, sds, correlation) through both the one- and two-term kernels."""
    rng = np.random.default_rng(3)
    terms, _ = random_problem(rng, 50, [(7, 2), (5, 1)], weighted=False)
    r = rng.normal(size=50)
    kernels = [prepare(terms[:1]), prepare(terms, elimination=form(terms, cross="pairs")),
               prepare(terms, elimination=form(terms, cross="dense")),
               prepare(terms, elimination=form(terms, None))]
    for kernel in kernels:

        def f(theta, kernel=kernel):
            n_terms = len(kernel.static.order)
            sigma = jnp.exp(theta[0])
            s = theta[1:3]
            c = theta[3]
            lam = jnp.diag(s) @ jnp.array([[1.0, 0.0], [c, jnp.sqrt(1.0 - c**2)]])
            lams = [lam, jnp.diag(theta[4:5])][:n_terms]
            return kernel.log_density(r, sigma, lams)

        theta = np.array([np.log(0.9), sds[0], sds[1], rho, 0.6])
        grad = np.asarray(compiled(jax.grad(f), jnp.asarray(theta)))
        assert np.all(np.isfinite(grad))
        fd = _finite_difference(f, theta, h=1e-7)
        # central differences at h=1e-7 are accurate to ~1e-6 relative for this smooth function;
        # skip the correlation coordinate where rho + h would leave [-1, 1]
        check = np.ones(theta.size, bool)
        check[3] = abs(rho) < 0.9999
        np.testing.assert_allclose(grad[check], fd[check], rtol=1e-5, atol=1e-5)


# ------------------------------------------- sampled terms' effects in Affine residuals
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem_strategy, st.lists(st.tuples(st.integers(1, 9), st.integers(1, 3)), min_size=1,
                                  max_size=2))
@example({"seed": 5, "n_obs": 40, "specs": [(6, 2), (4, 1)], "weighted": True, "nested": False,
          "chain": False, "scale": 1.0, "sigma": 1.0, "form": ("largest", "pairs")},
         [(5, 2), (7, 1)])  # always: two sampled terms, one with 2 x 2 blocks, a Schur rest
def test_sampled_effects_in_affine_residuals_match_dense(p, sampled_specs):
    """``Affine(coef, effects)``: residuals ``F coef - sum_k Z_k u_k`` of sampled terms crossed
    with (or nested in) the marginalized ones. Density, Gram form, conditional draws and the
    gradient in ``(coef, u)`` equal the dense reference on the residual built row by row."""
    rng = np.random.default_rng(p["seed"])
    n = p["n_obs"]
    terms, w = random_problem(rng, n, p["specs"], p["weighted"], p["nested"], p["chain"])
    sampled, _ = random_problem(rng, n, sampled_specs, weighted=False)
    lams = [random_lambda(rng, t.block.shape[1], p["scale"]) for t in terms]
    fixed = rng.normal(size=(n, 3))
    coef = rng.normal(size=3)
    effects = tuple(rng.normal(size=(t.n_levels, t.block.shape[1])) for t in sampled)
    r = fixed @ coef - sum(dense_z(t) @ u.reshape(-1) for t, u in zip(sampled, effects,
                                                                         strict=True))
    cov = dense_cov(terms, lams, p["sigma"], w)
    kernel = prepare(terms, w, form(terms, *p["form"]), fixed=fixed, sampled=sampled)

    def pairs(c, us):
        return kernel.gram(Affine(c, us), p["sigma"], lams)

    def rows(c, us):  # the same log density from the residual built observation by observation
        res = jnp.asarray(fixed) @ c
        for t, u in zip(sampled, us, strict=True):
            res = res - jnp.sum(u[t.index] * t.block, axis=1)
        return kernel.log_density(res, p["sigma"], lams)

    def density(c, us):
        return kernel.log_density(Affine(c, us), p["sigma"], lams)

    (logdet, quad), got, g_pairs, g_rows = compiled(
        lambda c, us: (pairs(c, us), density(c, us), jax.grad(density, (0, 1))(c, us),
                       jax.grad(rows, (0, 1))(c, us)), coef, effects)
    ref = multivariate_normal.logpdf(r, np.zeros(n), cov)
    assert float(got) == pytest.approx(ref, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(float(logdet), np.linalg.slogdet(cov)[1], rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(float(quad[0, 0]), r @ np.linalg.solve(cov, r), rtol=1e-8,
                               atol=1e-9)
    for a, b in zip(jax.tree.leaves(g_pairs), jax.tree.leaves(g_rows), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-8,
                                   atol=1e-8 * max(1.0, float(np.abs(b).max())))
    assert_draws_match_dense(kernel, terms, lams, p["sigma"], w, Affine(coef, effects), r)


def test_sampled_effects_need_their_kernel():
    """Effects for a kernel prepared without them, or reweighted since, are refused."""
    rng = np.random.default_rng(2)
    terms, _ = random_problem(rng, 30, [(5, 1), (4, 1)], weighted=False)
    fixed = rng.normal(size=(30, 2))
    u = (jnp.zeros((4, 1)),)
    plain = prepare(terms[:1], fixed=fixed)
    with_u = prepare(terms[:1], fixed=fixed, sampled=terms[1:])
    with pytest.raises(ValueError, match="1 sampled terms' effects for a kernel with 0"):
        plain.log_density(Affine(jnp.ones(2), u), 1.0, [jnp.eye(1)])
    with pytest.raises(ValueError, match="reweighted"):
        with_u.reweighted(jnp.ones(30)).log_density(Affine(jnp.ones(2), u), 1.0, [jnp.eye(1)])
    with pytest.raises(ValueError, match="needs the fixed columns"):
        prepare(terms[:1], sampled=terms[1:])


# ---------------------------------------------------------------- per-observation sds (§7)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem_strategy)
def test_per_observation_sd_matches_dense(p):
    """``sigma_i`` per observation (distributional sigma, se(s, sigma = TRUE)): the Gram blocks
    are recomputed from the draw's weights and the density is the dense
    ``N(0, diag(sigma_i^2 / w_i) + Z G Z^T)`` to 1e-10, for arrays and Affine residuals."""
    rng = np.random.default_rng(p["seed"])
    terms, w = random_problem(rng, p["n_obs"], p["specs"], p["weighted"], p["nested"],
                              p["chain"])
    lams = [random_lambda(rng, t.block.shape[1], p["scale"]) for t in terms]
    sig = p["sigma"] * np.exp(rng.normal(size=p["n_obs"]))
    rr = rng.normal(size=(p["n_obs"], 3))
    cov = dense_cov(terms, lams, sig, w)
    kernel = prepare(terms, w, form(terms, *p["form"]), fixed=rr)
    ref = multivariate_normal.logpdf(rr[:, 0], np.zeros(p["n_obs"]), cov)
    coef = rng.normal(size=(3, 2))
    got, (logdet, quad), again = compiled(
        lambda k, r, s, ls: (k.log_density(r, s, ls), k.gram(Affine(coef), s, ls),
                             k.reweighted(k.arrays["w"])), kernel, rr[:, 0], sig, lams)
    assert float(got) == pytest.approx(ref, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(float(logdet), np.linalg.slogdet(cov)[1], rtol=1e-10, atol=1e-9)
    ref_quad = coef.T @ rr.T @ np.linalg.solve(cov, rr) @ coef
    np.testing.assert_allclose(np.asarray(quad), ref_quad, rtol=1e-8,
                               atol=1e-10 * np.abs(ref_quad).max())
    # recomputing the blocks for the prepared weights reproduces the precomputed kernel
    for name, value in again.arrays.items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(kernel.arrays[name]),
                                   rtol=1e-12, atol=1e-12)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem_strategy)
def test_per_observation_sd_draws_match_dense(p):
    """Recovery under per-observation sds: the exact conditional of the dense model."""
    rng = np.random.default_rng(p["seed"])
    terms, w = random_problem(rng, p["n_obs"], p["specs"], p["weighted"], p["nested"],
                              p["chain"])
    lams = [random_lambda(rng, t.block.shape[1], p["scale"]) for t in terms]
    sig = p["sigma"] * np.exp(rng.normal(size=p["n_obs"]))
    fixed = rng.normal(size=(p["n_obs"], 2))
    coef = np.array([1.0, -0.5])
    kernel = prepare(terms, w, form(terms, *p["form"]), fixed=fixed)
    resid = Affine(coef) if p["seed"] % 2 else fixed @ coef
    assert_draws_match_dense(kernel, terms, lams, sig, w, resid, fixed @ coef)


@pytest.mark.parametrize("form_args", [("largest", "pairs"), ("largest", "dense"), (None, None)])
def test_per_observation_sd_gradients_match_finite_differences(form_args):
    """Gradient wrt ``log sigma_i = g0 + g1 x_i`` and the term sds, against central
    differences."""
    rng = np.random.default_rng(17)
    terms, w = random_problem(rng, 60, [(7, 2), (5, 1)], weighted=True)
    x = rng.normal(size=60)
    r = rng.normal(size=60)
    kernel = prepare(terms, w, form(terms, *form_args))

    def f(theta):
        sig = jnp.exp(theta[0] + theta[1] * x)
        lams = [jnp.array([[theta[2], 0.0], [0.3 * theta[3], theta[3]]]), jnp.diag(theta[4:5])]
        return kernel.log_density(r, sig, lams)

    theta = np.array([np.log(0.8), 0.4, 1.1, 0.5, 0.7])
    grad = np.asarray(compiled(jax.grad(f), jnp.asarray(theta)))
    fd = _finite_difference(f, theta, h=1e-6)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)
