"""The QAT fast paths (cached constants, reused scratch, fused ops) must not leak into an
ONNX export: a network trained a step, then exported twice, gives standard-op files that
onnxruntime runs to the network's own outputs."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from edgeq.models import DigitsCNN
from edgeq.train.controller import calibrate_and_start
from edgeq.train.f2f import Policy, f2f, unit_input_spec


def _export(model, x) -> bytes:
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return buf.getvalue()


@pytest.mark.parametrize("algorithm", ["pact", "ana", "tqt", "ste"])
def test_export_after_a_training_step(algorithm):
    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8)
    gm, _ = f2f(DigitsCNN(), Policy.uniform(8, algorithm), x[:1], input_spec=unit_input_spec())
    calibrate_and_start(gm, x)
    gm.train()
    F.cross_entropy(gm(x), torch.arange(16) % 10).backward()  # fills the fast paths' caches
    gm.eval()
    files = [_export(gm, x[:2]), _export(gm, x[:2])]  # a second trace reuses nothing
    with torch.no_grad():
        want = gm(x).numpy()
    for blob in files:
        ops = {n.op_type for n in onnx.load_from_string(blob).graph.node}
        assert not ops & {"PythonOp", "ATen"}, ops
        sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        (got,) = sess.run(None, {"input": x.numpy()})
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
