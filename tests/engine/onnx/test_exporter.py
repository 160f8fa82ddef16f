"""IR -> ONNX exporter: the dory and edgeq dialects, round trips and bad input.

Expected values never come from the exporter: they are the golden Dronet output, the
original QuantLab file, or the outputs/annotations of the IR graph that was exported.
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from edgeq.engine import Model, load
from edgeq.engine.ir import EDGEQ_DOMAIN, Graph, Node, QuantInfo, Value
from edgeq.engine.onnx import exporter, import_onnx
from edgeq.engine.onnx.exporter import export_onnx, to_onnx
from edgeq.engine.passes.shapes import complete_shapes
from edgeq.errors import (
    ConfigError,
    IntegerOverflowError,
    ModelFileError,
    UnsupportedOpError,
)
from edgeq.numerics import IntRange

DRONET = "DRONETV3_ql_integerized.onnx"
ADDER_KEYS = [f"{p}_{k}" for p in ("in1", "in2") for k in ("mul", "add", "shift", "n_levels", "rq")]
ADDER_KEYS += [f"out_{k}" for k in ("mul", "add", "shift", "n_levels", "rq")]
# DORY's Quantlab frontend: layers_accepted in Frontend_frameworks/Quantlab/Parser.py
DORY_ACCEPTED = {"Conv", "Pad", "Mul", "Add", "Div", "Constant", "AveragePool",
                 "GlobalAveragePool", "MaxPool", "Cast", "Clip", "Floor", "Flatten", "Gemm",
                 "MatMul", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Reshape",
                 "Sigmoid", "LogSoftmax"}


# -- helpers -------------------------------------------------------------------------------
def _vector(path):
    lines = [ln.strip().rstrip(",") for ln in open(path) if ln.strip()]
    return np.array([int(v) for v in lines[1:]], dtype=np.int64)


def _dronet(dronet_dir):
    graph = load(dronet_dir / DRONET).graph
    x = _vector(dronet_dir / "input.txt").reshape(1, 1, 200, 200)
    return graph, {graph.inputs[0]: x}, _vector(dronet_dir / "output.txt")


def _run(graph: Graph, feeds: dict) -> list[np.ndarray]:
    return list(Model(graph).run(feeds).values())


def _ort_run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString())
    return session.run(None, {k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()})


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _snapshot(graph: Graph):
    """Everything the IR says, in comparable form (meta is bookkeeping, left out)."""
    nodes = [(n.op, n.name, n.inputs, n.outputs, n.attrs, n.domain) for n in graph.nodes]
    values = {
        k: (v.shape, None if v.dtype is None else np.dtype(v.dtype).name, v.quant,
            None if v.data is None else (v.data.dtype.name, v.data.shape, v.data.tobytes()))
        for k, v in graph.values.items()
    }
    return nodes, values, graph.inputs, graph.outputs, graph.name, graph.opset


def _assert_same_ir(got: Graph, want: Graph) -> None:
    g_nodes, g_values, *g_rest = _snapshot(got)
    w_nodes, w_values, *w_rest = _snapshot(want)
    assert g_rest == w_rest
    assert g_nodes == w_nodes
    assert g_values.keys() == w_values.keys()
    for name in w_values:
        assert g_values[name] == w_values[name], name


# -- Dronet: dory dialect ------------------------------------------------------------------
def test_dronet_dory_round_trip_reproduces_golden(dronet_dir, tmp_path):
    graph, feeds, golden = _dronet(dronet_dir)
    path = tmp_path / "dronet_dory.onnx"
    export_onnx(graph, path, dialect="dory")
    again = import_onnx(path)  # no edgeq metadata: the QuantLab/DORY importer reads it
    assert again.meta["dialect"] == "quantlab"
    (out,) = _run(again, {again.inputs[0]: feeds[graph.inputs[0]]})
    np.testing.assert_array_equal(out.ravel(), golden)


def test_dronet_dory_matches_the_quantlab_file(dronet_dir, tmp_path):
    """Node for node, the export is what QuantLab wrote (plus out_signed on adders)."""
    graph, _, _ = _dronet(dronet_dir)
    ours = export_onnx(graph, tmp_path / "d.onnx", dialect="dory")
    theirs = onnx.load(str(dronet_dir / DRONET))
    assert [o.version for o in ours.opset_import] == [10]
    assert ours.ir_version <= 7

    def layout(model):
        values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                       for n in model.graph.node if n.op_type == "Constant"})
        rows = []
        for n in model.graph.node:
            if n.op_type != "Constant":
                attrs = {k: v for k, v in _attrs(n).items() if k != "out_signed"}
                consts = [values[i].astype(np.float64).tolist() for i in n.input if i in values]
                rows.append((n.op_type, attrs, consts))
        return rows

    assert layout(ours) == layout(theirs)


def test_dronet_dory_patterns_are_what_dory_reads(dronet_dir, tmp_path):
    """DORY's Quantlab frontend: Mul,Add,Div,Clip chains, adder attrs, precisions."""
    graph, _, _ = _dronet(dronet_dir)
    model = export_onnx(graph, tmp_path / "d.onnx", dialect="dory")
    nodes = list(model.graph.node)
    inits = {t.name for t in model.graph.initializer}
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                 for n in nodes if n.op_type == "Constant"}
    producer = {o: n for n in nodes for o in n.output}
    assert {n.op_type for n in nodes} <= DORY_ACCEPTED
    clips = [n for n in nodes if n.op_type == "Clip"]
    assert len(clips) == 10
    for clip in clips:
        a = _attrs(clip)
        assert a["out_bits"] == round(math.log2(a["max"] - a["min"] + 1)) == 8
        floor = producer[clip.input[0]]
        div = producer[floor.input[0]]
        add = producer[div.input[0]]
        mul = producer[add.input[0]]
        assert [floor.op_type, div.op_type, add.op_type, mul.op_type] == ["Floor", "Div", "Add",
                                                                          "Mul"]
        d = float(constants[div.input[1]])
        assert d == 2 ** round(math.log2(d))  # DORY: outshift = round(log2(D))
        assert add.input[1] in inits and _attrs(add) == {"add_bits": 32}
        assert mul.input[1] in inits and _attrs(mul) == {"mult_bits": 32}
    adders = [n for n in nodes if n.op_type == "Add" and "out_n_levels" in _attrs(n)]
    assert len(adders) == 3
    for adder in adders:
        a = _attrs(adder)
        assert set(ADDER_KEYS) <= set(a)
        assert a["add_bits"] == 8 and a["out_signed"] == 0 and a["out_n_levels"] == 256
        assert not set(adder.input) & (inits | set(constants))  # two activations
    for linear in (n for n in nodes if n.op_type in ("Conv", "Gemm", "MatMul")):
        a = _attrs(linear)
        assert (a["weight_bits"], a["bias_bits"]) == (8, 32)


