import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeq.errors import ConfigError
from edgeq.models import DigitsCNN, mobilenet_v1_3ddfa
from edgeq.train.f2f import propagate_shapes, trace
from edgeq.train.f2f.canonicalise import (
    canonicalise,
    canonicalise_flatten,
    fold_bias_into_bn,
    modularise_activations,
    remove_inplace,
    split_shared_modules,
)


def _traced(model, x):
    gm = trace(copy.deepcopy(model))
    propagate_shapes(gm, x)
    return gm


def _calls(gm, op):
    return [n for n in gm.graph.nodes if n.op == op]


def _randomise_bn(model):
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model


class Functional(nn.Module):
    def forward(self, x):
        a = F.relu(x) + torch.relu(x) + x.relu()
        b = F.relu6(x * 4) + F.leaky_relu(x, 0.2) + F.hardtanh(x * 4, 0.0, 6.0)
        return a + b + F.hardtanh(x)  # hardtanh(-1, 1) has no quantised form: stays


def test_functional_activations_become_modules():
    x = torch.randn(3, 4)
    model = Functional()
    gm = _traced(model, x)
    created = modularise_activations(gm)
    assert created == ["relu", "relu_1", "relu_2", "relu6", "leakyrelu", "relu6_1"]
    kinds = [type(gm.get_submodule(n)).__name__ for n in created]
    assert kinds == ["ReLU", "ReLU", "ReLU", "ReLU6", "LeakyReLU", "ReLU6"]
    assert gm.leakyrelu.negative_slope == 0.2
    left = [n.target for n in _calls(gm, "call_function")]
    assert F.hardtanh in left and F.relu not in left and torch.relu not in left
    assert not any(n.target == "relu" for n in _calls(gm, "call_method"))
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)


class InplaceReaders(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = x * 1  # do not mutate the caller's tensor
        y = F.relu(x, inplace=True)
        z = y * 2
        w = self.act(z)
        return x + w + z  # x and z were mutated in place: they read relu values


def test_inplace_activations_become_out_of_place_keeping_semantics():
    x = torch.randn(4, 5)
    model = InplaceReaders()
    expected = model(x.clone())
    gm = _traced(model, x)
    assert len(remove_inplace(gm)) == 2
    assert gm.act.inplace is False
    modularise_activations(gm)
    torch.testing.assert_close(gm(x.clone()), expected, rtol=0, atol=0)
    assert not any(getattr(m, "inplace", False) for m in gm.modules())


class Flattens(nn.Module):
    def forward(self, x):
        a = torch.flatten(x, 1)
        b = x.flatten(1)
        c = x.view(x.size(0), -1)
        d = x.reshape(x.shape[0], -1)
        e = torch.flatten(x, start_dim=1, end_dim=-1)
        f = torch.flatten(x).reshape(x.size(0), -1)  # from dim 0: the first one stays
        g = x.view(-1, 12)  # constant batch split: stays
        return a + b + c + d + e + f + g


def test_flatten_idioms_become_nn_flatten():
    x = torch.randn(2, 3, 2, 2)
    model = Flattens()
    gm = _traced(model, x)
    created = canonicalise_flatten(gm)
    assert len(created) == 5
    assert all(isinstance(gm.get_submodule(n), nn.Flatten) for n in created)
    left = [(n.op, n.target) for n in gm.graph.nodes if n.op in ("call_function", "call_method")]
    assert ("call_method", "view") in left and ("call_function", torch.flatten) in left
    assert ("call_method", "size") in left  # only the one the untouched reshape still reads
    assert sum(1 for op, t in left if t == "size") == 1
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)


def test_shared_relu_of_3ddfa_blocks_is_split_per_site():
    x = torch.randn(1, 3, 120, 120)
    model = mobilenet_v1_3ddfa(0.25).eval()
    gm = _traced(model, x)
    remove_inplace(gm)
    split = split_shared_modules(gm)
    assert len(split) == 13 and split["dw2_1.relu"] == ["dw2_1.relu", "dw2_1.relu_1"]
    targets = [n.target for n in _calls(gm, "call_module")]
    assert len(targets) == len(set(targets))  # every module is now called exactly once
    assert gm.get_submodule("dw6.relu") is not gm.get_submodule("dw6.relu_1")
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)


class SharedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x):
        return self.conv(self.conv(x))


def test_shared_module_with_weights_is_refused():
    gm = _traced(SharedConv(), torch.randn(1, 1, 2, 2))
    with pytest.raises(ConfigError, match=r"module 'conv' \(Conv2d\) is called at 2 sites"):
        split_shared_modules(gm)


@pytest.mark.parametrize("train", [False, True])
def test_bias_fold_into_bn_is_exact(train):
    x = torch.rand(16, 1, 8, 8)
    model = _randomise_bn(DigitsCNN()).train(train)
    gm = _traced(model, x)
    expected = copy.deepcopy(model)(x)
    old_mean, bias = model.bn1.running_mean.clone(), model.conv1.bias.detach().clone()
    assert fold_bias_into_bn(gm) == [("conv1", "bn1"), ("conv2", "bn2")]
    assert gm.conv1.bias is None and gm.conv2.bias is None
    assert gm.fc.bias is not None  # no BN after it
    if not train:
        torch.testing.assert_close(gm.bn1.running_mean, old_mean - bias)
    torch.testing.assert_close(gm(x), expected, rtol=1e-5, atol=1e-5)


class NoFold(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.bn = nn.BatchNorm2d(2)
        self.lin = nn.Linear(4, 3)
        self.bn1d = nn.BatchNorm1d(3)

    def forward(self, x):
        y = self.conv(x)
        z = self.bn(y) + y  # the conv output has a second reader: bias must stay
        return z.sum(), self.bn1d(self.lin(x.flatten(1)))


def test_bias_stays_when_conv_output_has_other_readers():
    x = torch.randn(3, 2, 1, 2)
    model = _randomise_bn(NoFold()).eval()
    gm = _traced(model, x)
    assert fold_bias_into_bn(gm) == [("lin", "bn1d")]
    assert gm.conv.bias is not None and gm.lin.bias is None
    for got, want in zip(gm(x), model(x), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_canonicalise_reports_every_pass_and_keeps_outputs():
    x = torch.randn(2, 3, 120, 120)
    model = _randomise_bn(mobilenet_v1_3ddfa(0.25)).eval()
    gm = _traced(model, x)
    report = canonicalise(gm)
    assert report["flattened"] == ["flatten"] and report["modularised"] == []
    assert len(report["split"]) == 13 and report["folded_biases"] == []
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)
