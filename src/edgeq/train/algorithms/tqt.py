"""TQT: trained quantisation thresholds (Jain et al. 2020) — a learned log2 threshold.

The parameter is l = log2 t; the bound is t = 2^l (β for unsigned, α for signed ranges),
ε = t/m(R). Scales are *not* rounded to powers of two. Forward as PACT; backward with the
rounding straight-through, so that d(ε·round(x/ε))/dε = round(x/ε) - x/ε inside the range:

    ∂y/∂x = 1[lo·ε <= x < hi·ε]
    ∂y/∂l = ln2·(y - x)   inside,   ln2·hi·ε  if x >= hi·ε,   ln2·lo·ε  if x < lo·ε
          = ln2·(y - x·1[inside])

The summed gradient g_l then goes through :class:`NormaliseGradFn`, an Adam-like running
RMS normalisation with state in the quantiser:

    v ← β·v + (1-β)·g_l²,  v̂ = v/(1-β^n),  g_l ← g_l/(√v̂ + norm_eps),  then tanh(g_l) if asked

(n counts the backward passes), which makes the threshold's step size independent of the
loss scale.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd import Function

from edgeq.numerics.intrange import IntRange
from edgeq.train.algorithms.base import Quantiser, register_quantiser
from edgeq.train.quantiser import (
    bound_divisor,
    clip_bounds,
    expand_eps,
    fake_quantise,
    indicator,
    reduce_to_channels,
)

LN2 = math.log(2.0)


class TqtQuantFn(Function):
    """Forward and backward of the module docstring; inputs (x, log2_t, R, channel_dim)."""

    @staticmethod
    def forward(ctx, x, log2_t, r: IntRange, channel_dim: int):
        eps = torch.exp2(log2_t) / bound_divisor(r)
        lo, hi = clip_bounds(expand_eps(eps, x, channel_dim), r)
        # a float 0/1 mask (same products as a bool one, much cheaper on CPU)
        inside = indicator(torch.ge, x, lo).mul_(indicator(torch.lt, x, hi))
        y = fake_quantise(x, eps, r, channel_dim)
        ctx.save_for_backward(x, y, inside, log2_t)
        ctx.channel_dim = channel_dim
        return y

    @staticmethod
    def backward(ctx, g):
        x, y, inside, log2_t = ctx.saved_tensors
        grad_x = g * inside
        grad_l = None
        if ctx.needs_input_grad[1]:
            local = LN2 * (y - x * inside)
            grad_l = reduce_to_channels(g * local, log2_t, ctx.channel_dim)
        return grad_x, grad_l, None, None


class NormaliseGradFn(Function):
    """Identity forward; backward normalises the gradient by its running RMS (see module).

    ``v`` (same shape as the parameter) and ``n`` (int64 scalar) are updated in place.
    """

    @staticmethod
    def forward(ctx, t, v, n, beta: float, norm_eps: float, use_tanh: bool):
        ctx.state = (v, n, beta, norm_eps, use_tanh)
        return t.clone()

    @staticmethod
    def backward(ctx, g):
        v, n, beta, norm_eps, use_tanh = ctx.state
        n += 1
        v.mul_(beta).add_((1.0 - beta) * g.detach().pow(2))
        v_hat = v / (1.0 - beta ** int(n))
        g = g / (v_hat.sqrt() + norm_eps)
        if use_tanh:
            g = torch.tanh(g)
        return g, None, None, None, None, None


def tqt_quantise(
    x: torch.Tensor, log2_t: torch.Tensor, r: IntRange, channel_dim: int = 0
) -> torch.Tensor:
    """Functional form of :class:`TqtQuantFn` (no gradient normalisation)."""
    return TqtQuantFn.apply(x, log2_t, r, channel_dim)


@register_quantiser("tqt")
class TqtQuantiser(Quantiser):
    """log2 t as an ``nn.Parameter``; buffers ``grad_sq`` (v) and ``n_steps`` (n)."""

    def __init__(self, spec, n_channels=None, channel_dim=0):
        super().__init__(spec, n_channels, channel_dim)
        self.log2_t = nn.Parameter(torch.zeros(self.eps_shape))
        self.register_buffer("grad_sq", torch.zeros(self.eps_shape))
        self.register_buffer("n_steps", torch.zeros((), dtype=torch.int64))

    @property
    def eps(self) -> torch.Tensor:
        return torch.exp2(self.log2_t) / bound_divisor(self.int_range)

    def _store_eps(self, eps: torch.Tensor) -> None:
        self.log2_t.copy_(torch.log2(eps * bound_divisor(self.int_range)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            # ONNX export: ONNX has no exp2, so ε enters the traced graph as a constant
            # (the same float32 values; the dead exp2 node is dropped by the exporter).
            eps = torch.tensor(self.eps.detach().tolist(), dtype=self.log2_t.dtype)
            return fake_quantise(x, eps, self.int_range, self.channel_dim)
        p = self.spec.params
        log2_t = self.log2_t
        if log2_t.requires_grad and torch.is_grad_enabled():
            log2_t = NormaliseGradFn.apply(
                log2_t, self.grad_sq, self.n_steps, p.beta, p.norm_eps, p.use_tanh
            )
        return tqt_quantise(x, log2_t, self.int_range, self.channel_dim)
