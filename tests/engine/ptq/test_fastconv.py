"""The search's float kernels equal the reference kernels (up to float rounding), and the
explorer's prefix reuse gives the same scores as running the whole network."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine.backends.reference.registry import KERNELS
from edgeq.engine.onnx import import_onnx
from edgeq.engine.ptq.calibration import calibrate
from edgeq.engine.ptq.fastconv import conv, run_float
from tests.engine.ptq.models import small_mobilenet


@pytest.mark.parametrize("shape,wshape,attrs", [
    ((2, 6, 9, 7), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((2, 6, 9, 7), (6, 1, 3, 3), {"group": 6, "pads": [0, 1, 2, 0]}),
    ((2, 4, 5, 5), (4, 1, 5, 3), {"group": 4, "pads": [2, 1, 2, 1], "strides": [1, 2]}),
    ((3, 8, 6, 5), (5, 8, 1, 1), {}),  # pointwise: one matmul
    ((1, 3, 8, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),  # anything else: the reference
    ((1, 4, 8, 8), (4, 2, 3, 3), {"group": 2, "dilations": [2, 2]}),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_equals_reference(shape, wshape, attrs, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    ref = KERNELS["Conv"].fn(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                             **attrs)
    got = conv(x, w, b, **attrs)
    assert got.dtype == dtype and got.shape == ref.shape
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


def test_run_float_and_calibration_match_the_reference_executor():
    from edgeq.engine.backends.reference.executor import run_graph

    graph = import_onnx(small_mobilenet())
    x = np.random.default_rng(1).uniform(-1, 1, (4, 3, 16, 16)).astype(np.float32)
    seen_ref, seen = {}, {}
    ref = run_graph(graph, {"x": x}, observe=lambda n, a: seen_ref.setdefault(n, a))
    got = run_float(graph, {"x": x}, observe=lambda n, a: seen.setdefault(n, a))
    assert set(seen) == set(seen_ref)
    np.testing.assert_allclose(got["y"], ref["y"], rtol=1e-4, atol=1e-5)
    cal = calibrate(graph, {"x": x}, 4, progress=False)
    for name, a in seen_ref.items():
        st = cal.stats[name]
        assert st.count == a.size and st.max == pytest.approx(float(a.max()), abs=1e-5)
        assert st.mean == pytest.approx(float(np.mean(a, dtype=np.float64)), abs=1e-5)
        # the log2 histogram counts every non-zero element once
        assert st.log_hist.sum() + st.zeros == a.size


def test_prefix_reuse_scores_equal_full_runs():
    from edgeq.engine.ptq.analysis import analyse_layers
    from edgeq.engine.ptq.explore import Explorer, _only, eval_set
    from edgeq.engine.ptq.plan import make_plan

    graph = import_onnx(small_mobilenet())
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (24, 3, 16, 16)).astype(np.float32)
    plan = make_plan(graph)
    cal = calibrate(graph, {"x": x}, 24, progress=False)
    ev = eval_set(graph, {"x": x[:12], "labels": rng.integers(0, 6, 12)}, "eval")
    ex = Explorer(graph, plan, cal, ev, analyse_layers(graph, plan, cal, (8, 4)))
    for key in ex.keys:
        cfg = ex.analysis.config_for({key: 4})
        reused = ex.score(cfg, _only(key), ex.start[key], ex.fp_env)
        assert reused == ex.score(cfg, _only(key)), key
    # a greedy trial from an accepted configuration's values == the full run
    base = ex.analysis.config_for({}, default=8)
    acc = ex.score(base, keep=True)
    env = acc.pop("env")
    key = "pw2.weights"
    trial = ex.analysis.config_for({k: 4 if k == key else 8 for k in ex.keys})
    assert ex.score(trial, None, ex.start[key], env) == ex.score(trial)
    assert ex.start[key] > 0
