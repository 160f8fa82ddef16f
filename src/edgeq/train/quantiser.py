"""Quantiser core: scale ε, clipping bounds, round-half-up quantisation. No autograd here.

A fake-quantised tensor is ``x̃ = ε·x̂`` with ``x̂`` in an :class:`IntRange` R(z, K)
(DESIGN §2). The parts, each a short function:

* **IntRange** — ``edgeq.numerics.intrange.IntRange`` (the one range type; not redefined).
* **scale ε** — a tensor of shape ``[]`` (per tensor) or ``[C]`` (per channel along
  ``channel_dim``); :func:`expand_eps` broadcasts it against ``x``.
* **clipping bound** — one positive number per ε, the *bound*. ``ε = bound / m(R)`` with
  ``m(R) = K-1`` for unsigned ranges (bound = β, the upper clip: ε = β/(K-1)) and
  ``m(R) = ⌊K/2⌋ = |z|`` for signed almost-symmetric ranges (bound = α, the magnitude of
  the lower clip: ε = α/⌊K/2⌋; the upper clip is then α·(K-1-⌊K/2⌋)/⌊K/2⌋). For the bipolar
  binary range {-1, +1}, m = 1 and ε = α. See :func:`bound_divisor`.
* **rounding** — round half up, ``floor(x/ε + 1/2)`` (DESIGN §3.4), then clip to
  [lo, hi]. The bipolar binary range uses sign(x) with sign(0) = +1 instead, which is the
  same rule with the single threshold 0 between the levels -1 and +1.
"""

from __future__ import annotations

import functools
import math

import torch

from edgeq.numerics.intrange import IntRange

# A bound statistic that is zero, negative or not finite (dead ReLU, all-zero channel)
# cannot define a scale; such channels get this bound so their integers are simply 0.
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
    # 0 < ε < inf is "finite and positive" (NaN fails both); weight ε is re-fitted every
    # step, so this takes as few tensor ops as it can
    usable = torch.gt(eps, 0.0).logical_and_(torch.lt(eps, math.inf))
    return torch.where(usable, eps, _constant(FALLBACK_BOUND / bound_divisor(r), eps.dtype,
                                              eps.device))


def tensor_cache(maxsize: int):
    """``functools.lru_cache`` for functions returning read-only constant tensors, bypassed
    while ``torch.jit`` traces (ONNX export): a traced graph must not reuse a tensor that
    another trace recorded (torch fails with "unordered_map::at")."""
    def decorate(fn):
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def wrapper(*args):
            return fn(*args) if torch.jit.is_tracing() else cached(*args)
        return wrapper
    return decorate


@tensor_cache(maxsize=64)
def _constant(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A cached 0-dim constant (read-only), instead of a new scalar tensor per call."""
    return torch.tensor(value, dtype=dtype, device=device)


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
    return sum_to_channels(t, eps.dim() != 0, channel_dim)


def sum_to_channels(t: torch.Tensor, per_channel: bool, channel_dim: int = 0) -> torch.Tensor:
    """:func:`reduce_to_channels` for an ε that is per tensor or (``per_channel``) [C]."""
    if not per_channel:
        return t.sum()
    dims = [d for d in range(t.dim()) if d != channel_dim]
    return t.sum(dim=dims) if dims else t
