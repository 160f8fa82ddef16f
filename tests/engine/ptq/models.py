"""Small float ONNX models for the PTQ tests, built with onnx.helper (no torch)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def small_cnn(seed: int = 0, opset: int = 17) -> onnx.ModelProto:
    """x[N,1,8,8] -> conv1+relu -> maxpool -> conv2+relu -> conv3 (+ residual) + relu
    -> flatten -> gemm (transB) -> logits[N,10]."""
    rng = np.random.default_rng(seed)

    def t(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32),
                                       name)

    inits = [t("w1", 4, 1, 3, 3, scale=0.5), t("b1", 4, scale=0.1),
             t("w2", 8, 4, 3, 3), t("b2", 8, scale=0.1),
             t("w3", 8, 8, 3, 3, scale=0.15), t("b3", 8, scale=0.05),
             t("wf", 10, 8 * 4 * 4, scale=0.1), t("bf", 10, scale=0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c3", "r2"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r3"], name="relu3"),
        helper.make_node("Flatten", ["r3"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def with_softmax(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with a Softmax after the logits (an op PTQ does not quantise)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    g.node.append(helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10]))
    return m


def calib_arrays(n: int = 64, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.uniform(0, 1, (n, 1, 8, 8)).astype(np.float32)}


def gap_cnn(size: int = 8, seed: int = 2, torch_style: bool = False) -> onnx.ModelProto:
    """x[N,2,size,size] -> conv+relu -> GlobalAveragePool -> flatten -> gemm -> [N,5].

    ``torch_style``: as torch.onnx.export writes it: the conv weight behind an Identity,
    and the flatten as ``Reshape(g, Concat(Unsqueeze(Gather(Shape(g), 0)), [-1]))``."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((6, 2, 3, 3)) * 0.4).astype(np.float32),
                                     "w"),
             numpy_helper.from_array((rng.standard_normal(6) * 0.1).astype(np.float32), "b"),
             numpy_helper.from_array((rng.standard_normal((6, 5)) * 0.5).astype(np.float32), "wf")]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "wf"], ["y"], name="fc"),
    ]
    if torch_style:
        nodes[0].input[1] = "w_id"
        nodes.insert(0, helper.make_node("Identity", ["w"], ["w_id"], name="w_identity"))
        inits += [numpy_helper.from_array(np.array(0, np.int64), "zero"),
                  numpy_helper.from_array(np.array([0], np.int64), "axis0"),
                  numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
        nodes[-2:-1] = [
            helper.make_node("Shape", ["g"], ["shape"], name="shape"),
            helper.make_node("Gather", ["shape", "zero"], ["n"], name="gather", axis=0),
            helper.make_node("Unsqueeze", ["n", "axis0"], ["n1"], name="unsqueeze"),
            helper.make_node("Concat", ["n1", "minus1"], ["target"], name="concat", axis=0),
            helper.make_node("Reshape", ["g", "target"], ["f"], name="reshape"),
        ]
    graph = helper.make_graph(
        nodes, "gap_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def small_mobilenet(size: int = 16, seed: int = 3, classes: int = 6) -> onnx.ModelProto:
    """A MobileNetV1 in miniature: conv3x3/2 + relu, two depthwise-separable blocks (the
    second strided), GlobalAveragePool, flatten, gemm -> [N, classes]."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(name, shape, scale):
        inits.append(numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def conv(x, name, cin, cout, k, stride, group=1):
        w = const(f"{name}.w", (cout, cin // group, k, k), (2.0 / (k * k * cin / group)) ** 0.5)
        b = const(f"{name}.b", (cout,), 0.1)
        p = k // 2
        nodes.append(helper.make_node("Conv", [x, w, b], [f"{name}.y"], name=name, group=group,
                                      kernel_shape=[k, k], strides=[stride, stride],
                                      pads=[p, p, p, p]))
        nodes.append(helper.make_node("Relu", [f"{name}.y"], [f"{name}.r"], name=f"{name}.relu"))
        return f"{name}.r"

    h = conv("x", "conv0", 3, 8, 3, 2)
    h = conv(h, "dw1", 8, 8, 3, 1, group=8)
    h = conv(h, "pw1", 8, 16, 1, 1)
    h = conv(h, "dw2", 16, 16, 3, 2, group=16)
    h = conv(h, "pw2", 16, 16, 1, 1)
    nodes += [helper.make_node("GlobalAveragePool", [h], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
              helper.make_node("Gemm", ["flat", const("fc.w", (classes, 16), 0.3),
                                        const("fc.b", (classes,), 0.1)], ["y"], name="fc",
                               transB=1)]
    graph = helper.make_graph(
        nodes, "small_mobilenet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
