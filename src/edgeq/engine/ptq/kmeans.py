"""1-D clustering for codebook quantisation: QUENN's quantisers and exact k-means.

- :func:`linear_codebook`: K centroids evenly spaced over [min, max] (QUENN's linear
  quantiser).
- :func:`gauss_codebook`: K centroids at the Gaussian quantiles
  ``mean + std·Φ⁻¹((i + ½)/K)`` (QUENN's Gaussian quantiser: every cell holds the same
  probability mass under N(mean, std²)).
- :func:`lloyd`: Lloyd iterations from a starting codebook (``kmeans-linear`` and
  ``kmeans-gauss`` refine their quantiser this way; 0 iterations keep it as it is).
- :func:`optimal_kmeans`: the globally optimal 1-D k-means (``kmeans``) by dynamic
  programming over the sorted distinct values, weighted by their counts, with the
  divide-and-conquer optimisation (the optimal split points are monotone):
  O(K·m·log m) for m distinct values.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def linear_codebook(v: np.ndarray, k: int) -> np.ndarray:
    lo, hi = float(np.min(v)), float(np.max(v))
    return np.linspace(lo, hi, k)


def gauss_codebook(v: np.ndarray, k: int) -> np.ndarray:
    mean, std = float(np.mean(v)), float(np.std(v))
    normal = NormalDist()
    z = np.array([normal.inv_cdf((i + 0.5) / k) for i in range(k)])
    return mean + std * z


def assign(v: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid of each value (ties go to the lower centroid)."""
    order = np.argsort(codebook, kind="stable")
    book = codebook[order]
    mids = (book[1:] + book[:-1]) / 2
    return order[np.searchsorted(mids, v, side="left")]


def lloyd(v: np.ndarray, codebook: np.ndarray, iters: int) -> np.ndarray:
    """Lloyd's k-means from ``codebook``; an empty cluster keeps its centroid."""
    v = np.ravel(np.asarray(v, dtype=np.float64))
    book = np.array(codebook, dtype=np.float64)
    for _ in range(iters):
        idx = assign(v, book)
        sums = np.bincount(idx, weights=v, minlength=book.size)
        counts = np.bincount(idx, minlength=book.size)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), book)
        if np.array_equal(new, book):
            break
        book = new
    return book


def optimal_kmeans(values: np.ndarray, k: int, weights: np.ndarray | None = None):
    """The codebook minimising Σ w·(v − c(v))² over all partitions into ≤ k clusters.

    Returns ``(centroids, sse)`` with the centroids sorted. Values with a weight are
    points of that multiplicity.
    """
    v = np.ravel(np.asarray(values, dtype=np.float64))
    w = np.ones_like(v) if weights is None else np.ravel(np.asarray(weights, np.float64))
    xs, inv = np.unique(v, return_inverse=True)
    ws = np.bincount(inv, weights=w)
    m = xs.size
    if k >= m:
        return xs.copy(), 0.0
    cw = np.concatenate([[0.0], np.cumsum(ws)])
    cs = np.concatenate([[0.0], np.cumsum(ws * xs)])
    cq = np.concatenate([[0.0], np.cumsum(ws * xs * xs)])

    def cost(i, j):  # SSE of xs[i:j] as one cluster (vectorised over i or j)
        n = cw[j] - cw[i]
        s = cs[j] - cs[i]
        return np.maximum(cq[j] - cq[i] - s * s / np.where(n > 0, n, 1), 0.0)

    prev = cost(0, np.arange(m + 1))  # prev[j]: best SSE of xs[:j] with 1 cluster
    splits = []
    for _ in range(1, k):
        cur = np.full(m + 1, np.inf)
        arg = np.zeros(m + 1, dtype=np.int64)
        if m <= DENSE_MAX:
            _dense(m, prev, cur, arg, cost)
        else:
            _divide(1, m, 0, m - 1, prev, cur, arg, cost)
        cur[0], arg[0] = 0.0, 0
        splits.append(arg)
        prev = cur
    bounds = [m]
    for arg in reversed(splits):
        bounds.append(int(arg[bounds[-1]]))
    bounds.append(0)
    bounds = sorted(set(bounds))
    pairs = zip(bounds[:-1], bounds[1:], strict=True)
    cents = [(cs[b] - cs[a]) / (cw[b] - cw[a]) for a, b in pairs if b > a]
    return np.array(cents), float(prev[m])


DENSE_MAX = 512  # up to this many distinct values one DP row is one (m+1)² array operation


def _dense(m, prev, cur, arg, cost):
    """Fill cur[j] = min_{i<j} prev[i] + cost(i, j) for every j at once (O(m²) memory)."""
    i, j = np.arange(m + 1)[:, None], np.arange(m + 1)[None, :]
    totals = np.where(i < j, prev[:, None] + cost(i, j), np.inf)
    arg[1:] = np.argmin(totals[:, 1:], axis=0)  # first minimum: the smallest i, as _divide
    cur[1:] = totals[arg[1:], np.arange(1, m + 1)]


def _divide(jlo, jhi, ilo, ihi, prev, cur, arg, cost):
    """Fill cur[j] = min_{i<j} prev[i] + cost(i, j) for j in [jlo, jhi], knowing the
    optimal i lies in [ilo, ihi] and is non-decreasing in j."""
    stack = [(jlo, jhi, ilo, ihi)]
    while stack:
        jlo, jhi, ilo, ihi = stack.pop()
        if jlo > jhi:
            continue
        j = (jlo + jhi) // 2
        cand = np.arange(ilo, min(ihi, j - 1) + 1)
        totals = prev[cand] + cost(cand, j)
        best = int(np.argmin(totals))
        cur[j], arg[j] = totals[best], cand[best]
        stack.append((jlo, j - 1, ilo, int(cand[best])))
        stack.append((j + 1, jhi, int(cand[best]), ihi))
