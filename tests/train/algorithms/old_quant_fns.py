"""The quantiser core and the PACT and ANA autograd Functions as they were before the
training-speed work (commit d089d34), kept verbatim as the reference the faster code must
equal bit for bit."""
# ruff: noqa

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.autograd import Function

from edgeq.numerics.intrange import IntRange

FALLBACK_BOUND = 1.0


def bound_divisor(r: IntRange) -> int:
    """m(R) with ε = bound/m: |lo| for signed ranges (⌊K/2⌋; 1 for {-1,+1}), hi = K-1 else."""
    return -r.lo if r.lo < 0 else r.hi


def eps_from_bound(bound: torch.Tensor, r: IntRange) -> torch.Tensor:
    """ε = bound / m(R)."""
    return bound / bound_divisor(r)


def bound_from_eps(eps: torch.Tensor, r: IntRange) -> torch.Tensor:
    """bound = ε·m(R) (inverse of :func:`eps_from_bound`)."""
    return eps * bound_divisor(r)


def clip_bounds(eps: torch.Tensor, r: IntRange) -> tuple[torch.Tensor, torch.Tensor]:
    """The float clipping interval [lo·ε, hi·ε] of the grid."""
    return r.lo * eps, r.hi * eps


def eps_covering(a: torch.Tensor, b: torch.Tensor, r: IntRange) -> torch.Tensor:
    """Smallest ε whose grid interval [lo·ε, hi·ε] contains [a, b] as far as R's sign allows.

    ε = max(b/hi, a/lo) (the term a/lo only when lo < 0: an unsigned range cannot cover
    negative values, so they are clipped). Non-positive or non-finite results fall back to
    ε = FALLBACK_BOUND/m(R).
    """
    a, b = _as_float(a), _as_float(b)
    eps = torch.clamp(b / r.hi, min=0.0)
    if r.lo < 0:
        eps = torch.maximum(eps, a / r.lo)
    fallback = torch.full_like(eps, FALLBACK_BOUND / bound_divisor(r))
    return torch.where(torch.isfinite(eps) & (eps > 0), eps, fallback)


def _as_float(t) -> torch.Tensor:
    t = torch.as_tensor(t)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def expand_eps(eps: torch.Tensor, x: torch.Tensor, channel_dim: int = 0) -> torch.Tensor:
    """Broadcast ε of shape [] or [C] against ``x`` (the C axis is ``channel_dim`` of x)."""
    if eps.dim() == 0:
        return eps
    shape = [1] * x.dim()
    shape[channel_dim] = eps.numel()
    return eps.reshape(shape)


def round_half_up(t: torch.Tensor) -> torch.Tensor:
    """floor(t + 1/2): ties go towards +inf (2.5 -> 3, -2.5 -> -2), as numerics.rounding."""
    return torch.floor(t + 0.5)


def int_quantise(
    x: torch.Tensor, eps: torch.Tensor, r: IntRange, channel_dim: int = 0
) -> torch.Tensor:
    """x̂ = clip(floor(x/ε + 1/2), lo, hi); for {-1, +1}: x̂ = +1 if x >= 0 else -1.

    Returns a float tensor holding integers (so it can feed autograd code); see
    :func:`to_int64` for the integer dtype.
    """
    e = expand_eps(eps, x, channel_dim)
    if r.step != 1:
        # bipolar binary: the one threshold between -1 and +1 is 0, and 0 itself goes up
        return torch.where(x >= 0, float(r.hi), float(r.lo)).to(x.dtype)
    t = x / e
    if _tracked(t):
        return torch.clamp(round_half_up(t), r.lo, r.hi)
    # t is a fresh temporary nobody else holds: round and clip it in place (same values as
    # above, without three more tensors of x's size to allocate — this runs every step)
    return t.add_(0.5).floor_().clamp_(r.lo, r.hi)


def fake_quantise(
    x: torch.Tensor, eps: torch.Tensor, r: IntRange, channel_dim: int = 0
) -> torch.Tensor:
    """x̃ = ε·x̂ with x̂ = :func:`int_quantise` (x, ε, R)."""
    e = expand_eps(eps, x, channel_dim)
    q = int_quantise(x, eps, r, channel_dim)
    if _tracked(q) or torch.result_type(e, q) != q.dtype:
        return e * q
    return q.mul_(e)  # fresh temporary again; ε·x̂ = x̂·ε exactly


def _tracked(t: torch.Tensor) -> bool:
    """True when autograd records ops on ``t`` (then in-place rounding must not be used)."""
    return t.requires_grad and torch.is_grad_enabled()


