"""Cortex-A72 builds under qemu, float graphs, batches, and mixed backend specs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.engine import load
from edgeq.engine.backends.c import compile_model
from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.model import Model
from edgeq.engine.tensor_io import read_text_vector
from tests.engine.backends.c.models import tq

DRONET = "../shared/fixtures/quantlab/dronet/"


def _ref(graph, x):
    return run_graph(graph, {graph.inputs[0]: x})[graph.outputs[0]]


def test_dronet_on_cortex_a72(cross_toolchain, tmp_path):
    model = load(DRONET + "DRONETV3_ql_integerized.onnx")
    _, x = read_text_vector(DRONET + "input.txt")
    cm = compile_model(model.graph, tmp_path / "a72", target="cortex-a72")
    with open(cm.binary, "rb") as f:
        assert f.read(20)[18] == 0xB7  # ELF e_machine EM_AARCH64
    (y,) = cm.run({model.graph.inputs[0]: x.astype(np.uint8)}).values()
    assert y.tolist() == [[435, 0]]


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_families_on_cortex_a72(cross_toolchain, tmp_path, name):
    pytest.importorskip("torch")
    graph, x = tq(name)
    cm = compile_model(graph, tmp_path / name, target="cortex-a72", batch=2, threads=2)
    (y,) = cm.run({graph.inputs[0]: x}).values()
    np.testing.assert_array_equal(y, _ref(graph, x))


def test_batch_eight_two_threads(tmp_path):
    """Batch 8 of the concat net on 2 threads: one build, every image bit-exact."""
    pytest.importorskip("torch")
    graph, x = tq("concat")
    x8 = np.concatenate([x] * 4)
    x8[2:] = np.random.default_rng(1).integers(0, 256, x8[2:].shape).astype(x8.dtype)
    cm = compile_model(graph, tmp_path / "b8", batch=8, threads=2)
    (y,) = cm.run({graph.inputs[0]: x8}).values()
    np.testing.assert_array_equal(y, _ref(graph, x8))


def _float_model(path):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32), n) for n, s in [
        ("w1", (4, 3, 3, 3)), ("b1", (4,)), ("w2", (4, 1, 3, 3)), ("wg", (5, 8)), ("bg", (5,))]]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=4),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Add", ["r2", "r1"], ["s"]),
        helper.make_node("MaxPool", ["s"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["p", "p"], ["cc"], axis=1),
        helper.make_node("GlobalAveragePool", ["cc"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["o"], transB=1),
        helper.make_node("Sigmoid", ["o"], ["y"]),
    ]
    g = helper.make_graph(nodes, "fp", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 12, 12])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 5])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_float_graph(tmp_path):
    _float_model(tmp_path / "fp.onnx")
    model = load(tmp_path / "fp.onnx")
    x = np.random.default_rng(2).normal(0, 1, (1, 3, 12, 12)).astype(np.float32)
    cm = compile_model(model.graph, tmp_path / "fp")
    (y,) = cm.run({"x": x}).values()
    ref = _ref(model.graph, x)
    assert y.dtype == ref.dtype == np.float32
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", ["default=c,stem_0=reference", "default=reference,HarmonisedAdd=c",
                                  "default=c,layer1_add=reference"])
def test_mixed_backend_specs(spec):
    pytest.importorskip("torch")
    graph, x = tq("resnet")
    m = Model(graph, backend=spec)
    assert set(m._assignment.values()) == {"c", "reference"}
    (y,) = m.run({graph.inputs[0]: x}).values()
    np.testing.assert_array_equal(y, _ref(graph, x))
