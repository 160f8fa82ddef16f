"""Float ONNX written by torch.onnx.export (legacy and dynamo) imports and matches PyTorch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeq.engine import load  # noqa: E402
from edgeq.models import mobilenet_v1_3ddfa  # noqa: E402


def _export(model, x, path, dynamo, opset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=dynamo, opset_version=opset,
                          input_names=["input"], output_names=["params"])


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    model = mobilenet_v1_3ddfa(width=1.0).eval()
    # Non-trivial BatchNorm statistics, so folding errors would show.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model


@pytest.mark.parametrize("dynamo,opset", [(False, 13), (True, 18)])
def test_mobilenet_3ddfa_matches_pytorch(tmp_path, mobilenet, dynamo, opset):
    x = torch.randn(2, 3, 120, 120, generator=torch.Generator().manual_seed(1))
    path = tmp_path / f"mb1_{dynamo}.onnx"
    _export(mobilenet, x, path, dynamo, opset)
    with torch.no_grad():
        expected = mobilenet(x).numpy()
    m = load(path)
    assert m.inputs[0].shape[1:] == (3, 120, 120)
    (got,) = m.run({m.inputs[0].name: x.numpy()}).values()
    assert got.shape == (2, 62)
    rel = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
    assert rel < 1e-4, rel


def test_legacy_exporter_at_opset_21(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 3),
                              torch.nn.Softmax(dim=1)).eval()
    x = torch.randn(1, 1, 8, 8)
    _export(net, x, tmp_path / "s.onnx", False, 21)
    got = load(tmp_path / "s.onnx").run({"input": x.numpy()})["params"]
    np.testing.assert_allclose(got, net(x).detach().numpy(), rtol=1e-5, atol=1e-6)
