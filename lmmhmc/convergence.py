"""Rank-normalized split R-hat and bulk / tail ESS, vectorized over parameters.

The estimators of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), exactly as
ArviZ's ``rhat(method="rank")`` and ``ess(method="bulk" | "tail")`` compute them, but for every
column of a ``(chain, draw, K)`` array at once: ArviZ loops over the elements in Python, which
costs about 0.7 s for a fit with a few hundred random effects; this takes milliseconds. For
6,674 columns of 4 x 1,000 draws (df_stroop_complete's random effects) it takes 2.4-2.5 s on
two cores (3.1-3.2 s with a second full sort for the folded draws and an inverse FFT per
chain; 20 s before it worked in blocks of columns, in threads, along contiguous rows). One
sort per column gives the ranks, the quantiles and the median; the folded draws
``|x - median|`` in that order fall, then rise, so a stable sort (timsort) merely merges two
runs; the rank scores are computed once per size (again only at ties); the chains' spectra
are averaged before one inverse real FFT per column.
``tests/test_convergence.py`` compares both to ArviZ.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import fft, special

from .runtime import cores

__all__ = ["rhat_and_ess"]

#: Blom's fractional offset of the rank-normal scores.
_BLOM = 3 / 8
#: Arrays with fewer draws per chain give NaN, as in ArviZ.
_MIN_DRAWS = 4
#: Columns per block: a block's arrays stay in the cache, and blocks run in threads (NumPy's
#: sorts and SciPy's FFTs release the GIL).
_BLOCK = 256


def rhat_and_ess(x: np.ndarray, prob: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalized split R-hat, bulk ESS and tail ESS of each column.

    R-hat is the larger of the bulk and folded values; the bulk ESS is the ESS of the
    rank-normalized split chains; the tail ESS the smaller ESS of the indicators ``x <= q``
    at the quantiles `prob` and ``1 - prob``.

    Parameters
    ----------
    x : numpy.ndarray
        ``(chain, draw, K)`` draws.
    prob : float

    Returns
    -------
    tuple of numpy.ndarray
        Each ``(K,)``; NaN for a column with NaN draws or fewer than 4 draws per chain, and
        R-hat NaN with one chain (as ArviZ).
    """
    x = np.asarray(x, dtype=float)
    k = x.shape[2]
    if x.shape[1] < _MIN_DRAWS or k == 0:
        nan = np.full(k, np.nan)
        return nan, nan, nan
    blocks = [np.ascontiguousarray(np.moveaxis(x[..., i:i + _BLOCK], 2, 0))
              for i in range(0, k, _BLOCK)]
    with ThreadPoolExecutor(min(len(blocks), cores())) as pool:
        parts = list(pool.map(lambda b: _block(b, prob), blocks))
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


def _block(x: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`rhat_and_ess` of ``(K, chain, draw)`` draws."""
    k, chains, n = x.shape
    split = _split(x)
    flat = split.reshape(k, -1)
    order, ordered, z = _normal_scores(flat)
    bulk = _ess(z.reshape(split.shape))
    median = _median(ordered)
    every = ordered
    if 2 * split.shape[2] != n:  # the middle draw of an odd count is not in the split chains
        every = np.sort(x.reshape(k, -1), axis=1)
    tail = np.minimum(*(_ess(_split((x <= q[:, None, None]).astype(float)))
                        for q in _quantiles(every, (prob, 1 - prob))))
    rhat = np.full(k, np.nan)
    if chains >= 2:
        # |x - median| in the sorted order falls, then rises: a stable sort (timsort) only
        # merges the two runs, and the scores go back to the draws' places through `order`
        folded = np.empty_like(flat)
        np.put_along_axis(folded, order, _normal_scores(np.abs(ordered - median[:, None]),
                                                        kind="stable")[2], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rhat = np.maximum(_rhat(z.reshape(split.shape)), _rhat(folded.reshape(split.shape)))
    bad = np.isnan(x).any(axis=(1, 2))
    return tuple(np.where(bad, np.nan, v) for v in (rhat, bulk, tail))


def _split(x: np.ndarray) -> np.ndarray:
    """Each chain's first and last halves as separate chains (the middle draw of an odd
    count dropped); ``(K, chain, draw)`` to ``(K, 2 chain, draw // 2)``."""
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, -half:]], axis=1)


