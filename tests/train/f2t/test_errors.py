"""F2T refuses what it cannot make exact, naming the fx node and what is missing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeq.errors import ConfigError
from edgeq.train.controller import observing
from edgeq.train.f2f import Policy, f2f, unit_input_spec
from edgeq.train.f2t import F2TError, f2t
from edgeq.train.modules import HarmonisedAdd, quant_modules

X = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
UNIT = unit_input_spec()


def _fq(model, input_spec=UNIT, policy=None):
    gm, _ = f2f(model, policy or Policy.uniform(8, "pact"), X[:2], input_spec=input_spec)
    gm.train()
    with torch.no_grad(), observing(gm):
        gm(X)
    for _, m in quant_modules(gm):
        m.start()
    return gm.eval()


class ConvNet(nn.Module):
    """conv -> BN -> act -> conv2 -> flatten -> fc, with a pluggable activation."""

    def __init__(self, act: nn.Module, second_act: bool = True):
        super().__init__()
        self.conv1, self.bn1, self.act = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), act
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.act2 = nn.ReLU() if second_act else nn.Identity()
        self.second_act = second_act
        self.fc = nn.Linear(4 * 64, 3)

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        x = self.act2(x) if self.second_act else x
        return self.fc(torch.flatten(x, 1))


def test_leaky_relu_is_refused_naming_the_node():
    gm = _fq(ConvNet(nn.LeakyReLU(0.1)))
    with pytest.raises(F2TError, match=r"node 'act' \(QuantActivation leaky_relu\): LeakyReLU"):
        f2t(gm, X[:1])


def test_missing_input_quantiser():
    gm = _fq(ConvNet(nn.ReLU()), input_spec=None)
    with pytest.raises(F2TError, match=r"node 'conv1' \(QuantConv2d\): an activation with no "
                                       r"quantiser before a linear op.*'x'.*input_spec"):
        f2t(gm, X[:1])


def test_linear_op_fed_by_batchnorm_without_quantiser():
    class NoAct(ConvNet):
        def forward(self, x):
            x = self.bn1(self.conv1(x))
            return self.fc(torch.flatten(self.act(self.bn2(self.conv2(x))), 1))

    gm = _fq(NoAct(nn.ReLU()))
    with pytest.raises(F2TError, match=r"node 'conv2' \(QuantConv2d\): an activation with no "
                                       r"quantiser before a linear op.*BatchNorm 'bn1'"):
        f2t(gm, X[:1])


def test_flatten_of_pending_batchnorm():
    class NoAct(ConvNet):
        def forward(self, x):
            x = self.act(self.bn1(self.conv1(x)))
            return self.fc(torch.flatten(self.bn2(self.conv2(x)), 1))

    with pytest.raises(F2TError, match=r"node 'flatten_1' \(Flatten 'flatten'\): .*BatchNorm 'bn2' "
                                       "is still pending"):
        f2t(_fq(NoAct(nn.ReLU())), X[:1])


def test_linear_op_fed_by_an_unquantised_float_op():
    class Gated(ConvNet):
        def forward(self, x):
            x = self.act(self.bn1(self.conv1(x)))
            return self.fc(torch.flatten(torch.sigmoid(self.conv2(x)), 1))

    gm = _fq(Gated(nn.ReLU()))
    with pytest.raises(F2TError, match=r"node 'sigmoid' \(sigmoid\): unsupported op"):
        f2t(gm, X[:1])


def test_batchnorm_at_the_output_without_quantiser():
    class EndsInBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.bn(self.conv(x))

    with pytest.raises(F2TError, match=r"node 'bn'.*BatchNorm 'bn' with no quantiser"):
        f2t(_fq(EndsInBN()), X[:1])


def test_unharmonised_scales_are_refused():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.relu = nn.Conv2d(1, 1, 3, padding=1), nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(x)) + x

    gm = _fq(Residual())
    add = next(m for _, m in quant_modules(gm) if isinstance(m, HarmonisedAdd))
    add.harmonise = lambda: None  # a broken harmonisation: input ε drifts from the output
    add.in_quantisers[1].set_eps(add.eps * 2)
    with pytest.raises(F2TError, match=r"node 'add_1' \(HarmonisedAdd 'add'\): .*cannot be "
                                       "harmonised"):
        f2t(gm, X[:1])


def test_unstarted_fq_model_and_non_graph_modules():
    gm, _ = f2f(ConvNet(nn.ReLU()), Policy.uniform(8), X[:2], input_spec=unit_input_spec())
    with pytest.raises(F2TError, match=r"module 'conv1' \(QuantConv2d\) is not quantising"):
        f2t(gm, X[:1])
    with pytest.raises(ConfigError, match="fx.GraphModule"):
        f2t(ConvNet(nn.ReLU()), X[:1])


def test_adaptive_pool_with_unequal_windows():
    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.relu = nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(3)

        def forward(self, x):
            return self.pool(self.relu(self.conv(x)))

    with pytest.raises(F2TError, match=r"node 'pool'.*8×8 to \(3, 3\)"):
        f2t(_fq(Pool()), X[:1])
