"""The analyser's counts against hand counts: MobileNetV1 (224x224, 1000 classes) and
the paper's totals (Howard et al. 2017, Table 1: 569 M mult-adds, 4.2 M parameters)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.cli import main
from edgeq.engine.analyser import analyse, totals
from edgeq.engine.onnx import import_onnx

BLOCKS = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1),
          (256, 512, 2)] + [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]


def mobilenet_v1() -> onnx.ModelProto:
    """BN folded away: conv (no bias) + Relu everywhere, as in the paper's count."""
    nodes, inits = [], []

    def conv(x, cin, cout, k, stride, group, name):
        w = numpy_helper.from_array(np.zeros((cout, cin // group, k, k), np.float32), name + ".w")
        inits.append(w)
        p = k // 2
        nodes.append(helper.make_node("Conv", [x, w.name], [name], name=name, group=group,
                                      strides=[stride] * 2, pads=[p] * 4, kernel_shape=[k, k]))
        nodes.append(helper.make_node("Relu", [name], [name + ".r"], name=name + ".relu"))
        return name + ".r"

    x = conv("x", 3, 32, 3, 2, 1, "conv1")
    for i, (cin, cout, s) in enumerate(BLOCKS):
        x = conv(x, cin, cin, 3, s, cin, f"dw{i}")
        x = conv(x, cin, cout, 1, 1, 1, f"pw{i}")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    inits += [numpy_helper.from_array(np.zeros((1000, 1024), np.float32), "fc.w"),
              numpy_helper.from_array(np.zeros(1000, np.float32), "fc.b")]
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["y"], name="fc", transB=1))
    g = helper.make_graph(nodes, "mobilenet_v1",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def hand_counts():
    """MACs, parameters and output elements per conv, from the architecture table."""
    macs, params, outs = 112 * 112 * 27 * 32, 27 * 32, [112 * 112 * 32]
    hw = 112
    for cin, cout, s in BLOCKS:
        hw //= s
        macs += hw * hw * 9 * cin + hw * hw * cin * cout  # depthwise, then pointwise
        params += 9 * cin + cin * cout
        outs += [hw * hw * cin, hw * hw * cout]
    macs += 1024 * 1000
    params += 1024 * 1000
    return macs, params, outs


@pytest.fixture(scope="module")
def graph():
    return import_onnx(mobilenet_v1())


def test_macs_and_parameters_match_hand_counts(graph):
    rows = analyse(graph, bits=8)
    t = totals(rows)
    macs, params, outs = hand_counts()
    assert t["macs"] == macs
    assert abs(macs - 569e6) / 569e6 < 0.005  # the paper's 569 M
    assert abs(params + 1000 - 4.2e6) / 4.2e6 < 0.01  # its 4.2 M (with the fc bias)
    # 8-bit weights: one byte per weight; the fc bias at 32 bits
    assert t["weight_bytes"] == params + 4 * 1000
    # 8-bit activations: every conv and relu output, the pooled vector, its flatten, logits
    assert t["act_bytes"] == 2 * sum(outs) + 1024 + 1024 + 1000
    # relu: one comparison per element; GAP: 48 adds and a division per channel
    assert t["comps"] == sum(outs)
    gap = next(r for r in rows if r.op == "GlobalAveragePool")
    assert (gap.adds, gap.divs) == (1024 * 48, 1024)


def test_bit_width_scales_memory(graph):
    t8, t4 = totals(analyse(graph, bits=8)), totals(analyse(graph, bits=4))
    _, params, _ = hand_counts()
    assert t4["weight_bytes"] == params // 2 + 4 * 1000
    assert t4["act_bytes"] * 2 == t8["act_bytes"]
    assert totals(analyse(graph))["weight_bytes"] == 4 * (params + 1000)  # float32


def test_cli_prints_totals_and_plots(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(mobilenet_v1(), path)
    assert main(["analyse", str(path), "--bits", "8", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    macs, _, _ = hand_counts()
    assert f"{macs:,}" in out
    for png in ("memory.png", "macs.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["analyse", str(path), "--bits", "1"]) == 1
    assert "bit width 1" in capsys.readouterr().err