def indicator(compare, x: torch.Tensor, bound) -> torch.Tensor:
    """``compare(x, bound)`` (e.g. ``torch.ge``) as 1.0/0.0 in x's dtype.

    The same values as ``compare(x, bound).to(x.dtype)``, but the comparison writes
    straight into a float tensor: on CPU the bool kernels are not vectorised, and a bool
    mask plus its conversion cost about ten times as much. The quantiser autograd
    Functions build their masks with this, as multiplying by a float mask is cheap too.
    """
    return compare(x, bound, out=torch.empty_like(x))


def in_range_mask(
    x: torch.Tensor, eps: torch.Tensor, r: IntRange, channel_dim: int = 0
) -> torch.Tensor:
    """1[lo·ε <= x < hi·ε]: where straight-through gradients pass (PACT convention)."""
    e = expand_eps(eps, x, channel_dim)
    lo, hi = clip_bounds(e, r)
    return (x >= lo) & (x < hi)


def in_range_indicator(
    x: torch.Tensor, eps: torch.Tensor, r: IntRange, channel_dim: int = 0
) -> torch.Tensor:
    """:func:`in_range_mask` as 1.0/0.0 in x's dtype (built with :func:`indicator`)."""
    lo, hi = clip_bounds(expand_eps(eps, x, channel_dim), r)
    return indicator(torch.ge, x, lo).mul_(indicator(torch.lt, x, hi))


def to_int64(x_int: torch.Tensor) -> torch.Tensor:
    """Float tensor of exact integers -> int64 (exact below 2^24 in fp32, 2^53 in fp64)."""
    return x_int.detach().to(torch.int64)


def reduce_to_channels(t: torch.Tensor, eps: torch.Tensor, channel_dim: int = 0) -> torch.Tensor:
    """Sum ``t`` down to the shape of ε: everything ([]), or all but ``channel_dim`` ([C])."""
    if eps.dim() == 0:
        return t.sum()
    dims = [d for d in range(t.dim()) if d != channel_dim]
    return t.sum(dim=dims) if dims else t

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



_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Noise:
    """A standardised noise distribution: CDF, density, sampler and truncation radius.

    ``radius[dtype]`` is R with F(-R) negligible at that dtype's precision.
    """

    cdf: Callable[[torch.Tensor], torch.Tensor]
    pdf: Callable[[torch.Tensor], torch.Tensor]
    sample: Callable[[torch.Tensor], torch.Tensor]  # returns z shaped like the argument
    radius32: float
    radius64: float

    def radius(self, dtype: torch.dtype) -> float:
        return self.radius64 if dtype == torch.float64 else self.radius32


def _tri_cdf(z):
    left = 0.5 * (1.0 + z).clamp(0, 1).pow(2)
    right = 1.0 - 0.5 * (1.0 - z).clamp(0, 1).pow(2)
    return torch.where(z < 0, left, right)


NOISES: dict[str, Noise] = {
    # uniform on [-1, 1]: F = clip((z + 1)/2, 0, 1), f = 1/2 on [-1, 1]
    "uniform": Noise(
        cdf=lambda z: ((z + 1.0) * 0.5).clamp(0.0, 1.0),
        pdf=lambda z: 0.5 * (z.abs() <= 1.0).to(z.dtype),
        sample=lambda x: torch.rand_like(x) * 2.0 - 1.0,
        radius32=1.0,
        radius64=1.0,
    ),
    # triangular on [-1, 1] with its peak at 0: f = max(1 - |z|, 0); z = U1 - U2
    "triangular": Noise(
        cdf=_tri_cdf,
        pdf=lambda z: (1.0 - z.abs()).clamp_min(0.0),
        sample=lambda x: torch.rand_like(x) - torch.rand_like(x),
        radius32=1.0,
        radius64=1.0,
    ),
    # standard normal: F = (1 + erf(z/√2))/2
    "normal": Noise(
        cdf=lambda z: 0.5 * (1.0 + torch.erf(z / _SQRT2)),
        pdf=lambda z: _INV_SQRT_2PI * torch.exp(-0.5 * z * z),
        sample=torch.randn_like,
        radius32=6.0,
        radius64=9.0,
    ),
    # logistic with scale 1: F = sigmoid(z), f = F(1 - F); z = logit(U)
    "logistic": Noise(
        cdf=torch.sigmoid,
        pdf=lambda z: torch.sigmoid(z) * torch.sigmoid(-z),
        sample=lambda x: torch.logit(torch.rand_like(x).clamp(1e-7, 1 - 1e-7)),
        radius32=18.0,
        radius64=40.0,
    ),
}


