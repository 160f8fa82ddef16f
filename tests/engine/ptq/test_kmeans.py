"""Codebook quantisers: hand cases, and exact k-means against brute force."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.engine.ptq import kmeans as km


def test_linear_and_gauss_codebooks():
    assert km.linear_codebook(np.array([3.0, 0.0, 1.0]), 4).tolist() == [0, 1, 2, 3]
    v = np.array([-1.0, 1.0])  # mean 0, std 1: two cells of mass 1/2 -> ±Φ⁻¹(3/4)
    assert km.gauss_codebook(v, 2) == pytest.approx([-0.6744897501960817, 0.6744897501960817])


def test_assign_and_lloyd_hand_case():
    v = np.array([0.0, 0.1, 0.9, 1.0, 1.1])
    assert km.assign(v, np.array([1.0, 0.0])).tolist() == [1, 1, 0, 0, 0]
    assert km.lloyd(v, np.array([0.0, 0.5]), 10) == pytest.approx([0.05, 1.0])


def brute_force(values, weights, k):
    """Best SSE over every assignment of the points to k labels (no ordering assumed)."""
    best = np.inf
    for labels in itertools.product(range(k), repeat=len(values)):
        sse = 0.0
        for c in range(k):
            sel = [i for i, lab in enumerate(labels) if lab == c]
            if sel:
                w = sum(weights[i] for i in sel)
                m = sum(weights[i] * values[i] for i in sel) / w
                sse += sum(weights[i] * (values[i] - m) ** 2 for i in sel)
        best = min(best, sse)
    return best


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-20, 20), min_size=1, max_size=7),
       st.lists(st.integers(1, 4), min_size=7, max_size=7), st.integers(1, 3))
def test_optimal_kmeans_matches_brute_force(values, weights, k):
    weights = weights[: len(values)]
    cents, sse = km.optimal_kmeans(np.array(values, float), k, np.array(weights, float))
    assert sse == pytest.approx(brute_force(values, weights, k), abs=1e-9)
    assert len(cents) <= k and np.all(np.diff(cents) > 0)
    # the centroids reproduce the reported error when each value takes its nearest one
    near = cents[km.assign(np.array(values, float), cents)]
    assert np.sum(np.array(weights) * (np.array(values) - near) ** 2) == pytest.approx(sse)


def test_optimal_kmeans_beats_lloyd_on_a_trap():
    # Lloyd from the linear start stays in a poor local optimum here; the DP does not
    v = np.array([0.0, 1.0, 2.0, 10.0, 10.5, 11.0, 30.0])
    _, sse = km.optimal_kmeans(v, 3)
    assert sse == pytest.approx(brute_force(v.tolist(), [1] * 7, 3))
