import pytest
import torch
from torch import nn

from edgeq.errors import ConfigError
from edgeq.models import DigitsCNN
from edgeq.train.f2f import propagate_shapes, trace


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace this
            return x
        return -x


class GatedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.conv(x))


class TopLevelBranch(nn.Module):
    def forward(self, x):
        return x if x.mean() > 0 else x * 2


def test_untraceable_submodule_error_names_module_line_and_fix():
    with pytest.raises(ConfigError) as info:
        trace(GatedNet())
    msg = str(info.value)
    assert "module 'gate' (Gate)" in msg
    assert "if x.sum() > 0" in msg and "test_f2f_trace.py" in msg
    assert "leaf_modules=['gate']" in msg
    assert "\n" not in msg


def test_leaf_module_makes_it_traceable():
    gm = trace(GatedNet(), leaf_modules=["gate"])
    called = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    assert called == ["conv", "gate"]
    gm = trace(GatedNet(), leaf_modules=[Gate])
    assert [n.target for n in gm.graph.nodes if n.op == "call_module"] == ["conv", "gate"]


def test_untraceable_top_level_forward():
    with pytest.raises(ConfigError, match="top-level forward.*x.mean"):
        trace(TopLevelBranch())


def test_propagate_shapes_leaves_bn_statistics_and_modes_alone():
    model = DigitsCNN().train()
    gm = trace(model)
    before = model.bn1.running_mean.clone()
    propagate_shapes(gm, torch.rand(5, 1, 8, 8))
    assert torch.equal(model.bn1.running_mean, before)
    assert gm.training and gm.bn1.training
    shapes = {n.name: tuple(n.meta["tensor_meta"].shape) for n in gm.graph.nodes
              if "tensor_meta" in n.meta}
    assert shapes["relu2"] == (5, 32, 4, 4) and shapes["fc"] == (5, 10)
