"""The faster PACT and ANA quantisers equal the code they replaced bit for bit: forward
outputs and the gradients of the input and of the PACT bound (:mod:`.old_quant_fns` is a
verbatim copy of the old code). Every test runs twice: with the fused C kernels where
they apply, and with the PyTorch code alone (no compiler, or a trace)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.numerics.intrange import IntRange
from edgeq.train import native
from edgeq.train.algorithms import ana, pact
from edgeq.train.quantiser import eps_covering
from edgeq.train.spec import AnaParams, AnnealSpec, PactParams, QuantSpec
from tests.train.algorithms import old_quant_fns as old


@pytest.fixture(scope="module", autouse=True, params=["kernels", "pytorch"])
def quantiser_path(request):
    """Module-scoped (hypothesis tests take no function-scoped fixtures)."""
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "pytorch":
            mp.setattr(native, "applies", lambda x: False)
        yield request.param


RANGES = [IntRange.unsigned(256), IntRange.signed(255), IntRange.signed(256),
          IntRange.unsigned(4), IntRange.signed(3), IntRange.binary()]


def _x(seed: int, shape, scale: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * scale
    x.view(-1)[:7] = torch.tensor([0.0, -0.0, 1e-30, 1e9, -1e9, 0.5, -0.5])  # edge values
    return x


def _equal(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) and bool(
        (torch.signbit(a) == torch.signbit(b)).all())


def ana_new_and_old(x, eps, mu, sigma, r, g):
    """(output, input gradient) of the uniform-noise ANA expectation, new code then old."""
    outs = []
    for fn in (ana.AnaQuantFn, old.AnaQuantFn):
        xx = x.clone().requires_grad_(True)
        y = fn.apply(xx, eps, mu, sigma, r, 1, "uniform", "expectation")
        y.backward(g)
        outs.append((y.detach(), xx.grad))
    return outs


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), r=st.sampled_from(RANGES), per_channel=st.booleans(),
       scale=st.sampled_from([0.1, 1.0, 30.0]), bound=st.floats(-3.0, 3.0),
       clip=st.booleans())
def test_pact_equals_the_old_code(seed, r, per_channel, scale, bound, clip):
    spec = QuantSpec(algorithm="pact", n_levels=r.n_levels, signed=r.lo < 0,
                     granularity="per_channel" if per_channel else "per_tensor",
                     params=PactParams(clip_gradient=clip))
    x = _x(seed, (6, 5, 4, 3), scale)
    g = _x(seed + 1, (6, 5, 4, 3), 1.0)
    shape = (5,) if per_channel else ()
    b0 = (torch.full(shape, bound)
          + torch.linspace(0, 0.5, 5 if per_channel else 1).reshape(shape))
    b0.view(-1)[0] = 0.0 if seed % 3 == 0 else b0.view(-1)[0]  # the clamp_min corner

    def run(module: bool):
        xx = x.clone().requires_grad_(True)
        if module:  # the quantiser module as QAT runs it
            q = pact.PactQuantiser(spec, 5 if per_channel else None, 1)
            with torch.no_grad():
                q.bound.copy_(b0)
            y = q(xx)
            b = q.bound
        else:
            b = b0.clone().requires_grad_(True)
            y = old.PactQuantFn.apply(xx, b.abs().clamp_min(old.MIN_BOUND), r, 1, clip)
        y.backward(g)
        return y.detach(), xx.grad, b.grad

    for new, ref in zip(run(True), run(False), strict=True):
        assert _equal(new, ref)


NOISES = ["uniform", "triangular", "normal", "logistic"]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), r=st.sampled_from(RANGES),
       noise=st.sampled_from(NOISES), strategy=st.sampled_from(["expectation", "mode"]),
       sigma=st.sampled_from([0.0, 0.05, 0.5, 1.0, 2.5]), mu=st.sampled_from([0.0, 0.3]),
       scale=st.sampled_from([0.5, 20.0, 400.0]), per_channel=st.booleans())
def test_ana_equals_the_old_code(seed, r, noise, strategy, sigma, mu, scale, per_channel):
    x = _x(seed, (4, 3, 5, 5), scale)
    g = _x(seed + 1, (4, 3, 5, 5), 1.0)
    eps = (torch.tensor([0.7, 1.0, 1.3]) if per_channel else torch.tensor(0.9))
    outs = []
    for fn in (ana.AnaQuantFn, old.AnaQuantFn):
        xx = x.clone().requires_grad_(True)
        y = fn.apply(xx, eps, mu, sigma, r, 1, noise, strategy)
        y.backward(g)
        outs.append((y.detach(), xx.grad))
    for new, ref in zip(*outs, strict=True):
        assert _equal(new, ref)


@pytest.mark.parametrize("sigma", [1.0, 0.3])
def test_ana_quantiser_step_equals_the_old_code(sigma):
    """The benchmark's case: 8-bit activations, uniform noise, expectation, 64-image batch."""
    spec = QuantSpec.from_bits(8, signed=False, algorithm="ana",
                               params=AnaParams(sigma=AnnealSpec(kind="bws", base=sigma)))
    x = torch.relu(_x(3, (64, 16, 8, 8), 2.0))
    g = _x(4, (64, 16, 8, 8), 1.0)
    q = ana.AnaQuantiser(spec)
    q.set_eps(torch.tensor(0.02))
    q.set_epoch(0)
    outs = []
    for fwd in (lambda t: q(t), lambda t: old.AnaQuantFn.apply(
            t, q.eps.detach(), float(q.mu), float(q.sigma), q.int_range, 0, "uniform",
            "expectation")):
        xx = x.clone().requires_grad_(True)
        y = fwd(xx)
        y.backward(g)
        outs.append((y.detach(), xx.grad))
    for new, ref in zip(*outs, strict=True):
        assert _equal(new, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("r", RANGES, ids=str)
def test_ana_uniform_expectation_fast_path_equals_the_old_code(r, dtype):
    """The uniform-noise expectation (its own code path) over every σ whose window it
    takes, dense and windowed ranges, μ, per-tensor and per-channel ε, tiny to huge inputs."""
    g = _x(11, (4, 3, 5, 5), 1.0).to(dtype)
    cases = 0
    for sigma in (0.05, 0.3, 0.5, 1.0, 1.7, 2.0):
        for mu, per_channel, scale in ((0.0, False, 0.5), (0.3, True, 20.0), (-0.2, False, 400.0)):
            window = min(r.n_levels - 1, 2 * (math.ceil(sigma / r.step) + 1) + 1)
            assert ana.uniform_fast_path(r, sigma, dtype) == (window < 8
                                                              and dtype == torch.float32)
            x = _x(int(sigma * 10) + int(scale), (4, 3, 5, 5), scale).to(dtype)
            eps = (torch.tensor([0.7, 1.0, 1.3], dtype=dtype) if per_channel
                   else torch.tensor(0.9, dtype=dtype))
            outs = ana_new_and_old(x, eps, mu, sigma, r, g)
            for new, ref in zip(*outs, strict=True):
                assert _equal(new, ref), (sigma, mu, per_channel, scale)
            cases += ana.uniform_fast_path(r, sigma, dtype)
    assert cases > 0 or dtype != torch.float32  # the fast path ran


@pytest.mark.parametrize("r", RANGES, ids=str)
def test_pact_one_element_bound_equals_the_old_code(r):
    """The per-tensor bound (ε as a Python number) at the corners of the chain rule:
    b = 0, |b| below MIN_BOUND, negative b, and with and without gradient clipping."""
    spec = QuantSpec(algorithm="pact", n_levels=r.n_levels, signed=r.lo < 0)
    x = _x(5, (6, 5, 4, 3), 3.0)
    g = _x(6, (6, 5, 4, 3), 1.0)
    for bound in (0.0, -0.0, 1e-13, -1e-13, -2.0, 0.7, 3.0, 1e-12):
        for clip in (True, False):
            results = []
            for module in (True, False):
                xx = x.clone().requires_grad_(True)
                b = torch.tensor(bound, requires_grad=True)
                if module:
                    q = pact.PactQuantiser(dataclasses.replace(
                        spec, params=PactParams(clip_gradient=clip)))
                    with torch.no_grad():
                        q.bound.copy_(b)
                    y, b = q(xx), q.bound
                else:
                    y = old.PactQuantFn.apply(xx, b.abs().clamp_min(old.MIN_BOUND), r, 0, clip)
                y.backward(g)
                results.append((y.detach(), xx.grad, b.grad))
            for new, ref in zip(*results, strict=True):
                assert _equal(new, ref), (bound, clip)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eps_covering_equals_the_old_code(dtype):
    """The weight re-fit's ε (fewer ops since) at the fallback corners: zero, negative,
    NaN and infinite bounds, subnormals; per tensor and per channel."""
    a = torch.tensor([-1.0, 0.0, -0.0, math.nan, -math.inf, 2.0, -3.0, 0.0, 1e-45, -5.0, -1e30],
                     dtype=dtype)
    b = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, math.inf, -1.0, -0.0, 1e-45, math.nan, 1e30],
                     dtype=dtype)
    for r in RANGES:
        assert _equal(eps_covering(a, b, r), old.eps_covering(a, b, r))
        for i in range(len(a)):
            assert _equal(eps_covering(a[i], b[i], r), old.eps_covering(a[i], b[i], r))
