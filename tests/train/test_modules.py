"""Fake-quantised modules: weights, activations, ε-harmonised add and concat."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeq.errors import ConfigError, ShapeError
from edgeq.numerics.intrange import IntRange
from edgeq.train.controller import observing
from edgeq.train.modules import (
    HarmonisedAdd,
    HarmonisedConcat,
    QuantActivation,
    QuantConv2d,
    QuantLinear,
    QuantModule,
    quant_modules,
)
from edgeq.train.spec import InitSpec, InqParams, QuantSpec

S4_PC = QuantSpec("pact", n_levels=16, signed=True, granularity="per_channel")


def hand_fq_weight(w, n_levels):
    """Signed per-output-channel minmax: ε_c = max(max w_c / hi, min w_c / lo)."""
    lo, hi = -(n_levels // 2), n_levels - 1 - n_levels // 2
    flat = w.reshape(w.shape[0], -1)
    eps = torch.maximum(flat.amax(1) / hi, flat.amin(1) / lo)
    e = eps.reshape(-1, *([1] * (w.dim() - 1)))
    return eps, e * torch.clamp(torch.floor(w / e + 0.5), lo, hi)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_conv_from_float(groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, padding=1, groups=groups, bias=True)
    q = QuantConv2d.from_float(conv, S4_PC)
    assert isinstance(q, QuantModule) and isinstance(q, nn.Conv2d)
    assert torch.equal(q.weight, conv.weight) and torch.equal(q.bias, conv.bias)
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(q(x), conv(x))  # float before QAT starts
    q.start()
    eps, w_fq = hand_fq_weight(conv.weight.detach(), 16)
    assert torch.allclose(q.weight_eps, eps)
    assert q.weight_eps.shape == (8,)
    assert torch.allclose(q(x), F.conv2d(x, w_fq, conv.bias, padding=1, groups=groups), atol=1e-6)
    ints = q.int_weight()
    assert ints.dtype == torch.int64 and q.weight_range == IntRange.signed(16)
    assert q.weight_range.contains(ints.numpy())
    assert torch.allclose(q.weight_eps.view(-1, 1, 1, 1) * ints, w_fq)


def test_depthwise_conv_per_tensor():
    conv = nn.Conv2d(6, 6, 3, groups=6, bias=False)
    q = QuantConv2d.from_float(conv, QuantSpec("ste", n_levels=256, signed=True))
    assert q.bias is None and q.weight_eps.shape == ()
    q.start()
    y = q(torch.randn(1, 6, 5, 5))
    assert y.shape == (1, 6, 3, 3)


def test_linear_from_float_and_backward():
    torch.manual_seed(1)
    lin = nn.Linear(5, 3)
    q = QuantLinear.from_float(lin, S4_PC)
    q.start()
    eps, w_fq = hand_fq_weight(lin.weight.detach(), 16)
    x = torch.randn(4, 5)
    y = q(x)
    assert torch.allclose(y, F.linear(x, w_fq, lin.bias), atol=1e-6)
    y.sum().backward()
    assert q.weight.grad is not None and q.weight_quantiser.bound.grad is not None
    assert q.weight_quantiser.bound.grad.shape == (3,)


def test_inq_linear_exposes_codebook():
    spec = QuantSpec("inq", n_levels=8, signed=True, params=InqParams(schedule=((0, 1.0),)))
    q = QuantLinear.from_float(nn.Linear(4, 2), spec)
    q.start()
    q.set_epoch(0)
    ints = q.int_weight()
    assert set(ints.flatten().tolist()) <= {-4, -2, -1, 0, 1, 2, 4}
    assert q.weight_levels().tolist() == [-4, -2, -1, 0, 1, 2, 4]
    assert torch.allclose(q(torch.eye(4)).detach() - q.bias.detach(), (q.weight_eps * ints).T)


@pytest.mark.parametrize(
    ("kind", "fn"),
    [
        ("relu", F.relu),
        ("relu6", F.relu6),
        ("leaky_relu", lambda x: F.leaky_relu(x, 0.1)),
        ("identity", lambda x: x),
    ],
)
def test_activation(kind, fn):
    torch.manual_seed(2)
    signed = kind in ("leaky_relu", "identity")
    act = QuantActivation(kind, QuantSpec("pact", n_levels=256, signed=signed), negative_slope=0.1)
    x = torch.randn(64) * 4
    act.train()
    assert torch.equal(act(x), fn(x))  # float and observing before start
    act.start()
    a, b = fn(x).min(), fn(x).max()
    r = act.range
    eps = max(float(b) / r.hi, float(a) / r.lo) if signed else float(b) / r.hi
    assert float(act.eps) == pytest.approx(eps, rel=1e-6) and act.eps.shape == ()
    y = act(x)
    q = torch.round(y / act.eps)
    assert torch.allclose(y, q * act.eps) and r.contains(q.detach().numpy())
    assert torch.allclose(q, torch.clamp(torch.floor(fn(x) / act.eps + 0.5), r.lo, r.hi))


def test_activation_lazy_init_from_first_batch():
    act = QuantActivation("relu", QuantSpec("ste", n_levels=16))
    act.start()  # nothing observed: ε comes from the first batch
    assert not act.initialised
    act(torch.tensor([0.0, 1.5, 3.0]))
    assert float(act.eps) == pytest.approx(0.2)


def test_activation_without_eps_says_so():
    with pytest.raises(ConfigError, match="no ε yet"):
        _ = QuantActivation("relu", QuantSpec()).eps


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: QuantActivation("gelu", QuantSpec()), "gelu"),
        (lambda: QuantActivation("relu", QuantSpec(granularity="per_channel")), "per_tensor"),
        (lambda: QuantActivation("relu", QuantSpec("inq", 8, True)), "weights only"),
        (lambda: HarmonisedAdd(0, QuantSpec()), "n_inputs"),
        (lambda: QuantLinear(2, 2, spec={"algorithm": "pact"}), "QuantSpec"),
    ],
)
def test_bad_configuration(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def harmonised_expectation(xs, eps, r, combine):
    ints = [torch.clamp(torch.floor(x / eps + 0.5), r.lo, r.hi) for x in xs]
    return eps * torch.clamp(combine(ints), r.lo, r.hi)


def test_harmonised_add():
    torch.manual_seed(3)
    add = HarmonisedAdd(3, QuantSpec("pact", n_levels=256, signed=True))
    xs = [torch.randn(10), torch.randn(10) * 3, torch.randn(10) * 0.1]
    add.train()
    assert torch.equal(add(*xs), xs[0] + xs[1] + xs[2])
    add.start()
    y = add(*xs)
    eps = add.eps
    assert all(torch.equal(e, eps) for e in add.input_eps)
    want = harmonised_expectation(xs, eps, add.range, lambda t: t[0] + t[1] + t[2])
    assert torch.allclose(y, want, atol=1e-6)
    y.sum().backward()  # PACT bound receives gradient from the output quantiser


def test_harmonise_follows_learned_eps():
    add = HarmonisedAdd(2, QuantSpec("pact", n_levels=16, signed=True))
    add.start()
    x = torch.tensor([0.5, -1.0])
    add(x, x)
    with torch.no_grad():
        add.quantiser.bound.mul_(2)
    add(x, x)
    assert all(torch.equal(e, add.eps) for e in add.input_eps)


def test_harmonised_concat():
    cat = HarmonisedConcat(2, 1, QuantSpec("tqt", n_levels=16, signed=False))
    a, b = torch.rand(2, 3) * 2, torch.rand(2, 4) * 5
    cat.train()
    assert torch.equal(cat(a, b), torch.cat([a, b], 1))
    cat.start()
    y = cat(a, b)
    assert y.shape == (2, 7)
    want = harmonised_expectation([a, b], cat.eps, cat.range, lambda t: torch.cat(t, 1))
    assert torch.allclose(y, want, atol=1e-6)


def test_wrong_number_of_inputs():
    with pytest.raises(ShapeError, match="expects 2 inputs"):
        HarmonisedAdd(2, QuantSpec())(torch.ones(1))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        spec_a = QuantSpec("pact", 256, init=InitSpec("percentile", percentile=99.0))
        self.conv = QuantConv2d.from_float(nn.Conv2d(1, 2, 3), S4_PC)
        self.act = QuantActivation("relu", spec_a)
        self.add = HarmonisedAdd(2, QuantSpec("ste", 256))

    def forward(self, x):
        y = self.act(self.conv(x))
        return self.add(y, y)


def test_observing_context_and_state_dict():
    torch.manual_seed(4)
    net = Net().eval()
    assert [n for n, _ in quant_modules(net)] == ["conv", "act", "add"]
    x = torch.randn(8, 1, 6, 6)
    with observing(net):
        assert torch.equal(net(x), 2 * F.relu(net.conv(x)))
    assert net.act.initialised and net.add.initialised and not net.act.quant_enabled
    for _, m in quant_modules(net):
        m.start()
    y = net(x)
    assert torch.allclose(y, torch.round(y / net.add.eps) * net.add.eps)

    clone = Net()
    clone.load_state_dict(net.state_dict())
    assert clone.act.quant_enabled and torch.equal(clone.act.eps, net.act.eps)
    assert torch.equal(clone.eval()(x), y)


def test_quant_enabled_follows_loaded_state_dict():
    """The flag's plain-attribute mirror follows load_state_dict both ways."""
    spec = QuantSpec("pact", 256)
    src, dst = QuantActivation("relu", spec), QuantActivation("relu", spec)
    src.start()
    dst.load_state_dict(src.state_dict())
    assert dst.quant_enabled
    src.stop()
    dst.load_state_dict(src.state_dict())
    assert not dst.quant_enabled and not bool(dst._quant_enabled)
