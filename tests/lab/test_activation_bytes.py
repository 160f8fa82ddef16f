"""Activation bytes as the deployed program stores them (pipeline.fused_activation_bytes)."""

from __future__ import annotations

import numpy as np

from edgeq.lab.pipeline import activation_bytes, fused_activation_bytes
from tests.engine.passes.graphs import conv_rq_graph


def test_fused_count_drops_the_accumulator():
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    mul = np.full((4, 1, 1), 3, np.int64)
    add = np.zeros((4, 1, 1), np.int64)
    g = conv_rq_graph(w, None, mul, add, 10, 0, 255)  # x u8 [3,6,6] -> acc int64 -> q u8 [4,4,4]
    # by hand: the 4x4x4 output, 64 elements: int64 accumulator (8 B) + uint8 (1 B) unfused,
    # the uint8 output alone fused, 4 B per element as float32
    assert activation_bytes(g)[0] == 64 * 8 + 64
    assert fused_activation_bytes(g) == 64
    assert fused_activation_bytes(g, float_bytes=4) == 64 * 4
