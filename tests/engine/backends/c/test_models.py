"""Whole models through the generated C, bit for bit against the reference backend.

Each model is compiled once per session (module-scoped fixtures); the expected outputs
come from the NumPy reference backend (the specification), never from the C code.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine import load
from edgeq.engine.backends.c import compile_model
from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.onnx import import_onnx
from edgeq.engine.tensor_io import read_text_vector
from edgeq.numerics import IntRange
from tests.engine.backends.c.models import tq
from tests.engine.onnx.test_quantlab import _two_layer_model

DRONET = "../shared/fixtures/quantlab/dronet/"


def _reference(graph, x):
    return run_graph(graph, {graph.inputs[0]: x})[graph.outputs[0]]


def _check(graph, tmp_path, x, target="host", batch=None):
    cm = compile_model(graph, tmp_path / "m", target=target, batch=batch or x.shape[0])
    (y,) = cm.run({graph.inputs[0]: x}).values()
    ref = _reference(graph, x)
    assert y.dtype == ref.dtype and y.shape == ref.shape
    np.testing.assert_array_equal(y, ref)
    return cm


@pytest.fixture(scope="module")
def tq_graphs():
    pytest.importorskip("torch")
    return {name: tq(name) for name in ("digits_cnn", "resnet", "concat", "mobilenet")}


@pytest.mark.parametrize("name", ["digits_cnn", "resnet", "concat", "mobilenet"])
def test_f2t_family_bit_exact(tq_graphs, tmp_path, name):
    graph, x = tq_graphs[name]
    cm = _check(graph, tmp_path, x)
    assert cm.arena_bytes >= cm.plan.lower_bound > 0


def test_dronet_fixture_gives_the_golden_output(tmp_path):
    model = load(DRONET + "DRONETV3_ql_integerized.onnx")
    _, x = read_text_vector(DRONET + "input.txt")
    cm = compile_model(model.graph, tmp_path / "dronet")
    (y,) = cm.run({model.graph.inputs[0]: x.astype(np.uint8)}).values()
    assert y.tolist() == [[435, 0]]


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("signed_input", [False, True])
def test_synthetic_quantlab_graphs(tmp_path, bits, signed_input):
    model, x, xr, reference = _two_layer_model(13, bits, signed_input, seed=bits)
    graph = import_onnx(model, input_range=xr)
    cm = compile_model(graph, tmp_path / "ql")
    (y,) = cm.run({"x": x.astype(graph.values["x"].dtype)}).values()
    np.testing.assert_array_equal(y, reference())  # independent Python-integer evaluation
    assert graph.values["x"].quant.range == IntRange.from_bits(8, signed=signed_input)


def test_float_input_is_quantised_by_the_input_rule(tq_graphs, tmp_path):
    """run_model takes float input for a quantised model: round half up, then clip."""
    graph, _ = tq_graphs["digits_cnn"]
    q = graph.values[graph.inputs[0]].quant
    rng = np.random.default_rng(0)
    xf = rng.uniform(-0.2, 1.2, size=(1, 1, 8, 8))
    xf[0, 0, 0, :3] = np.array([0.5, 1.5, 2.5]) * q.eps  # (near-)ties
    cm = compile_model(graph, tmp_path / "f", batch=1)
    (y,) = cm.run({graph.inputs[0]: xf}).values()
    expect = np.clip(np.floor(xf / q.eps + 0.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(y, _reference(graph, expect))


def test_in_process_library_matches_the_reference(tq_graphs, tmp_path):
    """CompiledModel.in_process (the shared library benchmarks/latency.py times beside
    onnxruntime): the reference's output bit for bit, repeated runs included; a wrong
    input shape is a ShapeError naming the compiled shape."""
    from edgeq.errors import ShapeError

    graph, x = tq_graphs["digits_cnn"]
    cm = compile_model(graph, tmp_path / "m", threads=2, batch=x.shape[0])
    model = cm.in_process()
    for _ in range(2):
        model.set_input(x)
        model.run()
        np.testing.assert_array_equal(model.output(), _reference(graph, x))
    with pytest.raises(ShapeError, match="compiled model takes"):
        model.set_input(x[:1])