# -- Dronet: edgeq dialect -----------------------------------------------------------------
def test_dronet_edgeq_is_standard_onnx_and_round_trips(dronet_dir, tmp_path):
    graph, feeds, golden = _dronet(dronet_dir)
    path = tmp_path / "dronet_edgeq.onnx"
    export_onnx(graph, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    allowed = {"Conv", "Mul", "Add", "Div", "Floor", "Clip", "MaxPool", "Flatten", "MatMul",
               "Gather", "Sigmoid", "Unsqueeze", "Concat"}
    assert {n.op_type for n in model.graph.node} <= allowed
    assert all(n.domain == "" for n in model.graph.node)
    (ort_out,) = _ort_run(model, feeds)  # loads and runs; float32, exact only below 2^24
    assert ort_out.shape == (1, 2)
    again = import_onnx(path)
    (out,) = _run(again, {again.inputs[0]: feeds[graph.inputs[0]]})
    np.testing.assert_array_equal(out.ravel(), golden)
    for name, v in graph.values.items():
        assert again.values[name].quant == v.quant, name
    _assert_same_ir(again, graph)


# -- hand-built integer graphs -------------------------------------------------------------
S4, S8 = IntRange.from_bits(4, signed=True), IntRange.from_bits(8, signed=True)
U2, U8 = IntRange.from_bits(2, signed=False), IntRange.from_bits(8, signed=False)
S32 = IntRange.from_bits(32, signed=True)


def _const(name, data, quant=None):
    data = np.asarray(data)
    return Value(name, tuple(data.shape), data.dtype, quant, data)


def _int_graph(n_add: int = 3, seed: int = 0) -> Graph:
    """x(s8) -> Conv(4-bit per-channel w, bias) -> three RequantShifts -> HarmonisedAdd."""
    rng = np.random.default_rng(seed)
    w_eps = (0.1, 0.2, 0.30000000000000004, 1e-7)
    values = [
        Value("x", (1, 2, 5, 5), np.dtype(np.int8), QuantInfo(S8, 0.05)),
        _const("w", rng.integers(-8, 8, (4, 2, 3, 3)).astype(np.int8),
               QuantInfo(S4, w_eps, axis=0)),
        _const("b", rng.integers(-500, 500, 4).astype(np.int32),
               QuantInfo(S32, tuple(0.05 * e for e in w_eps), axis=0)),
        _const("mul1", rng.integers(1, 5, (4, 1, 1)).astype(np.int16)),
        _const("add1", rng.integers(-600, 600, (4, 1, 1)).astype(np.int32)),
        _const("mul2", np.int8(3)), _const("add2", np.int16(2048)),
        _const("mul3", np.int16(7)), _const("add3", np.int16(8192)),
    ]
    nodes = [
        Node("Conv", "conv", ["x", "w", "b"], ["acc"], {"kernel_shape": [3, 3],
                                                      "pads": [1, 1, 1, 1]}),
        Node("RequantShift", "rq1", ["acc", "mul1", "add1"], ["y1"],
             {"shift": 10, "lo": -8, "hi": 7}, EDGEQ_DOMAIN),
        Node("RequantShift", "rq2", ["acc", "mul2", "add2"], ["y2"],
             {"shift": 12, "lo": 0, "hi": 3}, EDGEQ_DOMAIN),
        Node("RequantShift", "rq3", ["acc", "mul3", "add3"], ["y3"],
             {"shift": 6, "lo": 0, "hi": 255}, EDGEQ_DOMAIN),
    ]
    adder = {"in_mul": [5, 3, 2], "in_add": [2, 1, 4], "in_shift": [2, 1, 3], "in_rq": [1, 0, 1],
             "out_mul": 3, "out_add": 4, "out_shift": 3, "out_rq": 1, "lo": -8, "hi": 7}
    adder = {k: v[:n_add] if isinstance(v, list) else v for k, v in adder.items()}
    nodes.append(Node("HarmonisedAdd", "hadd", ["y1", "y2", "y3"][:n_add], ["y"], adder,
                      EDGEQ_DOMAIN))
    quants = {"y1": QuantInfo(S4, 0.1), "y2": QuantInfo(U2, 0.3), "y3": QuantInfo(U8, 0.02),
              "y": QuantInfo(S4, 0.25)}
    for name in ("acc", "y1", "y2", "y3", "y"):
        values.append(Value(name, quant=quants.get(name)))
    graph = Graph(nodes, {v.name: v for v in values}, ["x"], ["y", "y2"], "hand", opset=17)
    for name, q in quants.items():
        graph.values[name].dtype = q.range.dtype
    graph = complete_shapes(graph)
    graph.validate()
    return graph


def _int_feeds(seed: int = 1) -> dict:
    return {"x": np.random.default_rng(seed).integers(-128, 128, (1, 2, 5, 5)).astype(np.int8)}


@pytest.mark.parametrize("n_add", [1, 2, 3])
def test_edgeq_round_trip_restores_the_ir_exactly(n_add, tmp_path):
    graph = _int_graph(n_add)
    path = tmp_path / "hand.onnx"
    export_onnx(graph, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    again = import_onnx(path)
    _assert_same_ir(again, graph)
    assert again.values["w"].quant.eps == (0.1, 0.2, 0.30000000000000004, 1e-7)
    for want, got in zip(_run(graph, _int_feeds()), _run(again, _int_feeds()), strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype


@pytest.mark.parametrize("n_add", [2, 3])
def test_edgeq_file_runs_in_onnxruntime_like_the_ir(n_add):
    """Independent executor: ORT on the standard ops gives the IR's integers (< 2^24)."""
    graph = _int_graph(n_add)
    model = to_onnx(graph)
    for seed in range(3):
        want = _run(graph, _int_feeds(seed))
        got = _ort_run(model, _int_feeds(seed))
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(g, w.astype(np.float32))


def test_edgeq_metadata_records_ranges_and_eps():
    graph = _int_graph()
    model = to_onnx(graph)
    (entry,) = [p for p in model.metadata_props if p.key == "edgeq.annotations"]
    data = json.loads(entry.value)
    assert data["version"] == 1
    assert data["inputs"] == {"x": QuantInfo(S8, 0.05).to_json()}
    assert QuantInfo.from_json(data["values"]["w"]["quant"]) == graph.values["w"].quant
    assert data["values"]["y2"]["dtype"] == np.dtype(graph.values["y2"].dtype).name
    assert [op["name"] for op in data["ops"]] == ["rq1", "rq2", "rq3", "hadd"]


def test_dory_round_trip_through_the_quantlab_importer(tmp_path):
    graph = _int_graph(n_add=2)
    path = tmp_path / "hand_dory.onnx"
    export_onnx(graph, path, dialect="dory")
    again = import_onnx(path, input_range=S8)
    assert again.meta["dialect"] == "quantlab"
    for seed in range(3):
        for w, g in zip(_run(graph, _int_feeds(seed)), _run(again, _int_feeds(seed)),
                        strict=True):
            np.testing.assert_array_equal(g, w)
    assert again.values[again.outputs[0]].quant.range == S4
    assert again.values["w"].quant.range == S4  # from weight_bits=4


def test_dory_attributes_follow_the_ranges():
    graph = _int_graph(n_add=2)
    graph.nodes[3].attrs.update(lo=-(2**15), hi=2**15 - 1)  # rq3: a 16-bit output
    graph.values["y3"].quant = QuantInfo(IntRange.from_bits(16, signed=True))
    model = to_onnx(graph, dialect="dory")
    # dory names tensors by numbers; each node's doc_string keeps the IR name
    by_out = {n.doc_string.removeprefix("edgeq: "): n for n in model.graph.node}
    assert _attrs(by_out["acc"])["weight_bits"] == 4
    # QuantLab's annotate_onnx: out_bits = round(log2(levels)), 32 when over 8 bits
    assert [_attrs(by_out[y])["out_bits"] for y in ("y1", "y2", "y3")] == [4, 2, 32]
    assert [(_attrs(by_out[y])["min"], _attrs(by_out[y])["max"]) for y in ("y1", "y2")] == [
        (-8.0, 7.0), (0.0, 3.0)]
    adder = _attrs(by_out["y"])
    assert (adder["out_signed"], adder["out_n_levels"]) == (1, 16)
    assert (adder["in1_n_levels"], adder["in2_n_levels"]) == (16, 4)
    assert (adder["in1_mul"], adder["in2_rq"], adder["out_shift"]) == (5, 0, 3)


def test_dory_refuses_a_three_input_adder(tmp_path):
    with pytest.raises(UnsupportedOpError, match="'hadd'.*exactly 2 inputs"):
        export_onnx(_int_graph(n_add=3), tmp_path / "x.onnx", dialect="dory")
    assert list(tmp_path.iterdir()) == []


def test_dory_refuses_an_adder_range_quantlab_cannot_state():
    graph = _int_graph(n_add=2)
    graph.nodes[-1].attrs.update(lo=-3, hi=4)
    with pytest.raises(UnsupportedOpError, match=r"'hadd'.*\[-3, 4\]"):
        to_onnx(graph, dialect="dory")


def test_dory_needs_an_integer_graph():
    with pytest.raises(ConfigError, match="dory"):
        to_onnx(_float_graph(), dialect="dory")


@settings(max_examples=30, deadline=None)
@given(bits=st.sampled_from([2, 4, 8]), signed=st.booleans(), shift=st.integers(0, 12),
       mul=st.lists(st.integers(-300, 300), min_size=3, max_size=3),
       add=st.integers(-5000, 5000), eps=st.lists(st.floats(1e-9, 1e3), min_size=3, max_size=3))
def test_requant_round_trip_property(bits, signed, shift, mul, add, eps):
    out = IntRange.from_bits(bits, signed)
    values = [Value("x", (1, 3, 4), np.dtype(np.int16), QuantInfo(IntRange.from_bits(12, True))),
              _const("m", np.array(mul, dtype=np.int16).reshape(3, 1)),
              _const("a", np.int32(add)),
              Value("y", quant=QuantInfo(out, tuple(eps), axis=1))]
    node = Node("RequantShift", "rq", ["x", "m", "a"], ["y"],
                {"shift": shift, "lo": out.lo, "hi": out.hi}, EDGEQ_DOMAIN)
    graph = complete_shapes(Graph([node], {v.name: v for v in values}, ["x"], ["y"], "p", 13))
    graph.values["y"].dtype = out.dtype
    model = to_onnx(graph)
    again = import_onnx(model)
    _assert_same_ir(again, graph)
    feeds = {"x": np.random.default_rng(0).integers(-2048, 2048, (1, 3, 4)).astype(np.int16)}
    (want,) = _run(graph, feeds)
    np.testing.assert_array_equal(_run(again, feeds)[0], want)
    np.testing.assert_array_equal(_ort_run(model, feeds)[0], want.astype(np.float32))


def test_index_inputs_keep_their_integer_type_and_casts_round_trip():
    """Reshape's shape stays int64 (ONNX admits no float there); a Cast follows the carrier."""
    values = [Value("x", (1, 4), np.dtype(np.uint8), QuantInfo(U8, 0.5)),
              _const("k", np.int64(-3)), _const("shape", np.array([2, 2], dtype=np.int64)),
              Value("c"), Value("s"), Value("y")]
    nodes = [Node("Cast", "cast", ["x"], ["c"], {"to": onnx.TensorProto.INT64}),
             Node("Add", "add", ["c", "k"], ["s"]),
             Node("Reshape", "reshape", ["s", "shape"], ["y"])]
    graph = complete_shapes(Graph(nodes, {v.name: v for v in values}, ["x"], ["y"], "idx", 13))
    model = to_onnx(graph)
    kinds = {t.name: t.data_type for t in model.graph.initializer}
    assert kinds == {"k": onnx.TensorProto.FLOAT, "shape": onnx.TensorProto.INT64}
    again = import_onnx(model)
    _assert_same_ir(again, graph)
    feeds = {"x": np.array([[0, 7, 200, 255]], dtype=np.uint8)}
    (want,) = _run(graph, feeds)
    np.testing.assert_array_equal(_run(again, feeds)[0], want)
    np.testing.assert_array_equal(_ort_run(model, feeds)[0], want.astype(np.float32))


# -- float graphs --------------------------------------------------------------------------
def _float_graph() -> Graph:
    rng = np.random.default_rng(3)
    values = [
        Value("x", (1, 2, 6, 6), np.dtype(np.float32)),
        _const("w", rng.normal(size=(3, 2, 3, 3)).astype(np.float32)),
        _const("b", rng.normal(size=3).astype(np.float32)),
        _const("fc", rng.normal(size=(5, 48)).astype(np.float32)),
        Value("c"), Value("r"), Value("f"), Value("y"),
    ]
    nodes = [
        Node("Conv", "conv", ["x", "w", "b"], ["c"], {"kernel_shape": [3, 3], "strides": [1, 1]}),
        Node("Relu", "relu", ["c"], ["r"]),
        Node("Flatten", "flat", ["r"], ["f"], {"axis": 1}),
        Node("Gemm", "gemm", ["f", "fc"], ["y"], {"transB": 1, "alpha": 0.5}),
    ]
    graph = Graph(nodes, {v.name: v for v in values}, ["x"], ["y"], "float", opset=17)
    return complete_shapes(graph)


def test_float_graph_round_trip(tmp_path):
    graph = _float_graph()
    path = tmp_path / "float.onnx"
    model = export_onnx(graph, path)
    assert [o.version for o in model.opset_import] == [17]
    assert not model.metadata_props
    assert {i.data_type for i in model.graph.initializer} == {onnx.TensorProto.FLOAT}
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    again = import_onnx(path)
    _assert_same_ir(again, graph)
    feeds = {"x": np.random.default_rng(4).normal(size=(1, 2, 6, 6)).astype(np.float32)}
    (want,) = _run(graph, feeds)
    np.testing.assert_array_equal(_run(again, feeds)[0], want)
    np.testing.assert_allclose(_ort_run(model, feeds)[0], want, rtol=1e-5, atol=1e-5)


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("dialect", ["edgeq", "dory"])
def test_integer_not_exact_in_float32_names_the_tensor(dialect, tmp_path):
    graph = _int_graph(n_add=2)
    graph.values["add1"].data = graph.values["add1"].data.copy()
    graph.values["add1"].data[2, 0, 0] = 2**24 + 1
    with pytest.raises(IntegerOverflowError, match=r"'add1'.*16777217"):
        export_onnx(graph, tmp_path / "x.onnx", dialect=dialect)
    assert list(tmp_path.iterdir()) == []


def test_adder_attribute_not_exact_in_float32_names_it():
    graph = _int_graph()
    graph.nodes[-1].attrs["in_mul"] = [5, 3, 2**25 + 1]
    with pytest.raises(IntegerOverflowError, match=r"hadd\.in3\.mul_by.*33554433"):
        to_onnx(graph)


def test_integer_div_has_no_float_form():
    graph = _int_graph(n_add=2)
    graph.values["two"] = _const("two", np.int64(2))
    graph.values["q"] = Value("q", graph.values["y"].shape, np.dtype(np.int64))
    graph.nodes.append(Node("Div", "div", ["y", "two"], ["q"]))
    graph.outputs.append("q")
    with pytest.raises(UnsupportedOpError, match="'div'.*truncates"):
        to_onnx(graph)


def test_missing_directory_is_a_clear_error_and_leaves_nothing(tmp_path):
    target = tmp_path / "missing" / "model.onnx"
    with pytest.raises(ModelFileError, match="missing.*does not exist"):
        export_onnx(_int_graph(), target)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exporter.os, "replace", refuse)
    with pytest.raises(ModelFileError, match="model.onnx.*No space left"):
        export_onnx(_int_graph(), target)
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_bytes() == b"old"


def test_export_replaces_an_existing_file(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    export_onnx(_int_graph(), target)
    assert list(tmp_path.iterdir()) == [target]
    _assert_same_ir(import_onnx(target), _int_graph())


def test_unknown_dialect_and_opset_are_config_errors():
    with pytest.raises(ConfigError, match="dialect"):
        to_onnx(_int_graph(), dialect="qdq")
    with pytest.raises(ConfigError, match="opset"):
        to_onnx(_int_graph(), opset=3)


def test_an_edited_edgeq_file_is_refused(tmp_path):
    model = to_onnx(_int_graph())
    for t in model.graph.initializer:
        if t.name == "rq1.div_by":  # the exporter's name for rq1's divisor 2^10
            t.CopyFrom(numpy_helper.from_array(np.float32(2**9), t.name))
    with pytest.raises(ModelFileError, match="'rq1'.*does not match.*rq1.div_by"):
        import_onnx(model)


def test_malformed_annotations_are_refused():
    model = to_onnx(_int_graph())
    model.metadata_props[0].value = "{not json"
    with pytest.raises(ModelFileError, match="edgeq.annotations.*not valid JSON"):
        import_onnx(model)
    data = json.loads(to_onnx(_int_graph()).metadata_props[0].value)
    data["version"] = 99
    model.metadata_props[0].value = json.dumps(data)
    with pytest.raises(ModelFileError, match="format version 99"):
        import_onnx(model)


def test_a_conflicting_input_range_is_refused():
    with pytest.raises(ConfigError, match="'x'.*recorded with range"):
        import_onnx(to_onnx(_int_graph()), input_range=U8)
