"""TQT: gradient of the log2 threshold and its running-RMS normalisation."""

import math

import pytest
import torch

from edgeq.numerics.intrange import IntRange
from edgeq.train.algorithms import TqtQuantiser, make_quantiser, tqt_quantise
from edgeq.train.spec import QuantSpec, TqtParams

LN2 = math.log(2)


def test_unsigned_gradient():
    # K=4, t=3 -> ε=1. ∂y/∂l = ln2·(y - x) inside, ln2·3 above, ln2·0 below
    x = torch.tensor([-1.0, 0.4, 0.6, 2.5, 3.0, 4.0], requires_grad=True)
    lt = torch.tensor(math.log2(3.0), requires_grad=True)
    y = tqt_quantise(x, lt, IntRange.unsigned(4))
    assert y.tolist() == pytest.approx([0, 0, 1, 3, 3, 3])
    y.backward(torch.tensor([1.0, 2, 3, 4, 5, 6]))
    expected = LN2 * (2 * (0 - 0.4) + 3 * (1 - 0.6) + 4 * (3 - 2.5) + 5 * 3 + 6 * 3)
    assert float(lt.grad) == pytest.approx(expected, rel=1e-6)
    assert x.grad.tolist() == [0, 2, 3, 4, 0, 0]


def test_signed_gradient():
    # K=4 signed [-2, 1], t=2 -> ε=1, clip [-2, 1]
    x = torch.tensor([-3.0, -0.6, 0.5, 2.0], requires_grad=True)
    lt = torch.tensor(1.0, requires_grad=True)
    y = tqt_quantise(x, lt, IntRange.signed(4))
    assert y.tolist() == [-2, -1, 1, 1]
    y.sum().backward()
    assert float(lt.grad) == pytest.approx(LN2 * (-2 + (-1 + 0.6) + (1 - 0.5) + 1), rel=1e-6)


def grads_of(q, xs):
    out = []
    for x in xs:
        q.zero_grad()
        q(x).sum().backward()
        out.append(float(q.log2_t.grad))
    return out


def test_gradient_normalisation_by_running_rms():
    q = make_quantiser(QuantSpec("tqt", n_levels=4, params=TqtParams(beta=0.9, norm_eps=1e-5)))
    assert isinstance(q, TqtQuantiser)
    q.set_eps(torch.tensor(1.0))  # t = 3
    x1 = torch.tensor([0.0, 5.0, 9.0])  # raw g1 = ln2·2·3 (0 is on the grid)
    x2 = torch.tensor([7.0, 1.0])  # raw g2 = ln2·1·3
    g1, g2 = LN2 * 6, LN2 * 3
    got = grads_of(q, [x1, x2])
    v1 = 0.1 * g1**2
    assert got[0] == pytest.approx(g1 / (math.sqrt(v1 / (1 - 0.9)) + 1e-5), rel=1e-5)
    v2 = 0.9 * v1 + 0.1 * g2**2
    assert got[1] == pytest.approx(g2 / (math.sqrt(v2 / (1 - 0.81)) + 1e-5), rel=1e-5)
    assert int(q.n_steps) == 2


def test_gradient_tanh():
    spec = QuantSpec("tqt", n_levels=4, params=TqtParams(beta=0.0, use_tanh=True))
    q = make_quantiser(spec)
    q.set_eps(torch.tensor(1.0))
    (got,) = grads_of(q, [torch.tensor([9.0])])
    g = LN2 * 3
    assert got == pytest.approx(math.tanh(g / (g + 1e-5)), rel=1e-6)


def test_eps_from_log2_threshold():
    q = make_quantiser(QuantSpec("tqt", n_levels=256, signed=True))
    q.set_eps(torch.tensor(0.01))
    assert float(q.log2_t.detach()) == pytest.approx(math.log2(1.28), rel=1e-6)
    assert float(q.eps.detach()) == pytest.approx(0.01, rel=1e-6)
    q.freeze()
    assert not q.log2_t.requires_grad
