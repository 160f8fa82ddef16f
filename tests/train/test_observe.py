"""Clipping-bound initialisation from statistics and the running activation observer."""

import numpy as np
import pytest
import torch

from edgeq.numerics.intrange import IntRange
from edgeq.train.observe import RangeObserver, init_bounds
from edgeq.train.quantiser import clip_bounds, fake_quantise
from edgeq.train.spec import InitSpec

U8 = IntRange.from_bits(8, False)
S4 = IntRange.from_bits(4, True)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 5, 5, generator=g) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1)


def test_minmax_per_tensor_and_channel(data):
    a, b = init_bounds(data, InitSpec("minmax"), S4)
    assert float(a) == data.min().item() and float(b) == data.max().item()
    a, b = init_bounds(data, InitSpec("minmax"), S4, channel_dim=1)
    npd = data.numpy()
    assert np.allclose(a.numpy(), npd.min(axis=(0, 2, 3)))
    assert np.allclose(b.numpy(), npd.max(axis=(0, 2, 3)))


def test_meanstd(data):
    a, b = init_bounds(data, InitSpec("meanstd", k=2.0), S4, channel_dim=1)
    npd = data.numpy().transpose(1, 0, 2, 3).reshape(3, -1)
    mean, std = npd.mean(axis=1), npd.std(axis=1)
    assert np.allclose(a.numpy(), mean - 2 * std, atol=1e-5)
    assert np.allclose(b.numpy(), mean + 2 * std, atol=1e-5)


def test_percentile(data):
    a, b = init_bounds(data, InitSpec("percentile", percentile=90.0), S4)
    flat = data.numpy().ravel()
    assert float(a) == pytest.approx(np.percentile(flat, 10.0), rel=1e-5)
    assert float(b) == pytest.approx(np.percentile(flat, 90.0), rel=1e-5)


def test_const():
    a, b = init_bounds(torch.zeros(3), InitSpec("const", lo=-1.0, hi=6.0), U8)
    assert (float(a), float(b)) == (-1.0, 6.0)


def test_mse_beats_minmax_with_outliers():
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(5000, generator=g), torch.tensor([40.0])]).abs()
    r = IntRange.from_bits(4, False)
    a, b = init_bounds(x, InitSpec("mse"), r)
    assert float(a) == 0.0  # unsigned: the clip interval starts at 0
    eps_mse = b / r.hi
    eps_max = x.max() / r.hi

    def mse(eps):
        return float((x - fake_quantise(x, eps, r)).pow(2).mean())

    assert eps_mse < eps_max
    for e in (eps_max, eps_max * 0.5, eps_max * 0.2, eps_mse * 1.1, eps_mse * 0.9):
        assert mse(eps_mse) <= mse(e) + 1e-12


def test_mse_per_channel_interval_is_on_grid():
    w = torch.randn(4, 10, generator=torch.Generator().manual_seed(2))
    a, b = init_bounds(w, InitSpec("mse"), S4, channel_dim=0)
    eps = -a / 8  # signed 4 bit: a = -8ε, b = 7ε
    assert torch.allclose(b, 7 * eps) and a.shape == (4,)
    lo, hi = clip_bounds(eps, S4)
    assert torch.allclose(lo, a)


def test_observer_minmax_and_meanstd_across_batches():
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(50, generator=g) * (i + 1) for i in range(4)]
    both = torch.cat(batches)
    obs = RangeObserver(InitSpec("minmax"), U8)
    assert obs.bounds() is None
    for x in batches:
        obs.update(x)
    a, b = obs.bounds()
    assert float(a) == both.min().item() and float(b) == both.max().item()

    obs = RangeObserver(InitSpec("meanstd", k=3.0), U8)
    for x in batches:
        obs.update(x)
    a, b = obs.bounds()
    m, s = both.double().mean().item(), both.double().std(correction=0).item()
    assert float(a) == pytest.approx(m - 3 * s, rel=1e-5)
    assert float(b) == pytest.approx(m + 3 * s, rel=1e-5)
    obs.reset()
    assert obs.bounds() is None


def test_observer_percentile_is_mean_of_batch_percentiles():
    g = torch.Generator().manual_seed(4)
    batches = [torch.rand(1000, generator=g) * (i + 1) for i in range(3)]
    obs = RangeObserver(InitSpec("percentile", percentile=95.0), U8)
    for x in batches:
        obs.update(x)
    a, b = obs.bounds()
    his = [np.percentile(x.numpy(), 95.0) for x in batches]
    los = [np.percentile(x.numpy(), 5.0) for x in batches]
    assert float(b) == pytest.approx(np.mean(his), rel=1e-5)
    assert float(a) == pytest.approx(np.mean(los), rel=1e-5)


def test_observer_const_needs_no_data():
    obs = RangeObserver(InitSpec("const", lo=0.0, hi=6.0), U8)
    assert [float(v) for v in obs.bounds()] == [0.0, 6.0]
