"""PACT forward and backward against hand-derived values (DESIGN ranges)."""

import math

import pytest
import torch

from edgeq.numerics.intrange import IntRange
from edgeq.train.algorithms import PactQuantiser, make_quantiser, pact_quantise
from edgeq.train.spec import PactParams, QuantSpec


def run(x, bound, r, g, channel_dim=0, clip=True):
    x = torch.tensor(x, requires_grad=True)
    b = torch.tensor(bound, requires_grad=True)
    y = pact_quantise(x, b, r, channel_dim, clip)
    y.backward(torch.tensor(g))
    return y.tolist(), x.grad.tolist(), b.grad.tolist()


def test_unsigned():
    # K=4, β=3 -> ε=1, clip [0, 3]; ∂β = Σ g·1[x >= 3]
    y, gx, gb = run(
        [-1.0, 0.4, 0.6, 2.5, 3.0, 4.0], 3.0, IntRange.unsigned(4), [1.0, 2, 3, 4, 5, 6]
    )
    assert y == [0, 0, 1, 3, 3, 3]
    assert gx == [0, 2, 3, 4, 0, 0]
    assert gb == 11.0


def test_signed_even_levels():
    # K=4 signed: [-2, 1], α=2 -> ε=1, clip [-2, 1]; ∂α = -Σ_{x<-2} g + (1/2)·Σ_{x>=1} g
    x = [-3.0, -2.0, -0.6, 0.5, 0.9, 1.0, 2.0]
    y, gx, ga = run(x, 2.0, IntRange.signed(4), [1.0, 2, 3, 4, 5, 6, 7])
    assert y == [-2, -2, -1, 1, 1, 1, 1]
    assert gx == [0, 2, 3, 4, 5, 0, 0]
    assert ga == -1 + 0.5 * (6 + 7)


def test_signed_8bit_ratio():
    # K=256: r = hi/|lo| = 127/128
    _, _, ga = run([-10.0, 10.0], 1.0, IntRange.signed(256), [2.0, 3.0])
    assert ga == pytest.approx(-2 + 3 * 127 / 128)


def test_ternary_and_binary():
    y, gx, ga = run([-2.0, -0.4, 0.6, 1.0], 1.0, IntRange.ternary(), [1.0, 2, 3, 4])
    assert y == [-1, 0, 1, 1] and gx == [0, 2, 3, 0] and ga == -1 + 4
    y, gx, ga = run([-1.0, -0.2, 0.0, 0.3, 0.7], 0.5, IntRange.binary(), [1.0, 2, 3, 4, 5])
    assert y == [-0.5, -0.5, 0.5, 0.5, 0.5]
    assert gx == [0, 2, 3, 4, 0]
    assert ga == -1 + 5


def test_no_gradient_clipping():
    _, gx, _ = run([-1.0, 5.0], 3.0, IntRange.unsigned(4), [1.0, 1.0], clip=False)
    assert gx == [1, 1]


def test_per_channel_bound_gradient():
    # rows are channels (dim 0): bound 1 -> ε=1/3 (clip [0,1]); bound 2 -> clip [0, 2]
    x = [[0.5, 1.5, 3.0], [0.5, 1.5, 3.0]]
    y, gx, gb = run(x, [1.0, 2.0], IntRange.unsigned(4), [[1.0, 2, 3], [1.0, 2, 3]])
    assert y[0] == pytest.approx([2 / 3, 1, 1]) and y[1] == pytest.approx([2 / 3, 4 / 3, 2])
    assert gx == [[1, 0, 0], [1, 2, 0]]
    assert gb == [5.0, 3.0]


def test_module_learns_bound():
    spec = QuantSpec("pact", n_levels=16, signed=False)
    q = make_quantiser(spec)
    assert isinstance(q, PactQuantiser) and q.learns_eps
    q.set_eps(torch.tensor(0.1))
    assert float(q.bound.detach()) == pytest.approx(1.5)
    x = torch.tensor([0.5, 2.0, 3.0])
    q(x).sum().backward()
    assert float(q.bound.grad) == 2.0  # two inputs above β = 1.5
    opt = torch.optim.SGD(q.parameters(), lr=0.1)
    opt.step()
    assert float(q.bound.detach()) == pytest.approx(1.5 - 0.2)
    assert math.isclose(float(q.eps.detach()), 1.3 / 15, rel_tol=1e-6)


def test_module_fixed_bound():
    q = make_quantiser(QuantSpec("pact", params=PactParams(learn_clip=False)))
    assert not q.learns_eps
    q.freeze()
    assert bool(q.frozen)


def _reference_pact(x, bound, r, channel_dim, g):
    """The PACT formulas written plainly with bool masks (as before the fast paths)."""
    m = r.hi if r.lo >= 0 else -r.lo
    eps = bound / m
    e = eps if eps.dim() == 0 else eps.reshape([-1 if d == channel_dim else 1
                                               for d in range(x.dim())])
    below, above = x < r.lo * e, x >= r.hi * e
    y = e * torch.clamp(torch.floor(x / e + 0.5), r.lo, r.hi)
    grad_x = g * ~(below | above)
    local = (r.hi / m) * above.to(g.dtype) + (r.lo / m) * below.to(g.dtype)
    dims = [d for d in range(x.dim()) if d != channel_dim]
    grad_b = (g * local).sum() if eps.dim() == 0 else (g * local).sum(dim=dims)
    return y, grad_x, grad_b


@pytest.mark.parametrize("r", [IntRange.from_bits(8, False), IntRange.from_bits(4, True),
                               IntRange.from_bits(2, True), IntRange.ternary()])
@pytest.mark.parametrize("per_channel", [False, True])
def test_bit_identical_to_plain_formulas(r, per_channel):
    """The float-mask forward/backward gives exactly the plain formulas' bits (±0 included)."""
    torch.manual_seed(0)
    x = torch.randn(6, 4, 5) * 2
    g = torch.randn_like(x)
    bound = torch.rand(4) + 0.5 if per_channel else torch.tensor(1.3)
    y_ref, gx_ref, gb_ref = _reference_pact(x, bound, r, 1, g)
    xx, b = x.clone().requires_grad_(True), bound.clone().requires_grad_(True)
    y = pact_quantise(xx, b, r, 1)
    y.backward(g)
    for got, want in ((y, y_ref), (xx.grad, gx_ref), (b.grad, gb_ref)):
        assert torch.equal(got.view(torch.int32), want.view(torch.int32))
