"""Quantiser core: ε from bounds, round half up, clipping, the binary sign rule."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.numerics.intrange import IntRange
from edgeq.train.quantiser import (
    bound_divisor,
    bound_from_eps,
    clip_bounds,
    eps_covering,
    eps_from_bound,
    fake_quantise,
    in_range_mask,
    int_quantise,
    reduce_to_channels,
    to_int64,
)


def test_bound_divisor_follows_design():
    # unsigned: ε = β/(K-1); signed almost-symmetric: ε = α/⌊K/2⌋; {-1,+1}: ε = α
    assert bound_divisor(IntRange.from_bits(8, signed=False)) == 255
    assert bound_divisor(IntRange.from_bits(8, signed=True)) == 128
    assert bound_divisor(IntRange.from_levels(7, signed=True)) == 3
    assert bound_divisor(IntRange.ternary()) == 1
    assert bound_divisor(IntRange.binary()) == 1
    assert bound_divisor(IntRange.unsigned(2)) == 1


def test_eps_bound_roundtrip_and_clip_bounds():
    r = IntRange.from_bits(4, signed=True)  # [-8, 7]
    eps = eps_from_bound(torch.tensor(2.0), r)
    assert float(eps) == 0.25
    assert float(bound_from_eps(eps, r)) == 2.0
    lo, hi = clip_bounds(eps, r)
    assert (float(lo), float(hi)) == (-2.0, 1.75)


def test_eps_covering():
    u8, s8 = IntRange.from_bits(8, False), IntRange.from_bits(8, True)
    # unsigned ignores negatives: ε = 2.55/255
    assert math.isclose(float(eps_covering(-1.0, 2.55, u8)), 0.01, rel_tol=1e-6)
    # signed: ε = max(b/127, a/-128)
    assert math.isclose(float(eps_covering(-1.28, 0.5, s8)), 0.01, rel_tol=1e-6)
    assert math.isclose(float(eps_covering(-0.1, 1.27, s8)), 0.01, rel_tol=1e-6)
    # per channel
    e = eps_covering(torch.tensor([-1.0, -4.0]), torch.tensor([2.0, 1.0]), IntRange.ternary())
    assert e.tolist() == [2.0, 4.0]
    # degenerate statistics fall back to bound 1
    assert float(eps_covering(0.0, 0.0, u8)) == pytest.approx(1 / 255)
    assert float(eps_covering(-1.0, float("nan"), u8)) == pytest.approx(1 / 255)


def test_round_half_up_ties_and_clip():
    r = IntRange.from_bits(3, signed=True)  # [-4, 3]
    x = torch.tensor([2.5, -2.5, 1.5, -1.5, 0.49, -0.5, 3.6, -9.0, 3.49])
    assert int_quantise(x, torch.tensor(1.0), r).tolist() == [3, -2, 2, -1, 0, 0, 3, -4, 3]
    # scaled: x/ε with ε = 0.5
    assert int_quantise(x * 0.5, torch.tensor(0.5), r).tolist() == [3, -2, 2, -1, 0, 0, 3, -4, 3]


def test_binary_is_sign_with_zero_up():
    r = IntRange.binary()
    x = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 5.0, -5.0])
    assert int_quantise(x, torch.tensor(0.5), r).tolist() == [1, 1, 1, -1, 1, -1]
    assert fake_quantise(x, torch.tensor(0.5), r).tolist() == [0.5, 0.5, 0.5, -0.5, 0.5, -0.5]


def test_per_channel_broadcast():
    r = IntRange.from_bits(8, True)
    w = torch.tensor([[1.0, -1.0], [1.0, -1.0]])
    eps = torch.tensor([0.5, 0.25])
    # row c uses ε_c along dim 0; along dim 1 column c does
    assert fake_quantise(w, eps, r, channel_dim=0).tolist() == [[1.0, -1.0], [1.0, -1.0]]
    assert int_quantise(w, eps, r, channel_dim=0).tolist() == [[2, -2], [4, -4]]
    assert int_quantise(w, eps, r, channel_dim=1).tolist() == [[2, -4], [2, -4]]


def test_in_range_mask_is_half_open():
    r = IntRange.unsigned(4)  # clip [0, 3ε]
    x = torch.tensor([-0.1, 0.0, 2.9, 3.0, 3.1])
    assert in_range_mask(x, torch.tensor(1.0), r).tolist() == [False, True, True, False, False]


def test_reduce_to_channels():
    t = torch.arange(12.0).reshape(3, 4)
    assert float(reduce_to_channels(t, torch.tensor(1.0))) == 66.0
    assert reduce_to_channels(t, torch.ones(3), 0).tolist() == [6.0, 22.0, 38.0]
    assert reduce_to_channels(t, torch.ones(4), 1).tolist() == [12.0, 15.0, 18.0, 21.0]


def test_to_int64():
    assert to_int64(torch.tensor([3.0, -2.0])).dtype == torch.int64


# ---- property tests: outputs are on the ε grid and inside the range ---------------------
ranges = st.builds(
    IntRange.from_levels,
    st.one_of(st.integers(1, 16).map(lambda b: 2**b), st.just(3), st.integers(2, 300)),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(
    r=ranges,
    log_eps=st.floats(-12, 6),
    xs=st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=64), min_size=1, max_size=40),
)
def test_outputs_on_grid_and_in_range(r, log_eps, xs):
    eps = torch.tensor(2.0**log_eps, dtype=torch.float64)
    x = torch.tensor(xs, dtype=torch.float64)
    q = int_quantise(x, eps, r)
    assert r.contains(q.numpy())
    y = fake_quantise(x, eps, r)
    assert torch.equal(y, eps * q)  # exactly ε times an integer
    # inside the clip interval the error is at most ε/2 (step-1 ranges)
    lo, hi = clip_bounds(eps, r)
    inside = (x >= lo) & (x <= hi)
    if r.step == 1:
        assert torch.all((y - x).abs()[inside] <= eps / 2 * (1 + 1e-12))
    # outside it saturates at the nearer end
    assert torch.all(q[x > hi] == r.hi) and torch.all(q[x < lo] == r.lo)


@settings(max_examples=100, deadline=None)
@given(r=ranges, n=st.integers(-70000, 70000))
def test_quantising_an_integer_level_is_exact(r, n):
    # a value already on the grid maps to itself (after clipping)
    eps = torch.tensor(0.375, dtype=torch.float64)
    q = int_quantise(torch.tensor([n * 0.375], dtype=torch.float64), eps, r)
    expected = r.clip(np.array([n]))[0] if r.step == 1 else (r.hi if n >= 0 else r.lo)
    assert int(q[0]) == int(expected)


def test_float_masks_and_in_place_rounding_match_plain_ops():
    """indicator / in_range_indicator / the in-place rounding: same values as plain ops."""
    from edgeq.train.quantiser import in_range_indicator, indicator

    torch.manual_seed(0)
    r = IntRange.from_bits(4, signed=True)
    x, eps = torch.randn(3, 4, 5) * 3, torch.rand(4) + 0.1
    assert torch.equal(indicator(torch.ge, x, 0.5), (x >= 0.5).float())
    assert torch.equal(in_range_indicator(x, eps, r, 1), in_range_mask(x, eps, r, 1).float())
    e = eps.reshape(1, 4, 1)
    want = e * torch.clamp(torch.floor(x / e + 0.5), r.lo, r.hi)
    assert torch.equal(fake_quantise(x, eps, r, 1), want)
    # with autograd recording, the out-of-place path is taken and the values are the same
    xg = x.clone().requires_grad_(True)
    assert torch.equal(fake_quantise(xg, eps, r, 1), want)
