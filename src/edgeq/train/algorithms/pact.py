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

import torch
from torch import nn
from torch.autograd import Function

from edgeq.numerics.intrange import IntRange
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
        eps = eps_from_bound(bound, r)
        lo, hi = clip_bounds(expand_eps(eps, x, channel_dim), r)
        below, above = indicator(torch.lt, x, lo), indicator(torch.ge, x, hi)
        ctx.save_for_backward(below, above, bound)
        ctx.r, ctx.channel_dim, ctx.clip_gradient = r, channel_dim, clip_gradient
        return fake_quantise(x, eps, r, channel_dim)

    @staticmethod
    def backward(ctx, g):
        below, above, bound = ctx.saved_tensors
        grad_x = g * _inside(below, above) if ctx.clip_gradient else g
        grad_b = None
        if ctx.needs_input_grad[1]:
            local = _bound_derivative(below, above, ctx.r)
            grad_b = reduce_to_channels(g * local, bound, ctx.channel_dim)
        return grad_x, grad_b, None, None, None


def _inside(below: torch.Tensor, above: torch.Tensor) -> torch.Tensor:
    """1 - below - above: 1.0 inside the range (the 0/1 masks never overlap)."""
    return (below + above).neg_().add_(1.0)


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
        return pact_quantise(x, self.positive_bound, self.int_range, self.channel_dim, clip)
