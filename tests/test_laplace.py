"""Newton steps, the Laplace approximation and the reparameterization of `lmmhmc.laplace`
against dense references (NumPy/SciPy on the N x q design, no tree structure)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import gammaln

from lmmhmc import laplace
from lmmhmc.families import Bernoulli, Binomial, Poisson
from lmmhmc.marginal import Elimination, prepare

jax.config.update("jax_enable_x64", True)


@dataclass
class Term:
    index: np.ndarray
    block: np.ndarray
    n_levels: int


@dataclass(frozen=True)
class GaussianWorking:
    """A Gaussian response ``N(eta, sigma^2)`` as a family (the identity test's reference)."""

    sigma: float
    name: str = "gaussian"

    def log_prob(self, y, eta, params, n):
        return -0.5 * (((y - eta) / self.sigma) ** 2 + np.log(2 * np.pi * self.sigma**2))

    def working(self, y, eta, params, n):
        return (y - eta) / self.sigma**2, jnp.full_like(eta, 1.0 / self.sigma**2)


def crossed(rng, n_obs=60, levels=(7, 5, 3), d=(2, 1, 1), nested=False):
    """Terms with unbalanced levels; ``nested``: each term's level within one of the next."""
    terms = []
    for k, (n_levels, dk) in enumerate(zip(levels, d, strict=True)):
        if nested and k:
            parent = np.arange(terms[-1].n_levels) % n_levels
            idx = parent[terms[-1].index]
        else:
            idx = rng.integers(0, n_levels, n_obs)
            idx[:n_levels] = np.arange(n_levels)
        block = np.column_stack([np.ones(n_obs), rng.normal(size=(n_obs, dk - 1))])
        terms.append(Term(idx, block, n_levels))
    return terms


ELIMINATIONS = {
    "one": (lambda t: t[:1], lambda t: Elimination.nested((0,))),
    "nested": (lambda t: t, lambda t: Elimination.nested((0, 1, 2))),
    "pairs": (lambda t: t, lambda t: Elimination.first(0, 3, "pairs")),
    "dense_cross": (lambda t: t, lambda t: Elimination.first(0, 3, "dense")),
    "dense": (lambda t: t, lambda t: Elimination.dense(3)),
}


def problem(name, seed=0):
    rng = np.random.default_rng(seed)
    pick, elim = ELIMINATIONS[name]
    terms = pick(crossed(rng, nested=name == "nested"))
    lams = [np.tril(rng.normal(size=(t.block.shape[1],) * 2)) * 0.5
            + np.eye(t.block.shape[1]) * 0.7 for t in terms]
    return rng, terms, elim(terms), lams


def dense_z(terms) -> np.ndarray:
    cols = []
    for t in terms:
        n, d = t.block.shape
        z = np.zeros((n, t.n_levels * d))
        for i in range(n):
            z[i, t.index[i] * d : (t.index[i] + 1) * d] = t.block[i]
        cols.append(z)
    return np.hstack(cols)


def dense_lambda(terms, lams) -> np.ndarray:
    from scipy.linalg import block_diag

    return block_diag(*[np.kron(np.eye(t.n_levels), lam) for t, lam in zip(terms, lams,
                                                                              strict=True)])


@pytest.mark.parametrize("name", list(ELIMINATIONS))
def test_reweighted_is_prepare_with_weights(name):
    rng, terms, elim, lams = problem(name)
    w = rng.uniform(0.2, 3.0, len(terms[0].index))
    r = rng.normal(size=len(w))
    base = prepare(terms, None, elim)
    reference = prepare(terms, w, elim)
    reweighted = jax.jit(lambda k, w: k.reweighted(w))(base, jnp.asarray(w))
    for key, value in reference.arrays.items():
        np.testing.assert_allclose(reweighted.arrays[key], value, rtol=1e-12, atol=1e-12,
                                   err_msg=key)
    np.testing.assert_allclose(reweighted.log_density(r, 1.3, lams),
                               reference.log_density(r, 1.3, lams), rtol=1e-12)


@pytest.mark.parametrize("name", list(ELIMINATIONS))
def test_conditional_against_dense(name):
    rng, terms, elim, lams = problem(name, seed=1)
    w = rng.uniform(0.2, 3.0, len(terms[0].index))
    r = rng.normal(size=len(w))
    noise = [rng.normal(size=(t.n_levels, t.block.shape[1])) for t in terms]
    vs, us, logdet = prepare(terms, w, elim).conditional(r, lams, noise)
    z, lam = dense_z(terms), dense_lambda(terms, lams)
    p = np.eye(z.shape[1]) + lam.T @ z.T @ (w[:, None] * z) @ lam
    chol = np.linalg.cholesky(p)
    v = np.linalg.solve(p, lam.T @ z.T @ (w * r)) + np.linalg.solve(chol.T, np.concatenate(
        [x.reshape(-1) for x in noise]))
    np.testing.assert_allclose(np.concatenate([x.reshape(-1) for x in vs]), v, atol=1e-11)
    np.testing.assert_allclose(np.concatenate([x.reshape(-1) for x in us]), lam @ v, atol=1e-11)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(p)[1], rtol=1e-12)


