"""The fused QAT kernels (``edgeq.train.native``): built, used where they apply, and equal
bit for bit to the PyTorch code before them (``tests/train/algorithms/old_quant_fns.py``)
on the values where float code goes wrong — NaN, ±inf, ±0, ties, huge and tiny inputs."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from edgeq.numerics.intrange import IntRange
from edgeq.train import native
from edgeq.train.algorithms import ana, pact
from edgeq.train.spec import PactParams, QuantSpec
from tests.train.algorithms import old_quant_fns as old
from tests.train.algorithms.test_speed_bit_identical import ana_new_and_old

RANGES = [IntRange.unsigned(256), IntRange.signed(256), IntRange.signed(255),
          IntRange.unsigned(4), IntRange.signed(6)]
EDGES = [0.0, -0.0, 0.5, -0.5, 1.5, 127.5, -128.5, 255.5, 1e-30, -1e-30, 1e-45, 3e38,
         -3e38, float("inf"), float("-inf"), float("nan")]


@pytest.fixture(scope="module")
def kernels():
    """The library; its absence skips here, and fails under CI=true (gcc is installed)."""
    if native.library() is None:
        reason = f"fused QAT kernels unavailable: {native.build_error()}"
        if os.environ.get("CI", "").lower() == "true" or shutil.which("gcc") is not None:
            pytest.fail(reason)
        pytest.skip(reason)
    return native.library()


def _x(seed: int, shape, scale: float, edges=EDGES) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * scale
    x.view(-1)[: len(edges)] = torch.tensor(edges)
    return x


def _same(a, b) -> bool:
    """Equal bits: values, NaN positions and zero signs."""
    if a is None or b is None:
        return a is b
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    return (a.dtype == b.dtype and a.shape == b.shape and torch.equal(nan_a, nan_b)
            and torch.equal(a[~nan_a], b[~nan_b])
            and torch.equal(torch.signbit(a[~nan_a]), torch.signbit(b[~nan_b])))


def _count_calls(monkeypatch, name: str) -> list:
    calls = []
    fn = getattr(native, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)

    monkeypatch.setattr(native, name, spy)
    return calls


@pytest.mark.parametrize("r", RANGES, ids=str)
@pytest.mark.parametrize("layout", ["per_tensor", "per_channel_dim0", "per_channel_dim1"])
def test_pact_kernel_equals_the_old_code(kernels, monkeypatch, r, layout):
    calls = _count_calls(monkeypatch, "pact_forward")
    per_channel, channel_dim = layout != "per_tensor", 1 if layout.endswith("dim1") else 0
    x = _x(1, (6, 5, 4, 3), 3.0)
    n = x.shape[channel_dim]
    for seed, bound in enumerate((0.7, 1e-12, 40.0)):  # MIN_BOUND itself is positive
        g = _x(seed + 7, x.shape, 1.0)  # NaN and inf gradients too
        b0 = (torch.linspace(bound, 2 * bound, n) if per_channel else torch.tensor(bound))
        for clip in (True, False):
            results = []
            for fused in (True, False):
                xx = x.clone().requires_grad_(True)
                b = b0.clone().requires_grad_(True)
                if fused:
                    y = pact.PactRawBoundFn.apply(xx, b, r, channel_dim, clip)
                else:
                    y = old.PactQuantFn.apply(xx, b.abs().clamp_min(old.MIN_BOUND), r,
                                              channel_dim, clip)
                y.backward(g)
                results.append((y.detach(), xx.grad, b.grad))
            for new, ref in zip(*results, strict=True):
                assert _same(new, ref), (bound, clip)
    assert len(calls) == 6  # every forward above took the kernel


def test_pact_kernel_one_value_per_channel(kernels):
    """A 1-D tensor with a bound per element: the bound gradient is g·local itself."""
    r = IntRange.signed(256)
    x, g = _x(3, (16,), 2.0), _x(4, (16,), 1.0, edges=[])
    b0 = torch.linspace(0.5, 1.5, 16)
    results = []
    for fn in (pact.PactRawBoundFn.apply, lambda t, b, *a: old.PactQuantFn.apply(
            t, b.abs().clamp_min(old.MIN_BOUND), *a)):
        xx, b = x.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        y = fn(xx, b, r, 0, True)
        y.backward(g)
        results.append((y.detach(), xx.grad, b.grad))
    for new, ref in zip(*results, strict=True):
        assert _same(new, ref)


def test_pact_below_min_bound_leaves_the_kernel(kernels):
    """A bound below MIN_BOUND (or negative) is the PyTorch code's case: the kernel writes
    nothing and says so."""
    x = _x(2, (4, 8), 1.0)
    for b in (torch.tensor(-0.5), torch.tensor(float("nan")), torch.tensor([1.0, 0.0, 2.0, 1.0])):
        assert native.pact_forward(x, b, -128, 127, 128, 1e-12, 0) is None


@pytest.mark.parametrize("r", [IntRange.unsigned(256), IntRange.signed(256), IntRange.unsigned(4),
                               IntRange.signed(8), IntRange.signed(3)], ids=str)
@pytest.mark.parametrize("sigma", [0.05, 0.5, 1.0, 1.7, 2.0])
def test_ana_uniform_kernel_equals_the_old_code(kernels, monkeypatch, r, sigma):
    calls = _count_calls(monkeypatch, "ana_uniform_forward")
    taken = 0
    for mu, per_channel, scale in ((0.0, False, 0.5), (0.3, True, 20.0), (-0.2, False, 400.0)):
        x = _x(int(sigma * 10) + int(scale), (4, 3, 5, 5), scale)
        g = _x(11, x.shape, 1.0)
        eps = torch.tensor([0.7, 1.0, 1.3]) if per_channel else torch.tensor(0.9)
        outs = ana_new_and_old(x, eps, mu, sigma, r, g)
        for new, ref in zip(*outs, strict=True):
            assert _same(new, ref), (mu, per_channel, scale)
        taken += ana.uniform_fast_path(r, sigma, torch.float32)
    assert len(calls) == taken  # the kernel ran exactly where the fast path applies


def test_ana_forward_only_needs_no_derivative(kernels):
    x = _x(3, (2, 3, 4), 2.0)
    with torch.no_grad():
        y = ana.AnaQuantFn.apply(x, torch.tensor(0.5), 0.0, 1.0, IntRange.unsigned(256), 0,
                                 "uniform", "expectation")
        ref = old.AnaQuantFn.apply(x, torch.tensor(0.5), 0.0, 1.0, IntRange.unsigned(256), 0,
                                   "uniform", "expectation")
    assert _same(y, ref)


def test_the_kernels_step_aside(kernels, monkeypatch):
    """float64, non-contiguous tensors, large tensors with several threads, and traces
    stay on the PyTorch code."""
    x = torch.rand(64, 64)
    assert native.applies(x)
    assert not native.applies(x.double())
    assert not native.applies(x.t())
    big = torch.rand(native.PARALLEL_GRAIN)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert not native.applies(big) and native.applies(big[:100])
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    assert not native.applies(x)


def test_scales_that_do_not_fit_leave_the_kernels(kernels):
    """A bound or ε that is not one contiguous float32 value per channel is the PyTorch
    code's to broadcast (or to reject): the kernels take none of it, and the result is
    the old code's."""
    r = IntRange.signed(256)
    x = _x(4, (64, 8), 1.0)
    for scale in (torch.full((1,), 0.5), torch.full((128,), 0.5)[::2], torch.full((8,), 0.5),
                  torch.full((64,), 0.5, dtype=torch.float64)):
        assert native.pact_forward(x, scale, -128, 127, 128, 1e-12, 0) is None
        assert native.ana_uniform_forward(x, scale, 0.0, 1.0, -128, 1, 255, 2, False, 0,
                                          True) is None
    g = _x(5, x.shape, 1.0, edges=[])
    results = []
    for fn in (pact.PactRawBoundFn.apply, lambda t, b, *a: old.PactQuantFn.apply(
            t, b.abs().clamp_min(old.MIN_BOUND), *a)):
        xx, b = x.clone().requires_grad_(True), torch.full((1,), 0.5, requires_grad=True)
        y = fn(xx, b, r, 0, True)
        y.backward(g)
        results.append((y.detach(), xx.grad, b.grad))
    for new, ref in zip(*results, strict=True):
        assert _same(new, ref)


