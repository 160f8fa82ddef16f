"""The PTQ integer IR runs on the C backend bit for bit as on the reference backend,
fixed point and codebook weights alike (DESIGN §7: the reference is the oracle)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from edgeq.engine.model import Model
from edgeq.engine.onnx import import_onnx
from edgeq.engine.ptq import ptq
from tests.engine.ptq.models import calib_arrays, gap_cnn, small_cnn, small_mobilenet


@pytest.fixture(scope="module", autouse=True)
def _gcc_and_cache(build_cache):
    if shutil.which("gcc") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("gcc is not installed")
        pytest.skip("gcc is not installed: no C backend")


def _mobilenet_data(n: int, seed: int) -> dict:
    return {"x": np.random.default_rng(seed).uniform(-1, 1, (n, 3, 16, 16)).astype(np.float32)}


CASES = [  # (model, method, bits, per_channel)
    ("cnn", "kmeans", 4, False),  # codebook weights, residual HarmonisedAdd
    ("cnn", "dynamic", 8, True),  # per-channel power-of-two multipliers
    ("mobilenet", "kmeans-gauss", 4, False),  # codebooks in depthwise and pointwise convs
    ("mobilenet", "dynamic", 8, False),  # shifts only; the pool's sum is a depthwise Conv
    ("mobilenet", "fixed", 6, False),
    ("torch-style", "kmeans", 6, False),  # x.view(x.size(0), -1): the Shape ops are folded
]


@pytest.mark.parametrize("model,method,bits,per_channel", CASES)
def test_c_backend_is_bit_exact(model, method, bits, per_channel):
    if model == "cnn":
        graph, calib, x = import_onnx(small_cnn()), calib_arrays(48), calib_arrays(6, seed=9)
    elif model == "mobilenet":
        graph, calib, x = import_onnx(small_mobilenet()), _mobilenet_data(48, 1), \
            _mobilenet_data(6, 9)
    else:
        rng = np.random.default_rng(4)
        graph = import_onnx(gap_cnn(4, torch_style=True))
        calib, x = ({"x": rng.uniform(-1, 1, (n, 2, 4, 4)).astype(np.float32)} for n in (32, 5))
        assert "Shape" in {n.op for n in graph.nodes}
    r = ptq(graph, calib, method, bits, per_channel=per_channel)
    c = Model(r.graph, backend="c")
    assert set(c._assignment.values()) == {"c"}  # every node on C, none left to NumPy
    ref = Model(r.graph).run(x)
    got = c.run(x)
    for name, a in ref.items():
        assert got[name].dtype == a.dtype
        assert np.array_equal(got[name], a), name
    # and the emulation agrees with both (integers times ε)
    out = r.graph.outputs[0]
    assert np.array_equal(ref[out] * r.graph.values[out].quant.eps, r.emulator.run(x)[out])
    if method.startswith("kmeans"):  # the codebook survived lowering: kernels saw entries
        w = next(v for v in r.graph.constants() if v.quant is not None and v.quant.codebook)
        assert set(np.unique(w.data)) <= set(w.quant.codebook)
