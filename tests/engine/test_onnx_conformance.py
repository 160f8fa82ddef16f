"""The ONNX backend node test suite, run through edgeq's importer and reference backend.

onnx >= 1.23 builds the node cases in memory (no data files). Every case of every op in
the issue's list is included; the exclusions below each give their reason. Count with:
``python -m pytest tests/engine/test_onnx_conformance.py -q -rN``.
"""

from __future__ import annotations

import re
import warnings

import onnx
import onnx.backend.base
import onnx.backend.test

from edgeq.engine.model import Model
from edgeq.engine.onnx import import_onnx

# One anchored pattern per op family: (case-name regex, op).
INCLUDED = [
    r"test_(basic_)?conv_with_.*",
    r"test_basic_conv_without_padding",
    r"test_gemm_.*",
    r"test_matmul_.*",
    r"test_batchnorm_.*",
    r"test_relu",
    r"test_leakyrelu.*",
    r"test_sigmoid.*",
    r"test_tanh.*",
    r"test_clip.*",
    r"test_maxpool_.*",
    r"test_averagepool_.*",
    r"test_globalaveragepool.*",
    r"test_lrn.*",
    r"test_add(_.*)?",
    r"test_sub(_.*)?",
    r"test_mul(_.*)?",
    r"test_div(_.*)?",
    r"test_floor.*",
    r"test_abs",
    r"test_neg.*",
    r"test_concat_.*",
    r"test_softmax_(axis_\d|default_axis|example|large_number|negative_axis).*",
    r"test_flatten_.*",
    r"test_reshape_.*",
    r"test_transpose_.*",
    r"test_(constant|edge|reflect|wrap)_pad.*",
    r"test_gather_(0|1|2d_indices|negative_indices)",
    r"test_squeeze(_negative_axes)?",
    r"test_unsqueeze_.*",
    r"test_constant",
    r"test_identity",
    r"test_cast_(FLOAT|FLOAT16|DOUBLE)_to_(FLOAT|FLOAT16|DOUBLE)",
    r"test_shape.*",
]

# Excluded cases of the ops above, with the reason.
EXCLUDED = {
    r".*_expanded.*": "function-body expansions test other ops (Constant/Less/Where/...)",
    r"test_batchnorm_.*_training_mode": "BatchNormalization is inference-only in the engine",
    r"test_maxpool_with_argmax_.*": "the Indices output of MaxPool is not supported",
}


class EdgeqRep(onnx.backend.base.BackendRep):
    def __init__(self, model: Model):
        self.model = model

    def run(self, inputs, **kwargs):
        names = self.model.graph.inputs
        if isinstance(inputs, dict):
            feeds = inputs
        else:
            feeds = dict(zip(names, inputs, strict=False))
        out = self.model.run(feeds)
        return [out[n] for n in self.model.graph.outputs]


class EdgeqBackend(onnx.backend.base.Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs):
        return EdgeqRep(Model(import_onnx(model)))

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the case generators warn about float overflow
    backend_test = onnx.backend.test.BackendTest(EdgeqBackend, __name__)
backend_test.include("^(" + "|".join(INCLUDED) + ")_cpu$")
for pattern in EXCLUDED:
    backend_test.exclude("^" + pattern + "_cpu$")

def _only_listed_ops(cases: dict) -> dict:
    """Drop the generated tests of ops outside the list (they would show as ~3800 skips);
    the excluded cases of listed ops stay, skipped with their reason."""
    selected = re.compile("^(" + "|".join(INCLUDED) + ")_cpu$")
    for cls in cases.values():
        for name in [n for n in vars(cls) if n.startswith("test_")]:
            if not selected.match(name):
                delattr(cls, name)
    return cases


globals().update(_only_listed_ops(backend_test.test_cases))


def test_every_listed_op_has_cases():
    """The include list must select cases: a typo would silently test nothing."""
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = [c.name for c in load_model_tests(kind="node")]
    for pattern in INCLUDED:
        assert any(re.fullmatch(pattern, n) for n in names), pattern