def test_a_module_without_the_kernels_gives_the_same_bits(kernels, monkeypatch):
    """The PACT quantiser as QAT runs it, once with the kernels and once without."""
    spec = QuantSpec(algorithm="pact", n_levels=256, signed=True, granularity="per_channel",
                     params=PactParams())
    x = _x(5, (8, 4, 3, 3), 0.3)
    g = _x(6, x.shape, 1.0, edges=[])
    results = []
    for use in (True, False):
        monkeypatch.setattr(native, "applies", (lambda t: True) if use else (lambda t: False))
        q = pact.PactQuantiser(spec, 8, 0)
        with torch.no_grad():
            q.bound.copy_(torch.linspace(0.2, 0.9, 8))
        xx = x.clone().requires_grad_(True)
        q(xx).backward(g)
        results.append((xx.grad, q.bound.grad))
    for new, ref in zip(*results, strict=True):
        assert _same(new, ref)


def test_no_compiler_means_no_kernels(monkeypatch, tmp_path):
    """Without gcc (and nothing cached) the library is None with the reason kept, and
    nothing is left behind in the cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    lib = native._Library()
    assert lib.get() is None and "gcc not found" in lib.error
    assert not list(tmp_path.rglob("*.so"))


def test_a_failing_build_means_no_kernels(kernels, monkeypatch, tmp_path):
    """A compiler error is kept as the reason; nothing half-built stays in the cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(native, "source", lambda: "int eq_pact_forward(void) { return }\n")
    lib = native._Library()
    assert lib.get() is None and "build of the QAT kernels failed" in lib.error
    assert not list(tmp_path.rglob("*.so")) and not list(tmp_path.rglob("edgeq-qat-*"))


