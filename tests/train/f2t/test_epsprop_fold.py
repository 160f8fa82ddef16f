"""ε propagation and folding on tiny hand-computed cases (expected values by hand)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeq.errors import IntegerOverflowError
from edgeq.numerics import IntRange
from edgeq.train.f2f import Policy, Rule, f2f
from edgeq.train.f2t import f2t
from edgeq.train.f2t.epsprop import (
    accumulator,
    linear_eps,
    pooled,
    quantised,
    requant_reals,
    with_batchnorm,
)
from edgeq.train.f2t.fold import (
    F2TOptions,
    activation_bounds,
    bn_fold,
    check_accumulator,
    integer_bias,
    linear_bound,
    requant_params,
)
from edgeq.train.f2t.tq import IntLinear, RequantShift
from edgeq.train.modules import quant_modules
from edgeq.train.spec import InitSpec, QuantSpec

F64 = torch.float64


def t(*v):
    return torch.tensor(v if len(v) > 1 else v[0], dtype=F64)


def test_bn_fold_by_hand():
    bn = nn.BatchNorm1d(2, eps=1.0).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, -1.0]))
        bn.bias.copy_(torch.tensor([1.0, 0.0]))
        bn.running_mean.copy_(torch.tensor([0.5, 2.0]))
        bn.running_var.copy_(torch.tensor([3.0, 0.0]))
    gamma_hat, beta_hat = bn_fold(bn, F64)
    # γ̂ = γ/√(σ²+ϵ): 2/√4 = 1, −1/√1 = −1;  β̂ = β − μγ̂: 1 − 0.5, 0 + 2
    torch.testing.assert_close(gamma_hat, t(1.0, -1.0))
    torch.testing.assert_close(beta_hat, t(0.5, 2.0))
    assert gamma_hat.dtype == F64
    x = torch.tensor([[4.0, 3.0]])
    torch.testing.assert_close(bn(x).double(), gamma_hat * x.double() + beta_hat)


def test_batchnorm_composes_the_pending_affine():
    s = accumulator("acc", (1, 2), t(0.5), -10, 10)
    s = with_batchnorm(s, t(2.0, 3.0), t(1.0, -1.0), "bn1")
    s = with_batchnorm(s, t(0.5, 0.5), t(0.0, 1.0), "bn2")
    # a = 2·0.5, 3·0.5;  c = 0.5·1 + 0, 0.5·(−1) + 1
    torch.testing.assert_close(s.scale, t(1.0, 1.5))
    torch.testing.assert_close(s.offset, t(0.5, 0.5))
    assert s.affine_from == "bn2" and s.pending and s.per_channel
    assert (s.lo, s.hi, s.value) == (-10, 10, "acc")  # the integers are untouched


def test_linear_and_pool_eps():
    torch.testing.assert_close(linear_eps(t(0.25), t(0.5, 0.125)), t(0.125, 0.03125))
    s = quantised("relu", (1, 4, 2, 2), t(0.5), IntRange.unsigned(256))
    p = pooled(s, "pool", (1, 4, 1, 1), 4)
    assert float(p.eps) == 0.125 and (p.lo, p.hi) == (0, 1020) and p.range is None


def test_requant_reals_by_hand():
    s = with_batchnorm(accumulator("a", (1, 2), t(0.01, 0.02), -5, 5), t(2.0, 1.0),
                       t(0.3, -0.1), "bn")
    mul, add = requant_reals(s, t(0.1))
    # real_mul = γ̂·ε_acc/ε_out = 2·0.01/0.1, 1·0.02/0.1;  real_add = β̂/ε_out = 3, −1
    torch.testing.assert_close(mul, t(0.2, 0.2))
    torch.testing.assert_close(add, t(3.0, -1.0))
    mul, add = requant_reals(quantised("q", (1,), t(0.5), IntRange.unsigned(4)), t(0.25))
    assert float(mul) == 2.0 and float(add) == 0.0


def test_integer_bias_rounds_half_up():
    b = integer_bias(torch.tensor([1.25, -1.25, 0.74, 0.0]), t(0.5), F2TOptions())
    assert b.tolist() == [3, -2, 1, 0]  # 2.5 -> 3, -2.5 -> -2, 1.48 -> 1
    assert b.dtype == torch.int64
    # 2^25 + 3 to 24 significant bits: the lowest two bits go, rounding half up
    big = integer_bias(torch.tensor([2.0**25 + 3]), t(1.0), F2TOptions(significant_bits=24))
    assert big.tolist() == [2**25 + 4]


def test_linear_bound_and_its_checks():
    w = torch.tensor([[1, -2], [3, 0]])
    # channel 0: (1+2)·5 + |1| = 16; channel 1: 3·5 + |−7| = 22
    assert linear_bound(w, 5, torch.tensor([1, -7])) == 22
    assert linear_bound(w, 5, None) == 15
    check_accumulator(2**53 - 1, F2TOptions(), "n")
    with pytest.raises(IntegerOverflowError, match="node 'c'.*2\\^53"):
        check_accumulator(2**53, F2TOptions(), "node 'c'")
    with pytest.raises(IntegerOverflowError, match="32 bits"):
        check_accumulator(2**31, F2TOptions(acc_bits=32), "node 'c'")


def test_activation_bounds():
    assert activation_bounds("identity", -128, 127, t(0.1)) == (-128, 127)
    assert activation_bounds("relu", -128, 127, t(0.1)) == (0, 127)
    assert activation_bounds("relu6", 0, 255, t(0.05)) == (0, 120)  # ⌊6/0.05 + ½⌋
    assert activation_bounds("relu6", 0, 255, t(0.01)) == (0, 255)


def test_requant_params_round_half_up_and_significant_bits():
    p = requant_params(t(0.5), t(0.25), 100, 0, 255, F2TOptions(), "n")
    acc = np.arange(-8, 9)
    y = np.clip((acc * p.mul + p.add) >> p.shift, 0, 255)
    np.testing.assert_array_equal(y, np.clip(np.floor(acc * 0.5 + 0.25 + 0.5), 0, 255))
    mul = t(0.1234567891, 0.3)
    q = requant_params(mul, t(1000.7), 100, 0, 255, F2TOptions(significant_bits=24), "n")
    for v in [*q.mul.ravel(), *np.ravel(q.add)]:
        assert float(np.float32(v)) == int(v)  # exact in float32
    # the relative change of mul stays ~2^-24
    np.testing.assert_allclose(q.mul / 2.0**q.shift, mul.numpy(), rtol=2e-7)


def _tiny_model():
    """x (ε=0.25, [0,15]) -> Linear ŵ=[1,−2] (ε_w=0.5) -> BN (γ̂=1, β̂=0.5) -> ReLU ε=0.125."""
    def const(n_levels, signed, lo, hi):
        return QuantSpec("ste", n_levels, signed, init=InitSpec("const", lo=lo, hi=hi))

    lin = nn.Linear(2, 1, bias=False)
    bn = nn.BatchNorm1d(1, eps=1.0)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -1.0]]))
        bn.weight.fill_(2.0)
        bn.bias.fill_(1.0)
        bn.running_mean.fill_(0.5)
        bn.running_var.fill_(3.0)
    policy = Policy((Rule(const(4, True, -1.0, 0.5), ("Linear",)),
                     Rule(const(256, False, 0.0, 31.875), ("ReLU",))))
    gm, _ = f2f(nn.Sequential(lin, bn, nn.ReLU()).eval(), policy, torch.zeros(1, 2),
                input_spec=const(16, False, 0.0, 3.75))
    for _, m in quant_modules(gm):
        m.start()
    return gm.eval()


def test_tiny_network_by_hand():
    gm = _tiny_model()
    tq = f2t(gm, torch.zeros(1, 2))
    assert tq.input_quant == (IntRange.unsigned(16), 0.25)
    linear, requant = tq.ops
    assert isinstance(linear, IntLinear) and linear.weight.tolist() == [[1, -2]]
    assert float(tq.values[linear.output].eps) == 0.125  # ε_x·ε_w = 0.25·0.5
    assert isinstance(requant, RequantShift)
    d = requant.shift
    # real_mul = γ̂·ε_acc/ε_out = 1·0.125/0.125 = 1; real_add = β̂/ε_out = 0.5/0.125 = 4
    assert int(requant.mul) == 2**d and int(requant.add) == 4 * 2**d + 2 ** (d - 1)
    assert (requant.lo, requant.hi) == (0, 255)
    # x = [0.75, 0.25] -> x̂ = [3, 1] -> acc = 3 − 2 = 1 -> y = 1 + 4 = 5 (0.625 real)
    x = torch.tensor([[0.75, 0.25]])
    assert tq.quantise_input(x).tolist() == [[3, 1]]
    assert tq(tq.quantise_input(x)).tolist() == [[5]]
    with torch.no_grad():
        assert float(gm(x)) == 0.625
