"""layer_table / format_table on hand-built graphs with hand-counted sizes."""

import numpy as np

from edgeq.engine.analysis import format_table, layer_table, precision_of
from edgeq.engine.ir import Graph, Node, QuantInfo, Value
from edgeq.numerics import IntRange

U8 = IntRange.from_bits(8, signed=False)
S8 = IntRange.from_bits(8, signed=True)
S32 = IntRange.from_bits(32, signed=True)


def const(name, data, rng=None, eps=None, axis=None):
    data = np.asarray(data)
    quant = None if rng is None else QuantInfo(rng, eps, axis)
    return Value(name, tuple(data.shape), data.dtype, quant, data)


def tensor(name, shape, dtype, rng=None, eps=None):
    return Value(name, shape, np.dtype(dtype), None if rng is None else QuantInfo(rng, eps))


def small_graph() -> Graph:
    """x u8[1,2,4,4] -> Conv(3x3, 3 filters) -> RequantShift -> Flatten -> Gemm x2."""
    values = [
        tensor("x", (1, 2, 4, 4), np.uint8, U8, eps=0.02),
        const("W", np.ones((3, 2, 3, 3), np.int8), S8, eps=(0.1, 0.2, 0.3), axis=0),
        const("B", np.zeros(3, np.int32), S32),
        tensor("acc", (1, 3, 2, 2), np.int64),
        const("mul", np.ones((3, 1, 1), np.int64)),
        const("add", np.zeros((3, 1, 1), np.int64)),
        tensor("y", (1, 3, 2, 2), np.uint8, U8),
        tensor("flat", (1, 12), np.uint8, U8),
        const("T", np.zeros((12, 5), np.int8), IntRange.ternary()),
        tensor("z", (1, 5), np.int64),
        tensor("z2", (None, 5), np.int64),
    ]
    nodes = [
        Node("Conv", "conv", ["x", "W", "B"], ["acc"]),
        Node("RequantShift", "rq", ["acc", "mul", "add"], ["y"], {"shift": 4, "lo": 0, "hi": 255}),
        Node("Flatten", "flatten", ["y"], ["flat"], {"axis": 1}),
        Node("Gemm", "fc", ["flat", "T"], ["z"]),
        Node("MatMul", "fc_again", ["flat", "T"], ["z2"]),  # same weights: counted once
    ]
    return Graph(nodes, {v.name: v for v in values}, ["x"], ["z", "z2"])


def rows_by_name():
    return {r.name: r for r in layer_table(small_graph())}


def test_one_row_per_node_in_order():
    assert [(r.name, r.op) for r in layer_table(small_graph())] == [
        ("conv", "Conv"),
        ("rq", "RequantShift"),
        ("flatten", "Flatten"),
        ("fc", "Gemm"),
        ("fc_again", "MatMul"),
    ]


def test_shapes_exclude_constants():
    conv = rows_by_name()["conv"]
    assert conv.input_shapes == ((1, 2, 4, 4),)
    assert conv.output_shapes == ((1, 3, 2, 2),)


def test_parameter_bytes_packed_at_quant_width():
    rows = rows_by_name()
    # 54 int8 weights at 8 bits + 3 biases at 32 bits
    assert rows["conv"].param_bytes == 54 + 12
    # unannotated int64 constants count their dtype: 2 x 3 x 8 bytes
    assert rows["rq"].param_bytes == 48
    # 60 ternary weights at 2 bits = 15 bytes, and only at their first reader
    assert rows["fc"].param_bytes == 15
    assert rows["fc_again"].param_bytes == 0


def test_activation_bytes():
    rows = rows_by_name()
    assert rows["conv"].act_bytes == 12 * 8  # int64 accumulator
    assert rows["rq"].act_bytes == 12  # 12 values at 8 bits
    assert rows["fc_again"].act_bytes == 5 * 8  # per sample: the symbolic batch counts as 1


def test_macs():
    rows = rows_by_name()
    assert rows["conv"].macs == 12 * 2 * 3 * 3  # outputs x (C_in * kH * kW)
    assert rows["fc"].macs == 5 * 12
    assert rows["fc_again"].macs == 5 * 12  # per sample
    assert rows["rq"].macs is None


def test_gemm_trans_a_reduction():
    values = {
        "a": tensor("a", (7, 2), np.float32),  # A^T is [2, 7]: K = 7
        "b": const("b", np.zeros((7, 4), np.float32)),
        "c": tensor("c", (2, 4), np.float32),
    }
    graph = Graph([Node("Gemm", "g", ["a", "b"], ["c"], {"transA": 1})], values, ["a"], ["c"])
    assert layer_table(graph)[0].macs == 2 * 4 * 7


def test_precision_strings():
    rows = rows_by_name()
    assert rows["conv"].precision == "int64"
    assert rows["conv"].param_precision == "s8 ε[3]/s32"
    assert rows["rq"].precision == "u8"
    assert rows["fc"].param_precision == "s2 [-1,1]"
    assert precision_of(tensor("x", (1,), np.uint8, U8, eps=0.02)) == "u8 ε=0.02"
    assert precision_of(tensor("b", (1,), np.int8, IntRange.binary())) == "s1"
    assert precision_of(tensor("r6", (1,), np.uint8, IntRange.from_bounds(0, 6))) == "u3 [0,6]"
    assert precision_of(Value("unknown")) == "?"


def test_format_table_lists_rows_and_totals():
    text = format_table(layer_table(small_graph()))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["#", "node", "op"]
    assert len(lines) == 1 + 1 + 5 + 1 + 1  # header, rule, rows, rule, totals
    assert lines[2].split()[1:3] == ["conv", "Conv"]
    total = lines[-1].split()
    # params 66 + 48 + 15; activations 96 + 12 + 12 + 5*8 + 5*8; MACs 216 + 60 + 60 (per sample)
    assert total == ["total", "129", "200", "336"]


def test_symbolic_batch_counts_per_sample():
    """[N,4,3,3] conv output of a 2x2 kernel over 2 input channels: per sample."""
    w = np.ones((4, 2, 2, 2), np.int8)
    values = {
        "x": Value("x", ("N", 2, 4, 4), np.dtype(np.uint8),
                   QuantInfo(IntRange.from_bits(8, False))),
        "w": Value("w", w.shape, w.dtype, None, w),
        "y": Value("y", ("N", 4, 3, 3), np.dtype(np.int64)),
    }
    graph = Graph([Node("Conv", "c", ["x", "w"], ["y"])], values, ["x"], ["y"])
    (row,) = layer_table(graph)
    assert row.act_bytes == 4 * 3 * 3 * 8  # int64 outputs of one sample
    assert row.macs == 4 * 3 * 3 * (2 * 2 * 2)
