"""INQ: incremental network quantisation (Zhou et al. 2017), for weights only.

Levels, with s = the clipping bound observed at initialisation (max|w| for ``minmax``):

* ``pow2``: {0, ±2^i : i = n2..n1}, n1 = ⌊log2(4s/3)⌋, n2 = n1 + 2 - ⌊K/2⌋ (2⌊K/2⌋ - 1
  levels). On the grid ε = 2^n2 the integers are {0, ±2^j : j = 0..⌊K/2⌋-2}, a codebook
  inside the range [-2^e, 2^e], e = ⌊K/2⌋-2 (:attr:`InqQuantiser.int_range`,
  :meth:`InqQuantiser.levels`).
* ``uniform``: the spec's integer range at ε = s/m(R), as every other quantiser (rather
  than QuantLib's linspace(-s, s, K), whose levels for even K are not an integer grid).

A weight is quantised to the nearest level (ties go up). Following the schedule, at the
start of each listed epoch the frozen fraction grows: the free weights of largest |w|
(``magnitude``) or random ones (``random``) are replaced by their quantised value and
stop learning. ``frozen_weight`` holds the frozen values and NaN where weights are free;

    forward  w_eff = frozen where frozen, w elsewhere;    ∂w_eff/∂w = 1[w is free]

so with fraction 1 the layer is fully quantised.
"""

from __future__ import annotations

import math

import torch
from torch.autograd import Function

from edgeq.numerics.intrange import IntRange
from edgeq.train.algorithms.base import Quantiser, register_quantiser
from edgeq.train.quantiser import (
    FALLBACK_BOUND,
    bound_from_eps,
    eps_from_bound,
    expand_eps,
    int_quantise,
)


class InqFreezeFn(Function):
    """w_eff = where(frozen is NaN, w, frozen); the gradient reaches free weights only."""

    @staticmethod
    def forward(ctx, w, frozen):
        free = torch.isnan(frozen)
        ctx.save_for_backward(free)
        return torch.where(free, w, frozen)

    @staticmethod
    def backward(ctx, g):
        (free,) = ctx.saved_tensors
        return g * free, None


def pow2_exponents(s: torch.Tensor, n_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n1, n2) = (⌊log2(4s/3)⌋, n1 + 2 - ⌊K/2⌋), computed in float64 for exact powers."""
    n1 = torch.floor(torch.log2(4.0 * s.double() / 3.0))
    return n1, n1 + 2 - n_levels // 2


def pow2_codebook(n_levels: int) -> torch.Tensor:
    """Sorted integers {0, ±2^j : j = 0..⌊K/2⌋-2} (float64)."""
    powers = 2.0 ** torch.arange(n_levels // 2 - 1, dtype=torch.float64)
    return torch.cat([-powers.flip(0), torch.zeros(1, dtype=torch.float64), powers])


def nearest_level(u: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The codebook entry nearest to u (ties go to the larger entry, as round half up)."""
    book = codebook.to(u.dtype).to(u.device)
    mids = (book[1:] + book[:-1]) / 2
    return book[torch.searchsorted(mids, u.contiguous(), right=True)]