def _normal_scores(flat: np.ndarray,
                   kind: str = "quicksort") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's sorting permutation, the sorted row, and the normal scores of its ranks,
    ``Phi^-1((r - 3/8) / (n + 1/4))``, ties given their average rank (as
    ``scipy.stats.rankdata(a, "average")``); `kind` is `numpy.argsort`'s."""
    k, n = flat.shape
    order = np.argsort(flat, axis=1, kind=kind)
    ordered = np.take_along_axis(flat, order, axis=1)
    starts = np.ones((k, n), dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    position = np.arange(1.0, n + 1)
    sorted_scores = np.broadcast_to(_score(position, n), (k, n))  # without ties
    if not starts.all():
        groups = np.cumsum(starts.ravel()) - 1  # tie groups, never across rows
        ranks = (np.bincount(groups, weights=np.tile(position, k)) / np.bincount(groups))[groups]
        tied = ranks != np.tile(position, k)
        sorted_scores = sorted_scores.copy()
        sorted_scores.reshape(-1)[tied] = _score(ranks[tied], n)
    scores = np.empty((k, n))
    np.put_along_axis(scores, order, sorted_scores, axis=1)
    return order, ordered, scores


def _score(ranks: np.ndarray, n: int) -> np.ndarray:
    """Blom's normal score of a rank among `n`."""
    return special.ndtri((ranks - _BLOM) / (n - 2 * _BLOM + 1))


def _median(ordered: np.ndarray) -> np.ndarray:
    """The median of each sorted row, as `numpy.median`."""
    n = ordered.shape[1]
    middle = ordered[:, n // 2]
    return middle if n % 2 else (ordered[:, n // 2 - 1] + middle) / 2


def _quantiles(ordered: np.ndarray, probs: tuple[float, ...]) -> list[np.ndarray]:
    """Quantiles of each sorted row by linear interpolation, as `numpy.quantile`
    (whose interpolation this repeats to the last bit)."""
    n = ordered.shape[1]
    out = []
    for p in probs:
        h = p * (n - 1)
        lo = int(np.floor(h))
        hi = min(lo + 1, n - 1)
        t = h - lo
        a, b = ordered[:, lo], ordered[:, hi]
        diff = b - a
        out.append(b - diff * (1 - t) if t >= 0.5 else a + diff * t)
    return out


def _rhat(x: np.ndarray) -> np.ndarray:
    """Classic R-hat ``sqrt((B / W + n - 1) / n)`` of each row of ``(K, chain, draw)``."""
    n = x.shape[2]
    between = n * np.var(np.mean(x, axis=2), axis=1, ddof=1)
    within = np.mean(np.var(x, axis=2, ddof=1), axis=1)
    return np.sqrt((between / within + n - 1) / n)


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of each row of ``(K, chain, draw)`` from the chains' autocorrelations, truncated
    by Geyer's initial positive sequence and made monotone (the running minimum of the pair
    sums). Chains of at most 2 draws have no pair to sum: as in ArviZ, the ESS is then its
    upper bound ``chains n log10(chains n)``."""
    k, chains, n = x.shape
    total = chains * n
    constant = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))) < np.finfo(float).resolution
    if n <= 2:
        return np.where(constant, float(total), total * np.log10(total))
    centred = x - x.mean(axis=2, keepdims=True)
    m = fft.next_fast_len(2 * n, real=True)
    f = fft.rfft(centred, n=m, axis=2)
    # the chains' mean autocovariance: the inverse transform is linear, so one per row
    acov = fft.irfft((f.real ** 2 + f.imag ** 2).mean(axis=1), n=m, axis=1)[:, :n] / n
    mean_var = acov[:, 0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if chains > 1:
        var_plus = var_plus + np.var(x.mean(axis=2), axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov) / var_plus[:, None]  # (k, n)
    rho[:, 0] = 1.0
    n_pairs = (n - 3) // 2 + 1  # the sequential loop looks at lags below n - 1
    pairs = rho[:, : 2 * n_pairs].reshape(k, n_pairs, 2).sum(axis=2)
    # J: the first pair whose sum is not positive, or the last one looked at
    stop = np.where((pairs <= 0).any(axis=1), np.argmax(pairs <= 0, axis=1), n_pairs - 1)
    running = np.minimum.accumulate(pairs, axis=1)
    before = np.arange(n_pairs) < stop[:, None]
    head = np.sum(np.where(before, running, 0.0), axis=1)
    rows = np.arange(k)
    even = rho[rows, 2 * stop]
    kept = (pairs[rows, stop] >= 0) | (even > 0)
    tau = -1.0 + 2.0 * head + np.where(kept, even, 0.0)
    tau = np.maximum(tau, 1.0 / np.log10(total))
    out = total / tau
    return np.where(constant, float(total), np.where(np.isnan(rho).any(axis=1), np.nan, out))