def _args(terms, y, n, eta0):
    return (jnp.asarray(y), jnp.asarray(n), jnp.asarray(eta0),
            tuple(jnp.asarray(t.index) for t in terms), tuple(jnp.asarray(t.block) for t in terms))


@pytest.mark.parametrize("name", ["one", "nested", "pairs", "dense"])
def test_gaussian_reparameterization_is_marginal_times_normal(name):
    """A Gaussian response through the Newton path: the density of (psi, z) is the marginal
    density times N(z; 0, I) exactly, for any number of steps."""
    rng, terms, elim, lams = problem(name, seed=2)
    n_obs = len(terms[0].index)
    eta0 = rng.normal(size=n_obs)
    y = eta0 + rng.normal(size=n_obs) * 2.0
    kernel = prepare(terms, None, elim)
    z = [jnp.asarray(rng.normal(size=(t.n_levels, t.block.shape[1]))) for t in terms]
    y_, n_, eta0_, index, block = _args(terms, y, np.ones(n_obs), eta0)
    expected = kernel.log_density(y - eta0, 0.8, lams) + sum(
        float(np.sum(-0.5 * np.asarray(zk) ** 2 - 0.5 * np.log(2 * np.pi))) for zk in z)
    for steps in (1, 3):
        _, got = laplace.reparameterized(kernel, GaussianWorking(0.8), y_, n_, eta0_, index,
                                         block, lams, z, steps)
        np.testing.assert_allclose(got, expected, rtol=1e-11)


def _dense_mode(family_logp, family_working, z, lam, eta0):
    """The mode of ``log p(y | eta0 + Z Lambda v) - |v|^2 / 2``: BFGS, then dense Newton
    steps with the N x q design."""
    a = z @ lam

    def negf(v):
        return -(family_logp(eta0 + a @ v) - 0.5 * v @ v)

    v = minimize(negf, np.zeros(a.shape[1]), method="BFGS", options={"gtol": 1e-8}).x
    for _ in range(5):
        g, w = family_working(eta0 + a @ v)
        v = v + np.linalg.solve(np.eye(len(v)) + a.T @ (w[:, None] * a), a.T @ g - v)
    return v


@pytest.mark.parametrize(("family", "name"), [(Poisson(), "one"), (Bernoulli(), "pairs"),
                                              (Binomial(), "nested")])
