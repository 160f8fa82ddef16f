"""The small float CNN of the PTQ tests, its calibration arrays and statistics."""

from __future__ import annotations

import pytest

from edgeq.engine.onnx.importer import import_onnx
from edgeq.engine.ptq.calibration import calibrate
from tests.engine.ptq.models import calib_arrays, small_cnn


@pytest.fixture(scope="module")
def float_graph():
    return import_onnx(small_cnn())


@pytest.fixture(scope="module")
def arrays():
    return calib_arrays()


@pytest.fixture(scope="module")
def calibration(float_graph, arrays):
    return calibrate(float_graph, arrays, 64, progress=False)
