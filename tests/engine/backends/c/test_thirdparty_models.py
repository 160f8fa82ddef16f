"""Whole third-party files through the C backend: onnxruntime QDQ/QOperator, NEMO, QONNX.

Each file is imported, compiled (``--target host``; a subset for ``cortex-a72`` under
qemu) and run; the program's outputs must equal the reference backend's bit for bit and
the file's own peer: onnxruntime for QDQ/QOperator, the golden outputs for the NEMO
fixtures, the qonnx executor for QONNX graphs.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgeq.engine import load
from edgeq.engine.backends.c.project import compile_cached
from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.onnx import import_onnx
from edgeq.engine.tensor_io import read_text_vector
from tests.conftest import shared_fixture

ORT_HOST = [("resnet", "QDQ", "U8", True), ("resnet", "QDQ", "S8", False),
            ("concat", "QOperator", "S8", True)]
ORT_A72 = [("resnet", "QDQ", "U8", True)]


@pytest.fixture(scope="session")
def ort_files(tmp_path_factory):
    pytest.importorskip("onnxruntime.quantization")
    pytest.importorskip("torch")
    from tests.engine.onnx.qdq_builder import quantise_all

    return quantise_all(tmp_path_factory.mktemp("tp_qdq"), variants=ORT_HOST)


def _inputs(shape, n=2, scale=1.5):
    return [(np.random.default_rng(s).standard_normal(shape) * scale).astype(np.float32)
            for s in range(n)]


def _check_ort_file(path, target):
    from tests.engine.onnx.qdq_builder import MODELS, ort_session

    graph = import_onnx(path)
    cm = compile_cached(graph, target)
    sess = ort_session(onnx.load(str(path)))
    shape = MODELS[next(k for k in MODELS if path.name.startswith(k))]
    for x in _inputs(shape):
        (got,) = cm.run({"x": x}).values()
        np.testing.assert_array_equal(got, run_graph(graph, {"x": x})["y"])
        np.testing.assert_array_equal(got, sess.run(None, {"x": x})[0])


@pytest.mark.parametrize("variant", ORT_HOST, ids=lambda v: "-".join(map(str, v)))
def test_onnxruntime_file_on_host(ort_files, variant):
    _check_ort_file(ort_files[variant], "host")


@pytest.mark.parametrize("variant", ORT_A72, ids=lambda v: "-".join(map(str, v)))
def test_onnxruntime_file_on_cortex_a72(cross_toolchain, ort_files, variant):
    _check_ort_file(ort_files[variant], "cortex-a72")


def test_qdq_graph_uses_the_thirdparty_kernels(ort_files):
    """The S8 QDQ file keeps float Conv/Add between DequantizeLinear and QuantizeLinear
    (as onnxruntime runs it); its constant weight DequantizeLinears are folded."""
    graph = import_onnx(ort_files[("resnet", "QDQ", "S8", False)])
    cm = compile_cached(graph, "host")
    ops = {op for op in _layer_ops(cm)}
    assert {"QuantizeLinear", "DequantizeLinear", "QLinearRequant", "QLinearAddOrt",
            "QLinearAvgPoolOrt", "Add"} <= ops
    assert sum(n.op == "DequantizeLinear" for n in cm.graph.nodes) < sum(
        n.op == "DequantizeLinear" for n in graph.nodes)


def _layer_ops(cm) -> list[str]:
    return [n.op for n in cm.graph.nodes]


# -- NEMO ------------------------------------------------------------------------------------


def _up_to(graph, value):
    """The graph cut after ``value`` (NEMO's golden output is the last linear layer's)."""
    g = graph.copy()
    last = next(i for i, n in enumerate(g.nodes) if value in n.outputs)
    g.nodes = g.nodes[: last + 1]
    g.outputs = [value]
    g.remove_unused()
    return g


@pytest.mark.parametrize("name", ["Residual_connection_test_1", "dronet_2.0"])
def test_nemo_fixture_reproduces_golden_output(name):
    folder = shared_fixture("nemo", name)
    graph = load(folder / "model_int.onnx").graph
    last_linear = [n for n in graph.nodes if n.op == "MatMul"][-1].outputs[0]
    g = _up_to(graph, last_linear)
    _, x = read_text_vector(folder / "input.txt")  # NEMO text format: lines end in ",\"
    _, golden = read_text_vector(folder / "output.txt")
    x = x.reshape(1, 1, 200, 200).astype(np.uint8)
    (got,) = compile_cached(g, "host").run({g.inputs[0]: x}).values()
    np.testing.assert_array_equal(got.ravel(), golden)
    np.testing.assert_array_equal(got, run_graph(g, {g.inputs[0]: x})[last_linear])


@pytest.mark.parametrize("case", [(3 * 2**8, -128, 127, False, "Cast", (2, 2))])
def test_nemo_requant_div(case):
    from tests.engine.onnx.test_nemo import _expected, _requant_model

    div, lo, hi, int_div, rounding, pool = case
    rng = np.random.default_rng(div)
    w = rng.integers(-60, 61, size=(3, 2, 1, 1))
    kappa, lamda = rng.integers(100, 2048, size=3), rng.integers(-300_000, 300_000, size=3)
    graph = import_onnx(_requant_model(w, kappa, lamda, 37, div, lo, hi, pool, int_div,
                                       rounding))
    assert "RequantDiv" in {n.op for n in graph.nodes}
    x = rng.integers(0, 256, size=(1, 2, 4, 4))
    (got,) = compile_cached(graph, "host").run({"x": x.astype(np.uint8)}).values()
    np.testing.assert_array_equal(got, _expected(x, w, kappa, lamda, 37, div, lo, hi, "trunc",
                                                 pool))


# -- QONNX -----------------------------------------------------------------------------------


def _qonnx_models():
    from tests.engine.onnx.test_qonnx import _float_model, _pow2_model

    return {"pow2": (_pow2_model(np.random.default_rng(7)), (1, 3, 5, 5)),
            "float_v1": (_float_model(np.random.default_rng(1), 1), (1, 2, 6, 6)),
            "float_v2": (_float_model(np.random.default_rng(2), 2), (1, 2, 6, 6))}


def _check_qonnx(name, target):
    from tests.engine.onnx.test_qonnx import _qonnx_exec

    model, shape = _qonnx_models()[name]
    graph = import_onnx(model)
    cm = compile_cached(graph, target)
    for x in _inputs(shape, scale=3.0):
        got, ref, peer = cm.run({"x": x}), run_graph(graph, {"x": x}), _qonnx_exec(model, x)
        for out in graph.outputs:
            np.testing.assert_array_equal(got[out], ref[out])
            np.testing.assert_array_equal(got[out], peer[out])


@pytest.mark.parametrize("name", ["pow2", "float_v1"])  # float_v2: on the Cortex-A72
def test_qonnx_graph_on_host(name):
    _check_qonnx(name, "host")


def test_qonnx_graph_on_cortex_a72(cross_toolchain):
    _check_qonnx("float_v2", "cortex-a72")
