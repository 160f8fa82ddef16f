"""Clustered activations (DESIGN §3.8): an activation requantised to its codebook's grid
and decoded by threshold steps to the nearest codebook entry — exact on the reference
backend, in the emulation, through an ONNX round trip and on the C backend; memory
counted at the index width."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.engine import load
from edgeq.engine.analysis import layer_table
from edgeq.engine.ir import Graph, QuantInfo, Value
from edgeq.engine.model import Model
from edgeq.engine.onnx.exporter import export_onnx
from edgeq.engine.ptq import PTQConfig, ptq
from edgeq.engine.ptq.config import VarQuant
from edgeq.engine.ptq.lower import _requant_target
from edgeq.engine.ptq.plan import make_plan
from edgeq.engine.ptq.resolve import decode
from edgeq.errors import ConfigError
from edgeq.numerics import IntRange
from tests.engine.ptq.models import calib_arrays


def nearest(q: int, book: list[int]) -> int:
    """The nearest codebook entry, ties to the lower one (Python integers)."""
    return min(sorted(book), key=lambda c: (abs(q - c), c))


def decoder_graph(book: tuple[int, ...], signed: bool = True) -> Graph:
    """x (integers on an 8-bit grid) -> the lowering's decoder -> y."""
    rng = IntRange.from_bits(8, signed)
    dtype = np.dtype(np.int8 if signed else np.uint8)
    g = Graph([], {"y": Value("y", ("N", 5), dtype)}, [], ["y"], name="decoder")
    vq = VarQuant("kmeans", 3, fl=0, codebook=book, signed=signed)
    fine, nodes = _requant_target(g, "y", vq)
    g.nodes, g.inputs = nodes, [fine]
    assert g.values[fine].quant == QuantInfo(rng, 1.0)
    g.validate()
    return g


books = st.lists(st.integers(-128, 127), min_size=1, max_size=8, unique=True).map(
    lambda b: tuple(sorted(b)))


@settings(max_examples=60, deadline=None)
@given(book=books, q=st.lists(st.integers(-128, 127), min_size=5, max_size=5))
def test_threshold_decoder_is_the_nearest_entry(book, q):
    expected = [nearest(v, list(book)) for v in q]
    assert decode(np.array(q), book).tolist() == expected
    g = decoder_graph(book)
    x = np.array([q], dtype=np.int8)
    y = Model(g).run({g.inputs[0]: x})["y"]
    assert y.tolist() == [expected]
    assert g.values["y"].quant.codebook == book


def clustered_config(graph, methods, bits=3) -> PTQConfig:
    layers = make_plan(graph).layers
    return PTQConfig.from_json({"layers": {
        x.name: {"activations": {"method": m, "bits": bits}}
        for x, m in zip(layers, methods * len(layers), strict=False)}})


@pytest.fixture(scope="module")
def clustered(float_graph, arrays, calibration):
    """kmeans 4-bit weights; every layer output clustered at 3 bits (all three methods)."""
    cfg = clustered_config(float_graph, ["kmeans", "kmeans-linear", "kmeans-gauss"])
    return ptq(float_graph, arrays, "kmeans", 4, config=cfg, cal=calibration)


def test_integer_ir_equals_emulation_and_values_are_codebook_entries(float_graph, clustered,
                                                                    arrays):
    x = arrays["x"]
    g = clustered.graph
    out = Model(g).run({"x": x})["logits"]
    assert np.array_equal(out * g.values["logits"].quant.eps,
                          clustered.emulator.run({"x": x})["logits"])
    book = g.values["logits"].quant.codebook
    assert len(book) <= 8 and set(np.unique(out)) <= set(book)
    for layer in make_plan(float_graph).layers:  # every layer output carries a resolved codebook
        vq = clustered.config.layers[layer.name].activations
        assert vq.codebook is not None and len(vq.codebook) <= 8
        assert g.values[layer.output].quant.codebook == tuple(sorted(vq.codebook))


def test_onnx_round_trip_keeps_codebooks_and_integers(clustered, arrays, tmp_path):
    path = tmp_path / "clustered.onnx"
    export_onnx(clustered.graph, path)
    back = load(path)
    x = arrays["x"]
    ref = Model(clustered.graph).run({"x": x})["logits"]
    assert np.array_equal(back.run({"x": x})["logits"], ref)
    for name in ("r1", "logits"):
        assert back.graph.values[name].quant == clustered.graph.values[name].quant


def test_memory_counts_the_index_width(clustered):
    rows = {r.name: r for r in layer_table(clustered.graph)}
    decoder = next(n for n in clustered.graph.nodes if n.outputs == ["r1"])
    # r1: 4×8×8 elements per sample at a 3-bit index (the 8-bit grid value is transient)
    assert rows[decoder.name].act_bytes == (4 * 8 * 8 * 3 + 7) // 8


def test_clustering_beats_fixed_point_at_3_bits(float_graph, arrays, calibration):
    """Optimal k-means on the 8-bit grid has a lower activation L2 than the best 3-bit
    dynamic fixed point on every layer output of the small CNN."""
    plain = ptq(float_graph, arrays, "dynamic", 3, cal=calibration)
    km = ptq(float_graph, arrays, "dynamic", 3, cal=calibration,
             config=clustered_config(float_graph, ["kmeans"]))
    for layer, errs in km.l2.items():
        assert errs["activations"] < plain.l2[layer]["activations"], layer


@pytest.mark.parametrize(("cfg", "match"), [
    ({"inputs": {"x": {"method": "kmeans", "bits": 4}}}, "inputs.x.method: kmeans: a graph input"),
    ({"layers": {"conv1": {"activations": {"method": "kmeans", "bits": 9}}}},
     r"layers.conv1.activations.bits: a clustered activation has at most 8"),
])
def test_bad_clustered_config(cfg, match):
    with pytest.raises(ConfigError, match=match):
        PTQConfig.from_json(cfg)


@pytest.fixture(scope="module")
def gcc(tmp_path_factory):
    if shutil.which("gcc") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("gcc is not installed")
        pytest.skip("gcc is not installed: no C backend")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


def test_c_backend_is_bit_exact(gcc, clustered):
    x = calib_arrays(6, seed=9)
    c = Model(clustered.graph, backend="c")
    assert set(c._assignment.values()) == {"c"}
    ref = Model(clustered.graph).run(x)
    got = c.run(x)
    for name, a in ref.items():
        assert got[name].dtype == a.dtype and np.array_equal(got[name], a), name
