"""The reference registry: contents, duplicate refusal, documented rules, attribute checks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import edgeq.engine.backends.reference as reference
from edgeq.engine.backends.reference import KERNELS, register, supported_ops
from edgeq.errors import EdgeqError

EXPECTED_OPS = {
    "Conv",
    "Gemm",
    "MatMul",
    "BatchNormalization",
    "LRN",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Clip",
    "Softmax",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Floor",
    "Concat",
    "Flatten",
    "Reshape",
    "Transpose",
    "Pad",
    "Gather",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Cast",
    "Shape",
    "Constant",
    "RequantShift",
    "HarmonisedAdd",
}


def test_importing_the_package_registers_every_family():
    assert EXPECTED_OPS <= supported_ops()
    assert reference.KERNELS is KERNELS


def test_duplicate_registration_is_refused():
    with pytest.raises(EdgeqError, match="registered twice"):
        register("Conv")(lambda *a, **k: None)
    name = "_TestOnlyOp"
    try:
        register(name)(lambda x: x)
        with pytest.raises(EdgeqError, match="registered twice"):
            register(name)(lambda x: x)
    finally:
        KERNELS.pop(name, None)


@pytest.mark.parametrize("op", sorted(KERNELS))
def test_every_kernel_documents_its_rounding_and_overflow_rule(op):
    doc = (KERNELS[op].fn.__doc__ or "").lower()
    assert "overflow" in doc, f"{op}: docstring does not state the overflow rule"
    assert "round" in doc, f"{op}: docstring does not state the rounding rule"


def test_only_softmax_needs_the_opset():
    assert {op for op, e in KERNELS.items() if e.opset_aware} == {"Softmax"}


def test_unknown_attributes_are_refused_but_dory_annotations_ignored():
    a = np.ones((1, 2), np.int32)
    with pytest.raises(ValueError, match="in1_mul"):
        KERNELS["Add"].fn(a, a, in1_mul=3)
    np.testing.assert_array_equal(KERNELS["Add"].fn(a, a, add_bits=32), a + a)
    w = np.ones((1, 2, 1, 1), np.int8)
    y = KERNELS["Conv"].fn(np.ones((1, 2, 2, 2), np.uint8), w, weight_bits=8, bias_bits=32)
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), 2))


def test_reference_backend_imports_no_torch():
    code = "import sys, edgeq.engine.backends.reference; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