def test_build_is_cached(kernels, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = native.build()
    assert first.exists() and first.parent == tmp_path / "edgeq"
    assert native.build() == first  # a second call compiles nothing
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp dirs left


@pytest.mark.parametrize("bound", [0.9, 1e-13, -0.7], ids=["positive", "below-min", "negative"])
@pytest.mark.parametrize("clip", [True, False])
def test_relu_activation_fused_equals_relu_then_pact(kernels, monkeypatch, bound, clip):
    """QuantActivation(relu) with PACT: relu fused into the quantiser's pass (or, for a
    bound the kernel leaves alone, run inside its autograd node) gives the bits of
    relu followed by the old PACT code: output, input gradient and bound gradient."""
    from edgeq.train.modules import QuantActivation

    relu_flags = []
    forward = native.pact_forward

    def spy(*args):
        relu_flags.append(args[-1])
        return forward(*args)

    monkeypatch.setattr(native, "pact_forward", spy)
    spec = QuantSpec(algorithm="pact", n_levels=256, signed=False,
                     params=PactParams(clip_gradient=clip))
    x = _x(8, (4, 6, 5, 5), 2.0)
    g = _x(9, x.shape, 1.0)
    act = QuantActivation("relu", spec).train()
    act.quantiser.set_eps(torch.tensor(bound / 255))
    act.quant_enabled = True
    results = []
    for fused in (True, False):
        xx = x.clone().requires_grad_(True)
        if fused:
            with torch.no_grad():
                act.quantiser.bound.fill_(bound)
            act.quantiser.bound.grad = None
            y, b = act(xx), act.quantiser.bound
        else:
            b = torch.tensor(bound, requires_grad=True)
            y = old.PactQuantFn.apply(torch.relu(xx), b.abs().clamp_min(old.MIN_BOUND),
                                      spec.int_range, 0, clip)
        y.backward(g)
        results.append((y.detach(), xx.grad, b.grad))
    for new, ref in zip(*results, strict=True):
        assert _same(new, ref)
    assert relu_flags == [True]  # the module asked for the fused pass


@pytest.mark.parametrize("algorithm", ["ste", "ana"])
@pytest.mark.parametrize("r", [IntRange.signed(256), IntRange.unsigned(256), IntRange.signed(3),
                               IntRange.signed(4)], ids=str)
@pytest.mark.parametrize("per_channel", [True, False])
def test_weight_refit_equals_min_max_then_eps_covering(kernels, monkeypatch, algorithm, r,
                                                      per_channel):
    """The per-step minmax re-fit of a weight ε: the kernel's ε has the bits of the old
    eps_covering(amin, amax), on rows that are NaN, ±inf, all zero (±0), all negative,
    subnormal, huge or ordinary."""
    from edgeq.train.modules import QuantConv2d

    calls = _count_calls(monkeypatch, "minmax_eps")
    w = torch.randn(9, 2, 3, 3)
    special = [[float("nan")], [float("inf")], [float("-inf")], [0.0, -0.0], [-0.0],
               [-1.0, -2.0], [1e-45, -1e-45], [3e38, -3e38]]
    for c, values in enumerate(special):
        w[c] = torch.tensor(values * 18)[:18].reshape(2, 3, 3)
    spec = QuantSpec(algorithm=algorithm, n_levels=r.n_levels, signed=r.lo < 0,
                     granularity="per_channel" if per_channel else "per_tensor")
    conv = QuantConv2d(2, 9, 3, spec=spec, bias=False)
    results = []
    for rows in ([w[c:c + 1] for c in range(9)] if not per_channel else [w]):
        weight = rows.expand(9, 2, 3, 3).contiguous() if not per_channel else rows
        with torch.no_grad():
            conv.weight.copy_(weight)
        conv.init_bounds()
        got = conv.weight_quantiser.eps.clone()
        a, b = (weight.reshape(9, -1).amin(1), weight.reshape(9, -1).amax(1)) if per_channel \
            else (weight.amin(), weight.amax())
        results.append((got, old.eps_covering(a, b, r)))
    for got, want in results:
        assert _same(got, want)
    assert len(calls) == len(results)
