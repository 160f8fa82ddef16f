"""The PTQ engine end to end: integer IR == emulation, ONNX round trip, hand cases,
codebooks, keep-float, config round trip and bad input."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.engine import load
from edgeq.engine.analysis import layer_table, totals
from edgeq.engine.model import Model
from edgeq.engine.onnx import import_onnx
from edgeq.engine.onnx.exporter import export_onnx
from edgeq.engine.ptq import METHODS, PTQConfig, ptq
from edgeq.engine.ptq.calibration import check_inputs
from edgeq.errors import ConfigError, ShapeError, UnsupportedOpError
from tests.engine.ptq.models import small_cnn, with_softmax


def dequantised(graph, x, out="logits"):
    y = Model(graph).run({"x": x})[out]
    return y * graph.values[out].quant.eps


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bits", [8, 4])
def test_integer_ir_equals_emulation_bit_for_bit(float_graph, arrays, calibration, method, bits):
    r = ptq(float_graph, arrays, method, bits, cal=calibration)
    x = arrays["x"]
    assert np.array_equal(dequantised(r.graph, x), r.emulator.run({"x": x})["logits"])
    # and the quantised network approximates the float one (one network-wide FL at 4
    # bits cannot: that is what dynamic fixed point is for)
    ref = Model(float_graph).run({"x": x})["logits"]
    tol = 0.25 if bits == 8 else 1.5 if method != "fixed" else np.inf
    assert np.max(np.abs(dequantised(r.graph, x) - ref)) < tol


def test_dynamic_beats_standard_fixed_point(float_graph, arrays, calibration):
    x = arrays["x"]
    ref = Model(float_graph).run({"x": x})["logits"]
    err = {m: np.abs(dequantised(ptq(float_graph, arrays, m, 4, cal=calibration).graph, x)
                     - ref).mean() for m in ("fixed", "dynamic")}
    assert err["dynamic"] < err["fixed"] / 2


def test_per_channel_is_exact_and_shift_only(float_graph, arrays, calibration):
    r = ptq(float_graph, arrays, "dynamic", 6, per_channel=True, cal=calibration)
    w2 = r.graph.values["w2"].quant
    assert w2.axis == 0 and isinstance(w2.eps, tuple) and len(w2.eps) == 8
    assert all(np.log2(e) == int(np.log2(e)) for e in w2.eps)  # powers of two
    x = arrays["x"]
    assert np.array_equal(dequantised(r.graph, x), r.emulator.run({"x": x})["logits"])
    # per-tensor dynamic fixed point requantises by shifts only: every mul is 1
    r8 = ptq(float_graph, arrays, "dynamic", 8, cal=calibration)
    muls = [r8.graph.values[n.inputs[1]].data for n in r8.graph.nodes if n.op == "RequantShift"]
    assert muls and all(np.all(m == 1) for m in muls)


def test_onnx_round_trip_is_bit_exact(float_graph, arrays, calibration, tmp_path):
    for method, pc in (("kmeans", False), ("dynamic", True), ("fixed", False)):
        r = ptq(float_graph, arrays, method, 4, per_channel=pc, cal=calibration)
        path = tmp_path / f"{method}.onnx"
        export_onnx(r.graph, path)
        back = load(path)
        x = arrays["x"]
        assert np.array_equal(back.run({"x": x})["logits"], Model(r.graph).run({"x": x})["logits"])
        for name in ("w1", "w2", "w3", "wf"):
            assert back.graph.values[name].quant == r.graph.values[name].quant
            assert np.array_equal(back.graph.values[name].data, r.graph.values[name].data)


def test_codebook_annotation_and_memory(float_graph, arrays, calibration):
    r = ptq(float_graph, arrays, "kmeans", 3, cal=calibration)
    w = r.graph.values["w2"]
    assert w.quant.codebook is not None and len(w.quant.codebook) <= 8
    assert set(np.unique(w.data)) <= set(w.quant.codebook)
    assert w.quant.storage_bits == 3 and w.nbytes == (8 * 4 * 9 * 3 + 7) // 8
    rows = {row.name: row for row in layer_table(r.graph)}
    # conv2 holds its 3-bit indices plus an int32 bias of 8 channels
    assert rows["conv2"].param_bytes == (288 * 3 + 7) // 8 + 8 * 4
    assert totals(layer_table(r.graph)).param_bytes < totals(layer_table(float_graph)).param_bytes


def test_hand_computed_gemm():
    # y = x @ W, x = [0.5, 0.25], W = [0.5, -0.25]: x̂ = [8, 4] (FL 4), ŵ = [2, -1] (FL 2),
    # acc = 12 at 2^-6, out FL 3: d = 3, floor((12 + 4) / 8) = 2  (0.1875 / 0.125 = 1.5 -> 2)
    w = numpy_helper.from_array(np.array([[0.5], [-0.25]], np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])], [w])
    graph = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    cfg = PTQConfig.from_json({
        "inputs": {"x": {"method": "dynamic", "bits": 8, "fl": 4, "signed": False}},
        "layers": {"mm": {"weights": {"method": "dynamic", "bits": 8, "fl": 2},
                          "activations": {"method": "dynamic", "bits": 8, "fl": 3}}}})
    xs = {"x": np.array([[0.5, 0.25]], np.float32)}
    r = ptq(graph, xs, config=cfg)
    assert Model(r.graph).run(xs)["y"].tolist() == [[2]]
    rq = next(n for n in r.graph.nodes if n.op == "RequantShift")
    assert rq.attrs["shift"] == 3 and r.graph.values[rq.inputs[2]].data == 4


def test_bias_wider_than_32_bits():
    """Fine input and weight grids put a unit bias at 2^40 units of 2^−40: a signed
    range needs 42 bits (2^40 > 2^40 − 1, the 41-bit maximum); int64, exact."""
    w = numpy_helper.from_array(np.array([[0.5, -0.25]], np.float32), "w")
    b = numpy_helper.from_array(np.array([1.0], np.float32), "b")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc",
                                            transB=1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])], [w, b])
    graph = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    cfg = PTQConfig.from_json({
        "inputs": {"x": {"method": "dynamic", "bits": 16, "fl": 20, "signed": False}},
        "layers": {"fc": {"weights": {"method": "dynamic", "bits": 16, "fl": 20},
                          "activations": {"method": "dynamic", "bits": 16, "fl": 8}}}})
    xs = {"x": np.array([[2.0**-10, 2.0**-11]], np.float32)}
    r = ptq(graph, xs, config=cfg)
    bias = next(v for v in r.graph.constants() if v.name.startswith("fc.bias_q"))
    assert bias.data.dtype == np.int64 and bias.data.tolist() == [2**40]
    assert bias.quant.range.lo == -(2**41) and bias.quant.range.hi == 2**41 - 1
    # y = 2^-11 - 2^-13 + 1 at FL 8: round(256 + 2^-3 - 2^-5) = 256
    assert Model(r.graph).run(xs)["y"].tolist() == [[256]]


def test_config_round_trips_and_is_reused(float_graph, arrays, calibration, tmp_path):
    r = ptq(float_graph, arrays, "kmeans-gauss", 5, cal=calibration)
    path = tmp_path / "cfg.json"
    r.config.save(path)
    again = PTQConfig.load(path)
    assert again == r.config
    r2 = ptq(float_graph, arrays, "fixed", 8, config=again, cal=calibration)
    x = arrays["x"]
    assert np.array_equal(Model(r2.graph).run({"x": x})["logits"],
                          Model(r.graph).run({"x": x})["logits"])


def test_keep_float_tail(arrays):
    graph = import_onnx(with_softmax(small_cnn()))
    with pytest.raises(UnsupportedOpError, match="node 'softmax'.*--keep-float Softmax"):
        ptq(graph, arrays)
    r = ptq(graph, arrays, keep_float=("Softmax",))
    assert r.graph.values["probs"].quant is None
    x = arrays["x"]
    probs = Model(r.graph).run({"x": x})["probs"]
    assert np.allclose(probs, r.emulator.run({"x": x})["probs"], atol=1e-6)


@pytest.mark.parametrize(("cfg", "match"), [
    ({"layers": {"conv9": {}}}, "layer 'conv9' is not a quantised layer"),
    ({"layers": {"conv1": {"weights": {"method": "kmeans", "bits": 17}}}},
     r"layers.conv1.weights.bits: bit width 17"),
    ({"layers": {"conv1": {"weights": {"method": "lloyd", "bits": 4}}}}, "unknown method"),
    ({"layers": {"conv1": {"activations": {"method": "kmeans", "bits": 12}}}},
     "a clustered activation has at most 8 index bits"),
    ({"layers": {"conv1": {"weights": {"method": "fixed", "bits": 4, "fll": 3}}}},
     r"unknown key\(s\) \['fll'\]"),
    ({"inputs": {"y": {"method": "fixed", "bits": 8}}}, "inputs.y: the model has no such input"),
])
def test_bad_config(float_graph, arrays, calibration, cfg, match):
    with pytest.raises(ConfigError, match=match):
        ptq(float_graph, arrays, config=PTQConfig.from_json(cfg), cal=calibration)


@pytest.mark.parametrize(("arrays", "err", "match"), [
    ({"y": np.zeros((2, 1, 8, 8), np.float32)}, ConfigError, "missing.*'x'"),
    ({"x": np.zeros((2, 1, 8, 7), np.float32)}, ShapeError, "array 'x' has shape"),
    ({"x": np.zeros((2, 1, 8, 8), np.int32)}, ConfigError, "dtype int32"),
    ({"x": np.zeros((0, 1, 8, 8), np.float32)}, ConfigError, "empty"),
])
def test_bad_calibration_arrays(float_graph, arrays, err, match):
    with pytest.raises(err, match=match):
        check_inputs("calib.npz", arrays, float_graph)


def test_method_and_bits_are_checked(float_graph, arrays, calibration):
    with pytest.raises(ConfigError, match="unknown method 'int8'"):
        ptq(float_graph, arrays, "int8", 8, cal=calibration)
    with pytest.raises(ConfigError, match="bit width 1 is outside 2–16"):
        ptq(float_graph, arrays, "dynamic", 1, cal=calibration)


def test_quantised_file_is_valid_onnx(float_graph, arrays, calibration, tmp_path):
    r = ptq(float_graph, arrays, "dynamic", 8, cal=calibration)
    export_onnx(r.graph, tmp_path / "q.onnx")
    onnx.checker.check_model(str(tmp_path / "q.onnx"), full_check=True)
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "q.onnx")).metadata_props}
    assert json.loads(meta["edgeq.annotations"])["values"]["w1"]["quant"]["eps"] > 0


@pytest.mark.parametrize("size", [8, 6])  # 64 (a shift) and 36 (a multiplier) elements
@pytest.mark.parametrize("method", ["dynamic", "kmeans"])
def test_global_average_pool_is_exact(tmp_path, size, method):
    from tests.engine.ptq.models import gap_cnn

    graph = import_onnx(gap_cnn(size))
    rng = np.random.default_rng(size)
    xs = {"x": rng.uniform(-1, 1, (32, 2, size, size)).astype(np.float32)}
    r = ptq(graph, xs, method, 8)
    ops = [n.op for n in r.graph.nodes]
    assert ops.count("Conv") == 2 and "ReduceSum" not in ops  # the sum is a depthwise Conv
    got = Model(r.graph).run(xs)["y"] * r.graph.values["y"].quant.eps
    assert np.array_equal(got, r.emulator.run(xs)["y"])
    ref = Model(graph).run(xs)["y"]
    assert np.max(np.abs(got - ref)) < 0.1
    export_onnx(r.graph, tmp_path / "g.onnx")
    assert np.array_equal(load(tmp_path / "g.onnx").run(xs)["y"], Model(r.graph).run(xs)["y"])


def test_pool_requantiser_against_fractions():
    from fractions import Fraction
    from math import floor

    from edgeq.engine.ptq.lower import apply_requant, pool_requant

    # count 4, FL 3 -> FL 2: the mean of s/8 units at 2^-2 is s/8, a pure shift by 3
    assert pool_requant(4, 3, 2) == (1, 3)
    for count, fl_x, fl_y in ((4, 3, 2), (64, 2, 6), (36, 6, 5), (49, 4, 6), (3, 7, 7)):
        mul, d = pool_requant(count, fl_x, fl_y)
        sums = np.arange(-40 * count, 40 * count)
        got = apply_requant(sums, mul, d, -(2**40), 2**40)
        exact = [Fraction(int(s), count) * Fraction(2) ** (fl_y - fl_x) for s in sums]
        want = np.array([floor(e + Fraction(1, 2)) for e in exact])
        if count & (count - 1) == 0:  # a power of two: a pure shift, exact
            assert np.array_equal(got, want)
            continue
        # else mul = round(2^s/count) has 16 significant bits: it may differ only at ties
        wrong = np.nonzero(got != want)[0]
        assert np.all(np.abs(got - want) <= 1)
        assert all(abs(exact[i] - floor(exact[i]) - Fraction(1, 2)) < Fraction(1, 2**10)
                   for i in wrong), (count, fl_x, fl_y)


def test_torch_export_patterns(tmp_path):
    # weights behind Identity nodes and a shape subgraph feeding Reshape: both handled
    from tests.engine.ptq.models import gap_cnn

    graph = import_onnx(gap_cnn(4, torch_style=True))
    xs = {"x": np.random.default_rng(0).uniform(-1, 1, (16, 2, 4, 4)).astype(np.float32)}
    r = ptq(graph, xs, "dynamic", 8)
    assert [x.name for x in r.plan.layers] == ["conv", "gap", "fc"]
    assert {"shape", "gather", "unsqueeze", "concat"} <= r.plan.index_nodes
    # the shape computation became a constant target [-1, 6]; Shape & co. are gone
    ops = {n.op for n in r.graph.nodes}
    assert "Shape" not in ops and "Gather" not in ops
    (reshape,) = [n for n in r.graph.nodes if n.op == "Reshape"]
    assert r.graph.values[reshape.inputs[1]].data.tolist() == [-1, 6]
    got = Model(r.graph).run(xs)["y"] * r.graph.values["y"].quant.eps
    assert np.array_equal(got, r.emulator.run(xs)["y"])
    export_onnx(r.graph, tmp_path / "t.onnx")
    assert np.array_equal(load(tmp_path / "t.onnx").run(xs)["y"], Model(r.graph).run(xs)["y"])
