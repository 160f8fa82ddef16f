"""edgeq.engine.ptq is deployment side: quantising a model pulls in no torch."""

from tests.test_no_torch import torch_modules_after

RUN = """
import sys
import numpy as np
from edgeq.engine.onnx import import_onnx
from edgeq.engine.ptq import ptq
from tests.engine.ptq.models import calib_arrays, small_cnn
r = ptq(import_onnx(small_cnn()), calib_arrays(8), "kmeans", 4)
r.emulator.run(calib_arrays(2))
"""


def test_ptq_imports_no_torch():
    assert torch_modules_after(RUN) == ""