# --------------------------------------------------------------------------------------
# thresholds near u + μ
# --------------------------------------------------------------------------------------
def threshold_window(v: torch.Tensor, r: IntRange, reach: int):
    """Threshold indices i near v (shape v.shape + [J]), their validity, and the count of
    thresholds below the window (all crossed). Dense (all K-1 thresholds) when small."""
    n_thr = r.n_levels - 1
    offsets = torch.arange(-reach, reach + 1, device=v.device, dtype=v.dtype)
    if 2 * reach + 1 >= n_thr:
        idx = torch.arange(n_thr, device=v.device, dtype=v.dtype).expand(*v.shape, n_thr)
        return idx, torch.ones_like(idx, dtype=torch.bool), torch.zeros_like(v)
    centre = torch.floor((v - r.lo) / r.step - 0.5)  # highest threshold index with t_i <= v
    idx = centre.unsqueeze(-1) + offsets
    valid = (idx >= 0) & (idx <= n_thr - 1)
    below = (centre - reach).clamp(0, n_thr)
    return idx, valid, below


def _z(v, idx, r: IntRange, sigma: float):
    """Standardised distance of v from the thresholds t_i = lo + s·(i + 1/2)."""
    return (v.unsqueeze(-1) - (r.lo + r.step * (idx + 0.5))) / sigma


def _reach(sigma: float, noise: Noise, r: IntRange, dtype) -> int:
    return int(math.ceil(noise.radius(dtype) * sigma / r.step)) + 1


def ana_expectation(v: torch.Tensor, r: IntRange, sigma: float, noise: Noise) -> torch.Tensor:
    """E[q] = q_0 + s·Σ_i F((v - t_i)/σ), v = u + μ (units of ε)."""
    idx, valid, below = threshold_window(v, r, _reach(sigma, noise, r, v.dtype))
    crossed = (noise.cdf(_z(v, idx, r, sigma)) * valid).sum(-1)
    return r.lo + r.step * (below + crossed)


def ana_derivative(v: torch.Tensor, r: IntRange, sigma: float, noise: Noise) -> torch.Tensor:
    """dE[q]/dv = s·Σ_i f((v - t_i)/σ)/σ."""
    idx, valid, _ = threshold_window(v, r, _reach(sigma, noise, r, v.dtype))
    return r.step * (noise.pdf(_z(v, idx, r, sigma)) * valid).sum(-1) / sigma


def ana_mode(v: torch.Tensor, r: IntRange, sigma: float, noise: Noise) -> torch.Tensor:
    """The most probable level; ties go to the upper level."""
    idx, valid, _ = threshold_window(v, r, _reach(sigma, noise, r, v.dtype))
    c = noise.cdf(_z(v, idx, r, sigma))
    # thresholds outside [0, K-2] are virtual: at -inf below (crossed), +inf above
    c = torch.where(valid, c, (idx < 0).to(c.dtype))
    # just outside the window: crossed unless above the top threshold (below: F ~ 1),
    # not crossed unless below the bottom one (above: F ~ 0)
    first, last = idx[..., :1] - 1, idx[..., -1:] + 1
    c = torch.cat([(first <= r.n_levels - 2).to(c.dtype), c, (last < 0).to(c.dtype)], dim=-1)
    p = c[..., :-1] - c[..., 1:]  # bins idx[0] .. idx[-1] + 1
    top = p.shape[-1] - 1 - torch.argmax(p.flip(-1), dim=-1)
    # a window entirely outside the range has p = 0 everywhere: clamping picks the end bin
    k = (idx[..., 0] + top).clamp(0, r.n_levels - 1)
    return r.lo + r.step * k


def hard_units(v: torch.Tensor, r: IntRange) -> torch.Tensor:
    """The hard quantiser in units of ε: clip(floor(v + 1/2), lo, hi) (binary: sign)."""
    return int_quantise(v, torch.ones((), dtype=v.dtype, device=v.device), r)


class AnaQuantFn(Function):
    """Inputs (x, ε, μ, σ, R, channel_dim, noise name, strategy); see the module docstring."""

    @staticmethod
    def forward(ctx, x, eps, mu: float, sigma: float, r, channel_dim, noise_name, strategy):
        e = expand_eps(eps, x, channel_dim)
        v = x / e + mu
        noise = NOISES[noise_name]
        ctx.r, ctx.sigma, ctx.noise = r, sigma, noise
        if sigma <= 0.0:
            ctx.save_for_backward(in_range_mask(x, eps, r, channel_dim))
            return e * hard_units(v, r)
        ctx.save_for_backward(v)
        if strategy == "expectation":
            q = ana_expectation(v, r, sigma, noise)
        elif strategy == "mode":
            q = ana_mode(v, r, sigma, noise)
        else:
            q = hard_units(v + sigma * noise.sample(v), r)
        return e * q

    @staticmethod
    def backward(ctx, g):
        (saved,) = ctx.saved_tensors
        if ctx.sigma <= 0.0:
            grad = g * saved
        else:
            grad = g * ana_derivative(saved, ctx.r, ctx.sigma, ctx.noise)
        return grad, None, None, None, None, None, None, None


