"""ANA: additive noise annealing (Spallanzani et al. 2019).

Everything is in units of ε: u = x/ε, levels q_k = lo + s·k (s = 1, or 2 for {-1, +1}),
thresholds t_i = lo + s·(i + 1/2) between q_i and q_(i+1), i = 0..K-2. The input is
perturbed by noise ν = μ + σ·z, z from a standardised distribution D (CDF F, density f):
uniform and triangular on [-1, 1], normal N(0, 1), logistic with scale 1. So

    c_i = P(u + ν >= t_i) = F((u + μ - t_i)/σ)
    P(q_0) = 1 - c_0,  P(q_k) = c_(k-1) - c_k,  P(q_(K-1)) = c_(K-2)

and the forward ``strategy`` is ε times

    expectation  E[q] = q_0 + s·Σ_i c_i
    mode         q_k with the largest P(q_k) (ties: the upper level, as round half up)
    random       the hard quantiser applied to u + μ + σ·z, one z per element — a sample of q

The backward of every strategy is the derivative of the expectation:
∂y/∂x = s·Σ_i f((u + μ - t_i)/σ)/σ. With σ = 0 the forward is the hard quantiser of u + μ
and the backward is straight-through inside the clip range. In eval mode the quantiser is
always hard (μ = σ = 0). μ and σ follow the annealing schedules of :class:`AnaParams`,
set per epoch by :meth:`AnaQuantiser.set_epoch`.

Sign convention: μ is the mean of the noise added to the input (QuantLib writes
F((x - μ - t)/σ), i.e. the opposite sign). Only thresholds within ``reach`` ≈ R·σ of
u + μ are evaluated (R such that the tails are below the dtype's resolution); thresholds
further below count as crossed, those further above as not crossed.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable

import torch
from torch.autograd import Function

from edgeq.numerics.intrange import IntRange
from edgeq.train import native
from edgeq.train.algorithms.base import Quantiser, register_quantiser
from edgeq.train.algorithms.ste import ste_quantise
from edgeq.train.quantiser import (
    expand_eps,
    in_range_indicator,
    int_quantise,
    tensor_cache,
)

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
    # CDF and density are +, -, ×, clamp only, which give the same bits whether a CPU
    # kernel runs them vectorised or in its scalar tail (not so for erf, exp, sigmoid)
    elementary: bool = False

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
        elementary=True,
    ),
    # triangular on [-1, 1] with its peak at 0: f = max(1 - |z|, 0); z = U1 - U2
    "triangular": Noise(
        cdf=_tri_cdf,
        pdf=lambda z: (1.0 - z.abs()).clamp_min(0.0),
        sample=lambda x: torch.rand_like(x) - torch.rand_like(x),
        radius32=1.0,
        radius64=1.0,
        elementary=True,
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


def _masked(t: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """``t·valid`` (0 outside the range's thresholds); ``valid`` None means all valid, and
    multiplying by 1 would change nothing."""
    return t if valid is None else t * valid


# Windows narrower than this are laid out window-first and summed term by term (below).
_SHORT_WINDOW = 8


def _window_first_applies(n_terms: int, noise: Noise, dtype: torch.dtype) -> bool:
    """True when the window-first layout gives the window-last values bit for bit: a
    short window, an elementary noise, and float32 — the order :func:`_window_sum`
    reproduces is that of float32 ``sum(-1)``; float64 adds 7 terms in another order."""
    return n_terms < _SHORT_WINDOW and noise.elementary and dtype == torch.float32


def _window(v: torch.Tensor, r: IntRange, sigma: float, noise: Noise):
    """(z, valid as 0/1 floats or None when all valid, below, window_first) for v.

    Short windows (J < 8 thresholds, e.g. uniform noise with σ <= 2) are laid out with
    the window first, [J, *v.shape]: with the J axis last, every elementwise op broadcasts
    along a 5-element inner dimension and runs as a scalar loop per element, tens of times
    slower. The values are the same either way (elementwise IEEE operations: only for
    :attr:`Noise.elementary` noises, else the window-last layout is kept);
    :func:`_window_sum` adds the J terms in the order ``sum(-1)`` uses.
    """
    reach = _reach(sigma, noise, r, v.dtype)
    n_thr = r.n_levels - 1
    dense = 2 * reach + 1 >= n_thr
    if not _window_first_applies(n_thr if dense else 2 * reach + 1, noise, v.dtype):
        idx, valid, below = threshold_window(v, r, reach)
        valid = None if bool(valid.all()) else valid.to(v.dtype)
        return _z(v, idx, r, sigma), valid, below, False
    lead = (-1,) + (1,) * v.dim()
    if dense:
        idx = torch.arange(n_thr, device=v.device, dtype=v.dtype).view(lead)
        valid, below = None, torch.zeros_like(v)
    else:
        offsets = torch.arange(-reach, reach + 1, device=v.device, dtype=v.dtype).view(lead)
        centre = torch.floor((v - r.lo) / r.step - 0.5)  # as threshold_window computes it
        idx = centre + offsets
        ok = (idx >= 0) & (idx <= n_thr - 1)
        valid = None if bool(ok.all()) else ok.to(v.dtype)
        below = (centre - reach).clamp(0, n_thr)
    z = (v - (r.lo + r.step * (idx + 0.5))) / sigma
    return z, valid, below, True


def _window_sum(t: torch.Tensor, window_first: bool) -> torch.Tensor:
    """Σ over the window. Window-last: ``t.sum(-1)``. Window-first: the same sum, term by
    term in the order CPU ``sum(-1)`` adds fewer than 8 contiguous elements — four partial
    sums seeded with 0 (p_k = 0 + t_k), further terms into p_0, then
    ((p_0 + p_1) + p_2) + p_3 — so the result is bit-identical (tested against it)."""
    if not window_first:
        return t.sum(-1)
    terms = t.unbind(0)
    zero = torch.zeros_like(terms[0])
    if len(terms) >= 4:
        p = [zero + terms[k] for k in range(4)]
        rest = terms[4:]
    else:
        p, rest = [zero] * 4, terms
    for term in rest:
        p[0] = p[0] + term
    return ((p[0] + p[1]) + p[2]) + p[3]


def ana_expectation(v: torch.Tensor, r: IntRange, sigma: float, noise: Noise) -> torch.Tensor:
    """E[q] = q_0 + s·Σ_i F((v - t_i)/σ), v = u + μ (units of ε)."""
    return _expectation(*_window(v, r, sigma, noise), r, noise)


def _expectation(z, valid, below, first: bool, r: IntRange, noise: Noise) -> torch.Tensor:
    crossed = _window_sum(_masked(noise.cdf(z), valid), first)
    return r.lo + r.step * (below + crossed)


def ana_derivative(v: torch.Tensor, r: IntRange, sigma: float, noise: Noise) -> torch.Tensor:
    """dE[q]/dv = s·Σ_i f((v - t_i)/σ)/σ."""
    z, valid, _, first = _window(v, r, sigma, noise)
    return _derivative(z, valid, first, r, sigma, noise)


def _derivative(z, valid, first: bool, r: IntRange, sigma: float, noise: Noise
                ) -> torch.Tensor:
    return r.step * _window_sum(_masked(noise.pdf(z), valid), first) / sigma


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


# --------------------------------------------------------------------------------------
# uniform noise, expectation: the common case, in few tensor operations
# --------------------------------------------------------------------------------------
# thresholds t_i = lo + s·(i + 1/2); the window sum of the window-first layout adds its J
# terms in this order (see _window_sum): t_0 + t_4 + t_5 + t_6, then t_1, t_2, t_3
_SUM_ORDER_4 = (0, 4, 5, 6, 1, 2, 3)


class _Scratch(threading.local):
    """Reusable per-thread scratch tensors for the [J, *v.shape] window terms.

    Those terms are temporaries (the backward keeps only dE[q]/dv), several times the size
    of the activation: allocated afresh every call, each one is new memory the kernel has
    to fault in page by page, which cost more than the arithmetic on it. Keyed by shape,
    dtype and device; a handful of shapes per network, cleared if there are ever many.
    """

    MAX_KEYS = 32

    def __init__(self) -> None:
        self.buffers: dict[tuple, list[torch.Tensor]] = {}

    def get(self, shape: tuple[int, ...], like: torch.Tensor, count: int) -> list[torch.Tensor]:
        key = (shape, like.dtype, like.device)
        if torch.jit.is_tracing():  # buffers must not outlive one trace (see tensor_cache)
            return [torch.empty(shape, dtype=like.dtype, device=like.device)
                    for _ in range(count)]
        found = self.buffers.get(key)
        if found is None:
            if len(self.buffers) >= self.MAX_KEYS:
                self.buffers.clear()
            found = [torch.empty(shape, dtype=like.dtype, device=like.device)
                     for _ in range(count)]
            self.buffers[key] = found
        return found


_SCRATCH = _Scratch()


def uniform_fast_path(r: IntRange, sigma: float, dtype) -> bool:
    """True when :func:`uniform_expectation` applies (with uniform noise and the
    expectation strategy): σ > 0 and the window-first layout (:func:`_window_first_applies`)."""
    if sigma <= 0.0:
        return False
    noise = NOISES["uniform"]
    n_thr = r.n_levels - 1
    return _window_first_applies(min(n_thr, 2 * _reach(sigma, noise, r, dtype) + 1), noise, dtype)


def uniform_expectation(v: torch.Tensor, r: IntRange, sigma: float, with_derivative: bool):
    """(E[q], dE[q]/dv or None) of uniform noise, the values of :func:`ana_expectation`
    and :func:`ana_derivative` bit for bit, in about a third of the tensor operations.

    The window-first computation with these exact rewrites (tested against the old code):

    * thresholds: c + (o + 1/2) instead of (c + o) + 1/2 — equal wherever the threshold
      is valid (small integers, exact either way); validity is 1/2 <= i + 1/2 <= K - 3/2,
      one clamp and one comparison written into a float 0/1 tensor (no bool kernels);
    * the CDF clip((z + 1)/2, 0, 1) is (1/2)·clip(z + 1, 0, 2): halving is exact (z + 1
      is 0 or at least 2^-24), so the halving moves after the window sum, where scaling
      every term and partial sum by 1/2 changes no rounding;
    * the density 1/2·1[|z| <= 1] sums to 1/2 · (count of in-support thresholds): sums of
      multiples of 1/2 below 4 are exact in any order, so it is one ``sum(0)``, computed in
      the forward and kept for the backward instead of z and the mask;
    * no-op steps (·1, /1, +0) are skipped: x·1 = x/1 = x exactly, and a threshold i + 1/2
      is never -0, so adding lo = 0 changes nothing.
    """
    n_thr = r.n_levels - 1
    reach = _reach(sigma, NOISES["uniform"], r, v.dtype)
    dense = 2 * reach + 1 >= n_thr
    d, valid, inside = _SCRATCH.get((n_thr if dense else 2 * reach + 1, *v.shape), v, 3)
    if dense:  # every threshold, all valid, none below
        torch.sub(v, _dense_thresholds(r, v.dtype, v.device, v.dim()), out=d)
        valid = below = None
    else:
        centre = v if r.lo == 0 else v - r.lo
        centre = centre if r.step == 1 else centre / r.step
        centre = (centre - 0.5).floor_()  # highest threshold index with t_i <= v
        # i + 1/2 for the thresholds near v
        torch.add(centre, _half_offsets(reach, v.dtype, v.device, v.dim()), out=d)
        torch.clamp(d, 0.5, n_thr - 0.5, out=valid)
        torch.eq(valid, d, out=valid)
        below = centre.sub_(reach).clamp_(0, n_thr)
        if r.step != 1:
            d.mul_(r.step)
        if r.lo != 0:
            d.add_(r.lo)
        torch.sub(v, d, out=d)  # v - t_i
    if sigma != 1.0:
        d.div_(sigma)  # z
    derivative = None
    if with_derivative:
        torch.abs(d, out=inside)
        torch.le(inside, 1.0, out=inside)
        if valid is not None:
            inside.mul_(valid)
        derivative = inside.sum(0).mul_(0.5)
        if r.step != 1:
            derivative = r.step * derivative
        if sigma != 1.0:
            derivative = derivative / sigma
    d.add_(1.0).clamp_(0.0, 2.0)  # 2·F(z)
    if valid is not None:
        d.mul_(valid)
    twice_crossed = _sum_window_first(d)
    if below is None:  # dense: 0 + crossed is crossed
        q = twice_crossed.mul_(0.5)
    else:  # below + crossed; the product by 1/2 is exact, so the one rounding is the sum's
        q = below.add_(twice_crossed, alpha=0.5)
    if r.step != 1:
        q.mul_(r.step)
    if r.lo != 0:
        q.add_(r.lo)  # q >= 0 here (never -0), so lo = 0 may be skipped
    return q, derivative


@tensor_cache(maxsize=64)
def _half_offsets(reach: int, dtype: torch.dtype, device: torch.device, ndim: int):
    """o + 1/2 for o = -reach .. reach, shaped [J, 1, ..., 1] against an ndim tensor
    (cached: a constant, read-only)."""
    half = torch.arange(-reach, reach + 1, device=device, dtype=dtype).add_(0.5)
    return half.view((-1,) + (1,) * ndim)


@tensor_cache(maxsize=64)
def _dense_thresholds(r: IntRange, dtype: torch.dtype, device: torch.device, ndim: int):
    """All thresholds lo + s·(i + 1/2), shaped [K-1, 1, ..., 1] (cached, read-only)."""
    idx = torch.arange(r.n_levels - 1, device=device, dtype=dtype)
    return (r.lo + r.step * (idx + 0.5)).view((-1,) + (1,) * ndim)


def _sum_window_first(t: torch.Tensor) -> torch.Tensor:
    """:func:`_window_sum` of a window-first tensor of non-negative terms (no -0): its
    0 + t_k seeds are then exact no-ops, leaving one fixed order of additions."""
    terms = t.unbind(0)
    n = len(terms)
    if n == 1:
        return terms[0].clone()
    order = [k for k in _SUM_ORDER_4 if k < n] if n >= 4 else list(range(n))
    total = terms[order[0]] + terms[order[1]]
    for k in order[2:]:
        total.add_(terms[k])
    return total


class AnaQuantFn(Function):
    """Inputs (x, ε, μ, σ, R, channel_dim, noise name, strategy); see the module docstring."""

    @staticmethod
    def forward(ctx, x, eps, mu: float, sigma: float, r, channel_dim, noise_name, strategy):
        e = expand_eps(eps, x, channel_dim)
        noise = NOISES[noise_name]
        ctx.r, ctx.sigma, ctx.noise = r, sigma, noise
        ctx.kind = "derivative"
        if (strategy == "expectation" and noise_name == "uniform"
                and uniform_fast_path(r, sigma, x.dtype) and native.applies(x)):
            # the fast path below as one fused C pass (same operations, same values);
            # None for an ε the kernel does not take (not float32, one per channel)
            fused = _native_uniform(x, eps, mu, sigma, r, channel_dim, ctx.needs_input_grad[0])
            if fused is not None:
                ctx.save_for_backward(fused[1])
                return fused[0]
        v = torch.div(x, e)
        if (strategy == "expectation" and noise_name == "uniform"
                and uniform_fast_path(r, sigma, v.dtype)):
            # v + 0 would only turn -0 into +0, which no step of the fast path tells apart
            v = v.add_(mu) if mu != 0.0 else v
            q, derivative = uniform_expectation(v, r, sigma, ctx.needs_input_grad[0])
            ctx.save_for_backward(derivative)
            return q.mul_(e) if e.dtype == q.dtype else e * q  # q is a fresh temporary
        v.add_(mu)  # x/ε + μ, the sum in place on the fresh quotient
        if sigma <= 0.0:
            # straight through inside the range: a float 0/1 mask multiplies as the bool did
            ctx.save_for_backward(in_range_indicator(x, eps, r, channel_dim))
            return e * hard_units(v, r)
        ctx.kind = strategy
        if strategy == "expectation":
            # the backward needs the same window: keep z and the mask, not recompute them
            z, valid, below, ctx.window_first = _window(v, r, sigma, noise)
            ctx.save_for_backward(z, valid)
            q = _expectation(z, valid, below, ctx.window_first, r, noise)
        elif strategy == "mode":
            ctx.save_for_backward(v)
            q = ana_mode(v, r, sigma, noise)
        else:
            ctx.save_for_backward(v)
            q = hard_units(v + sigma * noise.sample(v), r)
        return e * q

    @staticmethod
    def backward(ctx, g):
        saved = ctx.saved_tensors
        if ctx.kind == "derivative":  # σ = 0 (mask) or the fast path (dE[q]/dv)
            grad = g * saved[0]
        elif ctx.kind == "expectation":  # the window of the forward
            grad = g * _derivative(saved[0], saved[1], ctx.window_first, ctx.r, ctx.sigma,
                                   ctx.noise)
        else:
            grad = g * ana_derivative(saved[0], ctx.r, ctx.sigma, ctx.noise)
        return grad, None, None, None, None, None, None, None


def _native_uniform(x, eps, mu: float, sigma: float, r: IntRange, channel_dim: int,
                    with_derivative: bool):
    """:func:`uniform_expectation` of x/ε + μ times ε, by :mod:`edgeq.train.native`."""
    n_thr = r.n_levels - 1
    reach = _reach(sigma, NOISES["uniform"], r, x.dtype)
    return native.ana_uniform_forward(x, eps, mu, sigma, r.lo, r.step, n_thr, reach,
                                      2 * reach + 1 >= n_thr, channel_dim, with_derivative)


def ana_quantise(
    x: torch.Tensor,
    eps: torch.Tensor,
    mu: float,
    sigma: float,
    r: IntRange,
    channel_dim: int = 0,
    noise: str = "uniform",
    strategy: str = "expectation",
) -> torch.Tensor:
    """Functional form of :class:`AnaQuantFn` (ε is a constant)."""
    return AnaQuantFn.apply(
        x, eps.detach(), float(mu), float(sigma), r, channel_dim, noise, strategy
    )


@register_quantiser("ana")
class AnaQuantiser(Quantiser):
    """Fixed scale (buffer ``scale``) plus buffers ``mu``, ``sigma`` set by :meth:`set_epoch`."""

    def __init__(self, spec, n_channels=None, channel_dim=0):
        super().__init__(spec, n_channels, channel_dim)
        self.register_buffer("scale", torch.ones(self.eps_shape))
        self.register_buffer("mu", torch.tensor(spec.params.mu.value(0)))
        self.register_buffer("sigma", torch.tensor(spec.params.sigma.value(0)))

    @property
    def eps(self) -> torch.Tensor:
        return self.scale

    def _store_eps(self, eps: torch.Tensor) -> None:
        # ε is stored as is, so that a copied ε (harmonisation) is bit-identical
        self.scale.copy_(eps)

    def set_epoch(self, epoch: int, x: torch.Tensor | None = None) -> None:
        """μ(t) = params.mu.value(t), σ(t) = params.sigma.value(t)."""
        self.mu.fill_(self.spec.params.mu.value(epoch))
        self.sigma.fill_(max(self.spec.params.sigma.value(epoch), 0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return ste_quantise(x, self.eps, self.int_range, self.channel_dim)
        p = self.spec.params
        return ana_quantise(
            x,
            self.eps,
            float(self.mu),
            float(self.sigma),
            self.int_range,
            self.channel_dim,
            p.noise,
            p.strategy,
        )
