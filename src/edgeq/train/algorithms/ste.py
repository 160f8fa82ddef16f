"""STE: a fixed-scale quantiser whose backward passes the gradient straight through.

Forward: y = ε·clip(floor(x/ε + 1/2), lo, hi) (binary: ε·sign(x), sign(0) = +1).
Backward: ∂y/∂x = 1[lo·ε <= x < hi·ε] (``clip_gradient``) or 1; ε gets no gradient —
it comes from the clipping-bound initialisation (and is re-fitted on weights each step
until frozen, see :class:`edgeq.train.modules.QuantModule`).
"""

from __future__ import annotations

import torch
from torch.autograd import Function

from edgeq.numerics.intrange import IntRange
from edgeq.train.algorithms.base import Quantiser, register_quantiser
from edgeq.train.quantiser import fake_quantise, in_range_indicator


class SteQuantFn(Function):
    """y = fq(x; ε, R) with the straight-through gradient g·1[in range] (or g)."""

    @staticmethod
    def forward(ctx, x, eps, r: IntRange, channel_dim: int, clip_gradient: bool):
        ctx.clip_gradient = clip_gradient
        if clip_gradient:
            # a float 0/1 mask: cheaper to build and to multiply by than a bool one
            ctx.save_for_backward(in_range_indicator(x, eps, r, channel_dim))
        return fake_quantise(x, eps, r, channel_dim)

    @staticmethod
    def backward(ctx, g):
        grad_x = g * ctx.saved_tensors[0] if ctx.clip_gradient else g
        return grad_x, None, None, None, None


def ste_quantise(
    x: torch.Tensor, eps: torch.Tensor, r: IntRange, channel_dim: int = 0, clip_gradient=True
) -> torch.Tensor:
    """Functional form of :class:`SteQuantFn` (ε is treated as a constant)."""
    return SteQuantFn.apply(x, eps.detach(), r, channel_dim, clip_gradient)


@register_quantiser("ste")
class SteQuantiser(Quantiser):
    """Fixed scale ε (buffer ``scale``); see the module docstring."""

    def __init__(self, spec, n_channels=None, channel_dim=0):
        super().__init__(spec, n_channels, channel_dim)
        self.register_buffer("scale", torch.ones(self.eps_shape))

    @property
    def eps(self) -> torch.Tensor:
        return self.scale

    def _store_eps(self, eps: torch.Tensor) -> None:
        # ε is stored as is, so that a copied ε (harmonisation) is bit-identical
        self.scale.copy_(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clip = getattr(self.spec.params, "clip_gradient", True)
        return ste_quantise(x, self.eps, self.int_range, self.channel_dim, clip)
