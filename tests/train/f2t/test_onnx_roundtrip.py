"""TQ -> to_ir() -> export_onnx (both dialects) -> edgeq.engine.load: bit for bit.

ONNX files carry integers in float32, so the conversion keeps every requantisation
constant float32-exact (``significant_bits=24``), at no cost in fidelity.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine import load
from edgeq.errors import IntegerOverflowError
from edgeq.train.f2t import f2t
from tests.train.f2t.families import DIGITS_FAMILIES, family

exporter = pytest.importorskip("edgeq.engine.onnx.exporter")


@pytest.mark.parametrize("dialect", ["edgeq", "dory"])
@pytest.mark.parametrize("name", [*DIGITS_FAMILIES, "mobilenet"])
def test_onnx_round_trip(tmp_path, name, dialect):
    gm, example, (x, _) = family(name)
    tq = f2t(gm, example, significant_bits=24)
    x_int = tq.quantise_input(x[:8])
    path = tmp_path / f"{name}.onnx"
    exporter.export_onnx(tq.to_ir(), path, dialect=dialect)
    model = load(path)
    (out,) = model.run({model.graph.inputs[0]: x_int.numpy()}).values()
    np.testing.assert_array_equal(np.asarray(out).astype(np.int64), tq(x_int).numpy())


def test_default_widths_are_not_float32_exact(tmp_path):
    """Exact 32-bit multipliers do not fit float32: the exporter refuses, not rounds."""
    gm, example, _ = family("digits_cnn")
    with pytest.raises(IntegerOverflowError, match="float32"):
        exporter.export_onnx(f2t(gm, example).to_ir(), tmp_path / "m.onnx")


@pytest.mark.parametrize("name", [*DIGITS_FAMILIES, "mobilenet"])
def test_output_eps_survives_the_edgeq_file(tmp_path, name):
    """The output is an accumulator (no IntRange, so no QuantInfo): its ε travels in the
    annotations' ``eps`` record, and the loaded graph's ``meta["eps"]`` holds F2T's value
    bit for bit — so eps * output is the float network's output."""
    gm, example, (x, _) = family(name)
    tq = f2t(gm, example, significant_bits=24)
    graph = tq.to_ir()
    out_name = graph.outputs[0]
    assert graph.values[out_name].quant is None  # what made the ε need the record
    path = tmp_path / f"{name}.onnx"
    exporter.export_onnx(graph, path, dialect="edgeq")
    model = load(path)
    eps = tq.output_eps  # F2T's own ε (a tensor), not the graph's record
    expect = float(eps) if eps.dim() == 0 else eps.tolist()
    assert model.graph.meta["eps"][out_name] == expect
    assert model.graph.meta["eps_axis"] == graph.meta["eps_axis"]
    x_int = tq.quantise_input(x[:4])
    (out,) = model.run({model.graph.inputs[0]: x_int.numpy()}).values()
    meta_eps = np.asarray(model.graph.meta["eps"][out_name], np.float64)
    got = np.asarray(out, np.float64) * meta_eps.reshape((1, -1) if meta_eps.ndim else ())
    np.testing.assert_allclose(got, tq.dequantise(tq(x_int)).numpy(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("bad, message", [
    ({"values": {"OUT": -1.0}, "axis": {}}, "positive finite"),
    ({"values": {"OUT": [0.1, float("nan")]}, "axis": {}}, "positive finite"),
    ({"values": {"OUT": 0.1}, "axis": {"OUT": 1}}, "eps axis"),
    ({"values": {"nowhere": 0.1}, "axis": {}}, "'nowhere'"),
    ([0.1], "'eps' must hold"),
])
def test_bad_eps_record_is_refused(tmp_path, bad, message):
    import json

    import onnx

    from edgeq.errors import ModelFileError

    gm, example, _ = family("digits_cnn")
    graph = f2t(gm, example, significant_bits=24).to_ir()
    model = exporter.to_onnx(graph, dialect="edgeq")
    prop = next(p for p in model.metadata_props if p.key == "edgeq.annotations")
    data = json.loads(prop.value)
    text = json.dumps(bad).replace("OUT", graph.outputs[0])
    data["eps"] = json.loads(text.replace("NaN", '"nan"')) if "NaN" in text else json.loads(text)
    prop.value = json.dumps(data)
    onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(ModelFileError, match=message):
        load(tmp_path / "bad.onnx")