def test_laplace_against_dense(family, name):
    rng, terms, elim, lams = problem(name, seed=3)
    n_obs = len(terms[0].index)
    zd, lam = dense_z(terms), dense_lambda(terms, lams)
    eta0 = rng.normal(size=n_obs) * 0.5
    truth = eta0 + zd @ lam @ rng.normal(size=zd.shape[1])
    n = rng.integers(1, 6, n_obs).astype(float) if family.name == "binomial" else np.ones(n_obs)
    if family.name == "poisson":
        y = rng.poisson(np.exp(truth)).astype(float)
    else:
        y = rng.binomial(n.astype(int), 1 / (1 + np.exp(-truth))).astype(float)

    def logp(eta):  # dense reference of the family's log-likelihood
        if family.name == "poisson":
            return np.sum(y * eta - np.exp(eta) - gammaln(y + 1))
        return np.sum(gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1) + y * eta
                      - n * np.logaddexp(0, eta))

    def working(eta):  # gradient and negative second derivative in eta
        if family.name == "poisson":
            return y - np.exp(eta), np.exp(eta)
        p = 1 / (1 + np.exp(-eta))
        return y - n * p, n * p * (1 - p)

    v = _dense_mode(logp, working, zd, lam, eta0)
    eta = eta0 + zd @ lam @ v
    p = np.eye(zd.shape[1]) + lam.T @ zd.T @ (working(eta)[1][:, None] * zd) @ lam
    expected = logp(eta) - 0.5 * v @ v - 0.5 * np.linalg.slogdet(p)[1]

    kernel = prepare(terms, None, elim)
    args = _args(terms, y, n, eta0)
    start = ([jnp.zeros((t.n_levels, t.block.shape[1])) for t in terms],) * 2
    at = laplace.mode(kernel, family, *args, lams, start)
    np.testing.assert_allclose(np.concatenate([np.ravel(x) for x in at[0]]), v, atol=1e-9)
    got = laplace.laplace_log_likelihood(kernel, family, *args, lams, at)
    np.testing.assert_allclose(got, expected, rtol=1e-11)


@pytest.mark.parametrize(("family", "name", "started"),
                         [(Bernoulli(), "pairs", False), (Poisson(), "nested", True)])
def test_reparameterization_jacobian_is_dense_determinant(family, name, started):
    """The map z -> v is affine with matrix L^{-T}: the density's log-Jacobian term equals
    log|det dv/dz| computed densely by automatic differentiation (from 0, or from another
    fixed start)."""
    rng, terms, elim, lams = problem(name, seed=4)
    n_obs = len(terms[0].index)
    eta0 = rng.normal(size=n_obs) * 0.3
    y = rng.integers(0, 2 if family.name == "bernoulli" else 4, n_obs).astype(float)
    kernel = prepare(terms, None, elim)
    args = _args(terms, y, np.ones(n_obs), eta0)
    shapes = [(t.n_levels, t.block.shape[1]) for t in terms]
    sizes = [a * b for a, b in shapes]
    lam = dense_lambda(terms, lams)

    def split(flat):
        parts = jnp.split(flat, np.cumsum(sizes)[:-1])
        return [p.reshape(s) for p, s in zip(parts, shapes, strict=True)]

    start = [jnp.asarray(0.3 * rng.normal(size=s)) for s in shapes] if started else None
    steps = dict(steps=3, start=start)

    def v_of(flat):  # v = Lambda^{-1} u
        us, _ = laplace.reparameterized(kernel, family, *args, lams, split(flat), **steps)
        return jnp.linalg.solve(lam, jnp.concatenate([u.reshape(-1) for u in us]))

    z = jnp.asarray(rng.normal(size=sum(sizes)))
    jac = jax.jacobian(v_of)(z)
    v = v_of(z)
    _, density = laplace.reparameterized(kernel, family, *args, lams, split(z), **steps)
    eta = np.asarray(eta0) + dense_z(terms) @ lam @ np.asarray(v)
    logp = float(jnp.sum(family.log_prob(args[0], jnp.asarray(eta), {}, args[1])))
    log_normal = -0.5 * float(v @ v) - 0.5 * len(v) * np.log(2 * np.pi)
    expected = logp + log_normal + np.linalg.slogdet(np.asarray(jac))[1]
    np.testing.assert_allclose(density, expected, rtol=1e-10)