@register_quantiser("inq")
class InqQuantiser(Quantiser):
    """Buffers ``bound`` (s per tensor/channel) and ``frozen_weight`` (NaN = free)."""

    weights_only = True
    refits_on_step = False

    def __init__(self, spec, n_channels=None, channel_dim=0, *, weight_shape):
        super().__init__(spec, n_channels, channel_dim)
        self.pow2 = spec.params.levels == "pow2"
        if self.pow2:
            e = spec.n_levels // 2 - 2
            self.int_range = IntRange.from_bounds(-(2**e), 2**e)
        self.register_buffer("bound", torch.ones(self.eps_shape))
        self.register_buffer("frozen_weight", torch.full(tuple(weight_shape), float("nan")))

    # -- scale and levels -------------------------------------------------------------
    @property
    def eps(self) -> torch.Tensor:
        """pow2: 2^n2; uniform: s/m(R)."""
        if self.pow2:
            return torch.exp2(pow2_exponents(self.bound, self.spec.n_levels)[1]).float()
        return eps_from_bound(self.bound, self.int_range)

    def _store_eps(self, eps: torch.Tensor) -> None:
        if self.pow2:  # ε = 2^n2 holds for s in [3/4·2^n1, 3/2·2^n1): take s = 2^n1
            self.bound.copy_(eps.double() * 2.0 ** (self.spec.n_levels // 2 - 2))
        else:
            self.bound.copy_(bound_from_eps(eps, self.int_range))

    def initialise(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """pow2: s = max(|a|, |b|); uniform: ε covering [a, b]."""
        if not self.pow2:
            return super().initialise(a, b)
        s = torch.maximum(torch.as_tensor(a).abs(), torch.as_tensor(b).abs()).float()
        s = torch.where(torch.isfinite(s) & (s > 0), s, torch.full_like(s, FALLBACK_BOUND))
        with torch.no_grad():
            self.bound.copy_(s.expand(self.eps_shape))
            self.initialised.fill_(True)

    def levels(self) -> torch.Tensor | None:
        """The integer codebook (pow2), or None when every integer of the range is a level."""
        return pow2_codebook(self.spec.n_levels).to(torch.int64) if self.pow2 else None

    # -- quantisation -----------------------------------------------------------------
    @torch.no_grad()
    def integers(self, x: torch.Tensor) -> torch.Tensor:
        """Integers of the *effective* weight (frozen values where frozen)."""
        w = torch.where(torch.isnan(self.frozen_weight), x, self.frozen_weight)
        eps = self.eps
        if not self.pow2:
            return int_quantise(w, eps, self.int_range, self.channel_dim)
        u = w / expand_eps(eps, w, self.channel_dim)
        return nearest_level(u, pow2_codebook(self.spec.n_levels))

    @torch.no_grad()
    def quantised(self, x: torch.Tensor) -> torch.Tensor:
        """ε·x̂ of the effective weight."""
        return expand_eps(self.eps, x, self.channel_dim) * self.integers(x)

    @property
    def frozen_fraction(self) -> float:
        return float((~torch.isnan(self.frozen_weight)).float().mean())

    @torch.no_grad()
    def freeze_fraction(self, x: torch.Tensor, fraction: float, seed: int = 0) -> None:
        """Freeze more weights of ``x`` until ⌊fraction·N + 1/2⌋ are frozen."""
        free = torch.isnan(self.frozen_weight).flatten()
        n_total = free.numel()
        n_new = math.floor(fraction * n_total + 0.5) - (n_total - int(free.sum()))
        if n_new <= 0:
            return
        free_idx = torch.nonzero(free).flatten()
        if self.spec.params.strategy == "magnitude":
            order = torch.argsort(
                x.detach().flatten()[free_idx].abs(), descending=True, stable=True
            )
        else:
            order = torch.randperm(free_idx.numel(), generator=torch.Generator().manual_seed(seed))
        chosen = free_idx[order[:n_new].to(free_idx.device)]
        values = self.quantised(x.detach()).flatten()
        flat = self.frozen_weight.view(-1)
        flat[chosen] = values[chosen].to(flat.dtype)

    def set_epoch(self, epoch: int, x: torch.Tensor | None = None) -> None:
        """Freeze up to the schedule's fraction for ``epoch`` (``x`` = the float weight)."""
        if x is None:
            raise ValueError("INQ needs the weight to freeze (set_epoch(epoch, weight))")
        p = self.spec.params
        self.freeze_fraction(x, p.fraction(epoch), seed=p.seed * 1_000_003 + epoch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            # ONNX export: the NaN mask becomes constants (x·free + frozen, exact for finite
            # x), so the file needs no IsNaN/Where.
            frozen = self.frozen_weight.detach()
            free = torch.tensor(torch.isnan(frozen).tolist(), dtype=x.dtype)
            return x * free + torch.tensor(torch.nan_to_num(frozen, nan=0.0).tolist(),
                                           dtype=x.dtype)
        return InqFreezeFn.apply(x, self.frozen_weight)
