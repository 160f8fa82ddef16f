"""INQ: power-of-two and uniform levels, freezing by magnitude or at random."""

import pytest
import torch

from edgeq.errors import ConfigError
from edgeq.numerics.intrange import IntRange
from edgeq.train.algorithms import InqQuantiser, make_quantiser
from edgeq.train.spec import InitSpec, InqParams, QuantSpec


def pow2_quantiser(n_levels=8, shape=(9,), **params):
    spec = QuantSpec("inq", n_levels=n_levels, signed=True, params=InqParams(**params))
    q = make_quantiser(spec, weight_shape=shape)
    assert isinstance(q, InqQuantiser)
    return q


def test_pow2_levels_and_nearest_rounding():
    q = pow2_quantiser()
    q.initialise(torch.tensor(-0.4), torch.tensor(1.0))  # s = 1
    # n1 = ⌊log2(4/3)⌋ = 0, n2 = 0 + 2 - 4 = -2: levels {0, ±1/4, ±1/2, ±1}, ε = 1/4
    assert float(q.eps) == 0.25
    assert q.int_range == IntRange.from_bounds(-4, 4)
    assert q.levels().tolist() == [-4, -2, -1, 0, 1, 2, 4]
    w = torch.tensor([0.1, 0.125, 0.13, 0.37, 0.38, 0.8, 2.0, -0.3, -0.125])
    # midpoints 1/8, 3/8, 3/4; ties go up (towards +inf)
    assert q.integers(w).tolist() == [0, 1, 1, 1, 2, 4, 4, -1, 0]


def test_pow2_exponents_follow_s():
    q = pow2_quantiser(n_levels=16)
    q.initialise(torch.tensor(0.0), torch.tensor(3.0))
    # n1 = ⌊log2(4)⌋ = 2, n2 = 2 + 2 - 8 = -4
    assert float(q.eps) == 2.0**-4
    assert q.int_range == IntRange.from_bounds(-64, 64)


def test_pow2_four_levels_is_ternary():
    q = pow2_quantiser(n_levels=4)
    q.initialise(torch.tensor(-2.0), torch.tensor(0.5))  # s = 2: n1 = 1, n2 = 1
    assert float(q.eps) == 2.0 and q.levels().tolist() == [-1, 0, 1]


def test_magnitude_freezing_and_gradient():
    q = pow2_quantiser(strategy="magnitude")
    q.initialise(torch.tensor(-1.0), torch.tensor(1.0))
    w = torch.tensor([0.1, -0.9, 0.3, 0.55, -0.05, 0.7, 0.2, -0.45, 0.01], requires_grad=True)
    q.freeze_fraction(w, 1 / 3)  # 3 of 9: |w| = 0.9, 0.7, 0.55
    assert q.frozen_fraction == pytest.approx(1 / 3)
    y = q(w)
    assert y.tolist() == pytest.approx([0.1, -1.0, 0.3, 0.5, -0.05, 0.5, 0.2, -0.45, 0.01])
    y.sum().backward()
    assert w.grad.tolist() == [1, 0, 1, 0, 1, 0, 1, 1, 1]
    q.freeze_fraction(w, 1.0)
    assert q.frozen_fraction == 1.0
    assert torch.equal(q(w), q.quantised(w))


def test_frozen_values_do_not_follow_later_weight_changes():
    q = pow2_quantiser(shape=(2,))
    q.initialise(torch.tensor(-1.0), torch.tensor(1.0))
    w = torch.tensor([1.0, 0.1])
    q.freeze_fraction(w, 0.5)
    assert q(torch.tensor([-7.0, 0.3])).tolist() == pytest.approx([1.0, 0.3])


def test_random_freezing_is_seeded():
    masks = []
    for _ in range(2):
        q = pow2_quantiser(shape=(100,), strategy="random")
        q.initialise(torch.tensor(-1.0), torch.tensor(1.0))
        q.freeze_fraction(torch.linspace(-1, 1, 100), 0.3, seed=5)
        masks.append(~torch.isnan(q.frozen_weight))
    assert int(masks[0].sum()) == 30 and torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], torch.arange(100) >= 70)  # not simply the largest


def test_schedule_via_set_epoch():
    q = pow2_quantiser(shape=(8,), schedule=((1, 0.25), (3, 0.5), (4, 1.0)))
    q.initialise(torch.tensor(-1.0), torch.tensor(1.0))
    w = torch.linspace(-1, 1, 8)
    fractions = []
    for epoch in range(5):
        q.set_epoch(epoch, w)
        fractions.append(q.frozen_fraction)
    assert fractions == [0.0, 0.25, 0.25, 0.5, 1.0]


def test_uniform_levels_use_the_spec_range():
    spec = QuantSpec("inq", n_levels=8, signed=True, params=InqParams(levels="uniform"))
    q = make_quantiser(spec, weight_shape=(3,))
    q.initialise(torch.tensor(-2.0), torch.tensor(1.0))
    assert q.int_range == IntRange.signed(8) and float(q.eps) == 0.5 and q.levels() is None
    assert q.integers(torch.tensor([-3.0, 0.26, 1.9])).tolist() == [-4, 1, 3]


def test_per_channel_pow2():
    spec = QuantSpec("inq", n_levels=8, signed=True, granularity="per_channel")
    q = make_quantiser(spec, n_channels=2, weight_shape=(2, 2))
    q.initialise(torch.tensor([-1.0, -4.0]), torch.tensor([0.5, 1.0]))
    assert q.eps.tolist() == [0.25, 1.0]


def test_weights_only():
    with pytest.raises(ConfigError, match="weights only"):
        make_quantiser(QuantSpec("inq", n_levels=8, signed=True, init=InitSpec()))
