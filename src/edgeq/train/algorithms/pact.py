"""PACT: a learnable clipping bound (Choi et al. 2018), for unsigned and almost-symmetric
signed ranges, per tensor or per output channel.

With bound b (β for unsigned ranges, α = |lower clip| for signed ones) and m = m(R)
(:func:`edgeq.train.quantiser.bound_divisor`): ε = b/m, clip interval [lo·ε, hi·ε] and

    forward   y = ε·clip(floor(x/ε + 1/2), lo, hi)
    ∂y/∂x     = 1[lo·ε <= x < hi·ε]            (or 1 without ``clip_gradient``)
    ∂y/∂b     = (hi/m)·1[x >= hi·ε] + (lo/m)·1[x < lo·ε]

so an unsigned bound gets Σ g·1[x >= β] and a signed one -Σ g·1[x < -α] + r·Σ g·1[x >= rα]
with r = hi/|lo| ((K-2)/K for even K, 1 for odd K and for {-1, +1}). Inside the range the
rounding is straight-through, so b gets no gradient there (unlike TQT). The bound
gradient is summed over everything (per tensor) or over all but ``channel_dim``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.autograd import Function

from edgeq.numerics.intrange import IntRange
from edgeq.train import native
from edgeq.train.algorithms.base import Quantiser, register_quantiser
from edgeq.train.quantiser import (
    bound_divisor,
    bound_from_eps,
    clip_bounds,
    eps_from_bound,
    expand_eps,
    fake_quantise,
    indicator,
    reduce_to_channels,
    sum_to_channels,
    tensor_cache,
)

# Smallest bound magnitude used, so that ε never reaches 0.
MIN_BOUND = 1e-12


class PactQuantFn(Function):
    """Forward and backward of the module docstring; inputs (x, bound, R, channel_dim, clip).

    The masks are float 0/1 tensors (:func:`~edgeq.train.quantiser.indicator`): on CPU
    that is several times cheaper than bool masks, and the products are the same.
    """

    @staticmethod
    def forward(ctx, x, bound, r: IntRange, channel_dim: int, clip_gradient: bool):
        y, below, above = _pact_forward(x, bound, r, channel_dim)
        ctx.save_for_backward(below, above, bound)
        ctx.r, ctx.channel_dim, ctx.clip_gradient = r, channel_dim, clip_gradient
        return y

    @staticmethod
    def backward(ctx, g):
        below, above, bound = ctx.saved_tensors
        grad_x = g * _inside(below, above) if ctx.clip_gradient else g
        grad_b = None
        if ctx.needs_input_grad[1]:
            local = _bound_derivative(below, above, ctx.r)
            grad_b = reduce_to_channels(g * local, bound, ctx.channel_dim)
        return grad_x, grad_b, None, None, None


class PactRawBoundFn(Function):
    """:class:`PactQuantFn` of the positive bound max(|b|, MIN_BOUND) of a raw parameter b.

    One autograd node instead of three (abs, clamp_min, PACT) on every quantiser call; the
    bound gradient is chained exactly as autograd chains those two ops: clamp_min passes
    it where |b| >= MIN_BOUND (else 0), abs multiplies it by sgn(b).

    Float32 tensors with positive bounds take the fused C kernels
    (:mod:`edgeq.train.native`) where they apply: one pass forward, saving a one-byte
    mask code instead of two float masks, and one pass backward. Otherwise a float32
    bound of one element (activations) takes :func:`_scalar_forward`: its ε, clip values
    and chain factor are Python numbers computed with float32 rounding, so each call runs
    about half the tensor operations, with the same values.
    """

    @staticmethod
    def forward(ctx, x, raw, r: IntRange, channel_dim: int, clip_gradient: bool,
                relu: bool = False):
        ctx.r, ctx.channel_dim, ctx.clip_gradient = r, channel_dim, clip_gradient
        ctx.fused, ctx.relu_out = False, None
        if r.step == 1 and raw.dtype == torch.float32 and native.applies(x):
            # None when a bound is below MIN_BOUND: the code below chains |b| then
            fused = native.pact_forward(x, raw, r.lo, r.hi, bound_divisor(r),
                                        _MIN_BOUND_OF[torch.float32], channel_dim, relu)
            if fused is not None:
                y, code = fused
                ctx.fused, ctx.relu, ctx.per_channel = True, relu, raw.dim() != 0
                ctx.save_for_backward(code)
                return y
        if relu:  # PACT of relu(x), relu's backward applied in ours
            x = ctx.relu_out = torch.relu(x)
        if raw.dim() == 0 and raw.dtype == torch.float32 and x.dtype == torch.float32:
            y, below, above, ctx.chain = _scalar_forward(x, raw, r)
            ctx.save_for_backward(below, above)
            return y
        ctx.chain = None
        ctx.positive = _at_least_min(raw)
        if ctx.positive:  # |b| = max(|b|, MIN) = b, and the chain factor is 1
            y, below, above = _pact_forward(x, raw, r, channel_dim)
            ctx.save_for_backward(below, above, raw)
            return y
        magnitude = raw.abs()
        bound = magnitude.clamp_min(MIN_BOUND)
        y, below, above = _pact_forward(x, bound, r, channel_dim)
        ctx.save_for_backward(below, above, bound, raw, magnitude)
        return y

    @staticmethod
    def backward(ctx, g):
        if ctx.fused:
            return _fused_backward(ctx, g)
        grads = PactRawBoundFn._backward(ctx, g)
        if ctx.relu_out is None:
            return grads
        # relu's own backward, as autograd ran it after ours: 0 where relu(x) <= 0
        return (torch.ops.aten.threshold_backward(grads[0], ctx.relu_out, 0), *grads[1:], None)

    @staticmethod
    def _backward(ctx, g):
        below, above = ctx.saved_tensors[:2]
        grad_x = g * _inside(below, above) if ctx.clip_gradient else g
        if not ctx.needs_input_grad[1]:
            return grad_x, None, None, None, None
        local = _bound_derivative(below, above, ctx.r)
        if ctx.chain is not None:  # one-element bound: sum everything, chain in Python
            return grad_x, _chain_scalar((g * local).sum(), ctx.chain), None, None, None
        if ctx.positive:  # where(True, grad_b, 0)·1 is grad_b
            return (grad_x, reduce_to_channels(g * local, ctx.saved_tensors[2], ctx.channel_dim),
                    None, None, None)
        bound, raw, magnitude = ctx.saved_tensors[2:]
        grad_b = reduce_to_channels(g * local, bound, ctx.channel_dim)
        passed = torch.where(magnitude >= MIN_BOUND, grad_b, torch.zeros((), dtype=grad_b.dtype))
        return grad_x, passed * raw.sgn(), None, None, None


def _fused_backward(ctx, g):
    """The backward of a fused forward: the bound gradient is the sum of
    g·(c_hi·above + c_lo·below) (:func:`_bound_derivative`'s local factor), as before."""
    (code,) = ctx.saved_tensors
    m = bound_divisor(ctx.r)
    grad_x, prod = native.pact_backward(g, code, ctx.r.hi / m, ctx.r.lo / m,
                                        ctx.clip_gradient, ctx.needs_input_grad[1], ctx.relu)
    grad_b = None if prod is None else sum_to_channels(prod, ctx.per_channel, ctx.channel_dim)
    return grad_x, grad_b, None, None, None, None


# MIN_BOUND as the float32 and float64 tensor ops see it (a Python float is cast to the
# tensor's dtype by clamp_min and by comparisons)
_MIN_BOUND_OF = {torch.float32: float(np.float32(MIN_BOUND)), torch.float64: MIN_BOUND}


def _at_least_min(raw: torch.Tensor) -> bool:
    """True when every raw bound b >= MIN_BOUND (so |b| = max(|b|, MIN) = b, sgn b = 1):
    the usual case, checked on the host (a handful of channels) to skip five tensor ops.
    False for NaN, and for dtypes not in the table."""
    threshold = _MIN_BOUND_OF.get(raw.dtype)
    return threshold is not None and all(b >= threshold for b in raw.reshape(-1).tolist())


def _scalar_forward(x: torch.Tensor, raw: torch.Tensor, r: IntRange):
    """(y, below, above, chain) for a float32 0-dim raw bound, ε as a Python number.

    numpy float32 scalars round as the float32 tensor ops do: |b| and max(|b|, MIN) are
    exact, b/m is one float32 division; ``x/ε`` and ``q·ε`` with ε a Python float holding
    that float32 value compute what they computed with the 0-dim tensor (tested).
    ``chain`` is (|b| >= MIN_BOUND, sgn(b)) for :func:`_chain_scalar`.
    """
    b = np.float32(raw.item())
    magnitude = np.abs(b)
    bound = np.maximum(magnitude, np.float32(MIN_BOUND))  # NaN stays NaN, as clamp_min
    eps = bound / np.float32(bound_divisor(r))
    lo, hi = float(np.float32(r.lo) * eps), float(np.float32(r.hi) * eps)
    below, above = indicator(torch.lt, x, lo), indicator(torch.ge, x, hi)
    e = float(eps)
    if r.step != 1:  # bipolar binary: ±1 by the sign, as int_quantise
        q = torch.where(x >= 0, float(r.hi), float(r.lo)).to(x.dtype)
    else:
        q = torch.div(x, e).add_(0.5).floor_().clamp_(r.lo, r.hi)
    chain = (bool(magnitude >= np.float32(MIN_BOUND)), np.sign(b))
    return q.mul_(e), below, above, chain


def _chain_scalar(grad_b: torch.Tensor, chain: tuple[bool, np.float32]) -> torch.Tensor:
    """The bound gradient through clamp_min and abs, as autograd computes it:
    where(|b| >= MIN, grad_b, 0)·sgn(b). For |b| >= MIN, sgn(b) is ±1 and the product is
    grad_b or -grad_b exactly; below it, the float32 0·sgn(b) (a signed zero, NaN for a
    NaN b)."""
    passed, sign = chain
    if not passed:
        return torch.tensor(np.float32(0.0) * sign, dtype=grad_b.dtype)
    return grad_b if sign == 1.0 else grad_b.neg_()


def _pact_forward(x, bound, r: IntRange, channel_dim: int):
    """(ε·x̂, 1[x < lo·ε], 1[x >= hi·ε]) for the positive ``bound``."""
    eps = eps_from_bound(bound, r)
    lo, hi = _clip_values(eps, x, r, channel_dim)
    below, above = indicator(torch.lt, x, lo), indicator(torch.ge, x, hi)
    e = expand_eps(eps, x, channel_dim)
    if r.step != 1 or e.dtype != x.dtype or torch.jit.is_tracing():  # ONNX has no addcdiv
        return fake_quantise(x, eps, r, channel_dim), below, above
    # x/ε + 1/2 in one op: addcdiv computes 0.5 + 1·x/ε, the quotient rounded on its own
    # (tested equal to the two ops), then floor, clip and ·ε in place
    q = torch.addcdiv(_half(x.dtype, x.device), x, e).floor_().clamp_(r.lo, r.hi)
    return q.mul_(e), below, above


@tensor_cache(maxsize=8)
def _half(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A 0-dim 1/2 (a cached, read-only constant)."""
    return torch.tensor(0.5, dtype=dtype, device=device)


def _clip_values(eps: torch.Tensor, x: torch.Tensor, r: IntRange, channel_dim: int):
    """The clip interval [lo·ε, hi·ε] as :func:`clip_bounds` computes it. For one float32
    ε (activations) as Python numbers: the float32 products lo·ε, hi·ε (numpy float32
    rounds them as torch does) compare with x exactly as the 0-dim tensors did, without
    two tensor ops per call."""
    if eps.dim() == 0 and eps.dtype == torch.float32 and x.dtype == torch.float32:
        e = np.float32(eps.item())
        return float(np.float32(r.lo) * e), float(np.float32(r.hi) * e)
    return clip_bounds(expand_eps(eps, x, channel_dim), r)


def _inside(below: torch.Tensor, above: torch.Tensor) -> torch.Tensor:
    """1 - below - above: 1.0 inside the range (the 0/1 masks never overlap), +0 outside,
    in two ops: (1 - below) - above."""
    return torch.rsub(below, 1.0).sub_(above)


def _bound_derivative(below: torch.Tensor, above: torch.Tensor, r: IntRange) -> torch.Tensor:
    """∂y/∂b = (hi/m)·above + (lo/m)·below, with the terms that are exact no-ops skipped.

    Unsigned ranges have hi/m = 1 and lo/m = 0, so this is ``above`` itself (1·a = a and
    a + 0 = a exactly); signed ones have lo/m = -1. The saved masks are never modified.
    """
    m = bound_divisor(r)
    c_hi, c_lo = r.hi / m, r.lo / m
    local = above if c_hi == 1.0 else c_hi * above
    if c_lo != 0.0:
        # below is 0 or 1, so c_lo·below is exact and the one rounding is that of the sum
        local = torch.add(local, below, alpha=c_lo)
    return local


def pact_quantise(
    x: torch.Tensor, bound: torch.Tensor, r: IntRange, channel_dim: int = 0, clip_gradient=True
) -> torch.Tensor:
    """Functional form of :class:`PactQuantFn`."""
    return PactQuantFn.apply(x, bound, r, channel_dim, clip_gradient)


@register_quantiser("pact")
class PactQuantiser(Quantiser):
    """Clipping bound as an ``nn.Parameter`` (trainable when ``params.learn_clip``)."""

    def __init__(self, spec, n_channels=None, channel_dim=0):
        super().__init__(spec, n_channels, channel_dim)
        self.bound = nn.Parameter(torch.ones(self.eps_shape), requires_grad=spec.params.learn_clip)

    @property
    def positive_bound(self) -> torch.Tensor:
        """|b| (an optimiser step may push b through 0), kept away from 0 so ε > 0."""
        return self.bound.abs().clamp_min(MIN_BOUND)

    @property
    def eps(self) -> torch.Tensor:
        return eps_from_bound(self.positive_bound, self.int_range)

    def _store_eps(self, eps: torch.Tensor) -> None:
        self.bound.copy_(bound_from_eps(eps, self.int_range))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clip = self.spec.params.clip_gradient
        return PactRawBoundFn.apply(x, self.bound, self.int_range, self.channel_dim, clip)

    def relu_forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """``forward(relu(x))`` in one fused pass, the same bits as relu then
        :meth:`forward`; None where the fused kernels do not apply (the caller runs the
        two then: a trace records them as they are)."""
        if (self.int_range.step != 1 or self.bound.dtype is not torch.float32
                or not native.applies(x)):
            return None
        clip = self.spec.params.clip_gradient
        return PactRawBoundFn.apply(x, self.bound, self.int_range, self.channel_dim, clip, True)
