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
