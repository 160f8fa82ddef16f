"""ANA: expectation/mode/random forwards, the expected-staircase backward, annealing."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from edgeq.numerics.intrange import IntRange
from edgeq.train.algorithms import AnaQuantiser, ana_quantise, make_quantiser
from edgeq.train.spec import AnaParams, AnnealSpec, QuantSpec


# ---- the standardised distributions, written out independently --------------------------
def cdf(noise, z):
    if noise == "uniform":
        return min(max((z + 1) / 2, 0.0), 1.0)
    if noise == "triangular":
        if z <= -1:
            return 0.0
        if z >= 1:
            return 1.0
        return (1 + z) ** 2 / 2 if z < 0 else 1 - (1 - z) ** 2 / 2
    if noise == "normal":
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))
    return 1 / (1 + math.exp(-z))


def pdf(noise, z):
    if noise == "uniform":
        return 0.5 if abs(z) <= 1 else 0.0
    if noise == "triangular":
        return max(1 - abs(z), 0.0)
    if noise == "normal":
        return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    s = 1 / (1 + math.exp(-z))
    return s * (1 - s)


def levels_and_thresholds(r):
    q = [r.lo + r.step * k for k in range(r.n_levels)]
    return q, [(a + b) / 2 for a, b in zip(q[:-1], q[1:], strict=True)]


def expected(u, mu, sigma, r, noise):
    """E[q] = Σ_k q_k P(q_k), P(q_k) = c_(k-1) - c_k, c_i = F((u + μ - t_i)/σ)."""
    q, t = levels_and_thresholds(r)
    c = [1.0] + [cdf(noise, (u + mu - ti) / sigma) for ti in t] + [0.0]
    return sum(qk * (c[k] - c[k + 1]) for k, qk in enumerate(q))


def derivative(u, mu, sigma, r, noise):
    q, t = levels_and_thresholds(r)
    return sum(
        (q[i + 1] - q[i]) * pdf(noise, (u + mu - ti) / sigma) / sigma for i, ti in enumerate(t)
    )


def probabilities(u, mu, sigma, r, noise):
    q, t = levels_and_thresholds(r)
    c = [1.0] + [cdf(noise, (u + mu - ti) / sigma) for ti in t] + [0.0]
    return q, [c[k] - c[k + 1] for k in range(len(q))]


NOISES = ["uniform", "triangular", "normal", "logistic"]
RANGES = [IntRange.unsigned(4), IntRange.signed(8), IntRange.binary(), IntRange.ternary()]


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("r", RANGES, ids=str)
def test_expectation_forward_and_backward(noise, r):
    eps, mu, sigma = 0.5, 0.2, 0.7
    us = [-5.0, -1.3, -0.45, 0.0, 0.31, 0.5, 1.77, 2.6, 6.0]
    x = torch.tensor([u * eps for u in us], dtype=torch.float64, requires_grad=True)
    y = ana_quantise(x, torch.tensor(eps, dtype=torch.float64), mu, sigma, r, noise=noise)
    want = [eps * expected(u, mu, sigma, r, noise) for u in us]
    assert y.tolist() == pytest.approx(want, abs=1e-12)
    y.sum().backward()
    assert x.grad.tolist() == pytest.approx([derivative(u, mu, sigma, r, noise) for u in us])


@pytest.mark.parametrize("noise", NOISES)
def test_windowed_thresholds_match_all_thresholds(noise):
    # 10-bit range: only thresholds near u are evaluated; compare with the full sum
    r, sigma = IntRange.signed(1024), 1.7
    us = [-600.0, -512.3, -3.2, 0.0, 0.5, 2.49, 100.2, 510.6, 900.0]
    x = torch.tensor(us, dtype=torch.float64, requires_grad=True)
    y = ana_quantise(x, torch.tensor(1.0, dtype=torch.float64), 0.0, sigma, r, noise=noise)
    assert y.tolist() == pytest.approx([expected(u, 0.0, sigma, r, noise) for u in us], abs=1e-9)
    y.sum().backward()
    want = [derivative(u, 0.0, sigma, r, noise) for u in us]
    assert x.grad.tolist() == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("noise", ["triangular", "normal", "logistic"])
def test_gradcheck_expectation(noise):
    torch.manual_seed(0)
    r = IntRange.signed(16)
    x = (torch.rand(20, dtype=torch.float64) - 0.5) * 6
    x.requires_grad_(True)
    eps = torch.tensor(0.4, dtype=torch.float64)

    def f(t):
        return ana_quantise(t, eps, 0.1, 0.9, r, noise=noise)

    assert gradcheck(f, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("noise", NOISES)
def test_mode_is_most_probable_level(noise):
    r, mu, sigma = IntRange.signed(8), 0.3, 1.3
    us = [-6.0, -2.2, -0.81, 0.05, 1.4, 2.9, 7.0]
    x = torch.tensor(us, dtype=torch.float64, requires_grad=True)
    y = ana_quantise(
        x, torch.tensor(1.0, dtype=torch.float64), mu, sigma, r, noise=noise, strategy="mode"
    )
    for u, got in zip(us, y.tolist(), strict=True):
        q, p = probabilities(u, mu, sigma, r, noise)
        best = max(p)
        assert p[q.index(got)] == pytest.approx(best)
    y.sum().backward()  # backward of every strategy is the expectation's derivative
    assert x.grad.tolist() == pytest.approx([derivative(u, mu, sigma, r, noise) for u in us])


@pytest.mark.parametrize("noise", NOISES)
def test_random_samples_have_the_expected_mean(noise):
    torch.manual_seed(0)
    r, sigma = IntRange.unsigned(8), 0.8
    u = 2.3
    x = torch.full((20000,), u, dtype=torch.float64)
    y = ana_quantise(
        x, torch.tensor(1.0, dtype=torch.float64), 0.0, sigma, r, noise=noise, strategy="random"
    )
    assert r.contains(y.numpy())
    q, p = probabilities(u, 0.0, sigma, r, noise)
    for qk, pk in zip(q, p, strict=True):
        assert float((y == qk).double().mean()) == pytest.approx(pk, abs=0.015)


def test_zero_sigma_is_hard_with_mean_shift():
    r = IntRange.unsigned(4)
    x = torch.tensor([-1.0, 0.2, 0.3, 1.2, 1.25, 9.0], requires_grad=True)
    y = ana_quantise(x, torch.tensor(1.0), 0.25, 0.0, r)
    # floor(x + 0.25 + 0.5) clipped to [0, 3]
    assert y.tolist() == [0, 0, 1, 1, 2, 3]
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 0]  # straight through inside [0, 3)


def test_quantiser_anneals_and_is_hard_in_eval():
    params = AnaParams(
        noise="normal",
        mu=AnnealSpec("bws", base=0.5, start=0, end=2),
        sigma=AnnealSpec("bws", base=1.0, start=0, end=4),
    )
    q = make_quantiser(QuantSpec("ana", n_levels=16, params=params))
    assert isinstance(q, AnaQuantiser)
    q.set_eps(torch.tensor(0.1))
    seen = []
    for epoch in range(6):
        q.set_epoch(epoch)
        seen.append((round(float(q.mu), 6), round(float(q.sigma), 6)))
    assert seen == [(0.5, 1.0), (0.25, 0.75), (0.0, 0.5), (0.0, 0.25), (0.0, 0.0), (0.0, 0.0)]
    q.set_epoch(1)
    x = torch.tensor([0.04, 0.05, 0.33])
    q.train()
    assert not torch.equal(q(x), torch.tensor([0.0, 0.1, 0.3]))
    q.eval()
    assert torch.allclose(q(x), torch.tensor([0.0, 0.1, 0.3]))


@pytest.mark.parametrize("noise", NOISES)
def test_mode_with_thresholds_windowed_far_outside_the_range(noise):
    # 32 levels and σ = 1: only a window of thresholds is evaluated (regression: a window
    # entirely below the range once gave a level below lo)
    r, sigma = IntRange.unsigned(32), 1.0
    us = [-62.0, -3.0, 0.4, 15.5, 30.2, 40.0, 100.0]
    x = torch.tensor(us, dtype=torch.float64)
    y = ana_quantise(
        x, torch.tensor(1.0, dtype=torch.float64), 0.0, sigma, r, noise=noise, strategy="mode"
    )
    for u, got in zip(us, y.tolist(), strict=True):
        q, p = probabilities(u, 0.0, sigma, r, noise)
        assert got in q and p[q.index(got)] == pytest.approx(max(p))
