"""Clipping-bound initialisation from statistics, and the running observer of activations.

:func:`init_bounds` turns a tensor into the interval [a, b] an :class:`InitSpec` asks for
(per tensor, or per channel along ``channel_dim``); :func:`edgeq.train.quantiser.eps_covering`
then turns [a, b] into ε. :class:`RangeObserver` accumulates what an activation quantiser
needs over many batches before quantisation starts:

* ``minmax``: running extrema over all batches;
* ``meanstd``: running mean and variance over all elements (sums in float64);
* ``percentile``: per-batch percentiles, averaged over batches (cheaper than a global
  histogram; each batch is subsampled to at most ``MAX_SAMPLES`` elements);
* ``mse``: per-batch MSE-optimal ε, averaged over batches;
* ``const``: nothing to observe.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeq.numerics.intrange import IntRange
from edgeq.train.quantiser import clip_bounds, eps_covering, fake_quantise
from edgeq.train.spec import InitSpec

# The MSE search tries ε_max·(1 - i/N), i = 0..N-1 (shrinking the min/max grid by 1% steps).
MSE_CANDIDATES = 100
# Percentile and MSE statistics look at an evenly strided subsample of at most this size.
MAX_SAMPLES = 1 << 18


def per_channel_rows(x: torch.Tensor, channel_dim: int | None) -> torch.Tensor:
    """View ``x`` as [C, n] (one row per channel) or [1, n] when ``channel_dim`` is None."""
    x = x.detach()
    if channel_dim is None:
        return x.reshape(1, -1)
    return x.transpose(0, channel_dim).reshape(x.shape[channel_dim], -1)


def _squeeze(t: torch.Tensor, channel_dim: int | None) -> torch.Tensor:
    return t.reshape(()) if channel_dim is None else t


def _subsample(rows: torch.Tensor) -> torch.Tensor:
    """Evenly strided columns so that a row holds at most MAX_SAMPLES elements."""
    stride = -(-rows.shape[1] // MAX_SAMPLES)
    return rows[:, ::stride] if stride > 1 else rows


def minmax_bounds(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a = min, b = max of each row."""
    return rows.amin(dim=1), rows.amax(dim=1)


def meanstd_bounds(rows: torch.Tensor, k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """a, b = mean ∓ k·std of each row (population std)."""
    mean = rows.mean(dim=1)
    std = rows.std(dim=1, correction=0)
    return mean - k * std, mean + k * std


def percentile_bounds(rows: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """a = P_(100-p), b = P_p of each row (linear interpolation between order statistics)."""
    rows = _subsample(rows).to(torch.float64)
    q = torch.tensor([1.0 - p / 100.0, p / 100.0], dtype=torch.float64)
    a, b = torch.quantile(rows, q, dim=1)
    return a.float(), b.float()


def mse_eps(rows: torch.Tensor, r: IntRange) -> torch.Tensor:
    """ε minimising mean((x - fq(x, ε))^2) per row over ε_max·(1 - i/N), i < N.

    ε_max covers the row's min/max; the candidates shrink the clipping interval, trading
    clipping error against rounding error (the "MSE-optimal" bound of MQBench/QuantLib).
    """
    rows = _subsample(rows)
    eps_max = eps_covering(*minmax_bounds(rows), r)
    best_eps, best_err = eps_max.clone(), torch.full_like(eps_max, float("inf"))
    for i in range(MSE_CANDIDATES):
        eps = eps_max * (1.0 - i / MSE_CANDIDATES)
        err = (rows - fake_quantise(rows, eps, r, channel_dim=0)).pow(2).mean(dim=1)
        better = err < best_err
        best_eps = torch.where(better, eps, best_eps)
        best_err = torch.where(better, err, best_err)
    return best_eps


def init_bounds(
    x: torch.Tensor, init: InitSpec, r: IntRange, channel_dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The interval [a, b] that ``init`` prescribes for ``x`` (shape [] or [C] each).

    ``mse`` returns the clipping interval [lo·ε*, hi·ε*] of the optimal ε*.
    """
    rows = per_channel_rows(x, channel_dim).float()
    if init.method == "const":
        a = torch.full((rows.shape[0],), init.lo)
        b = torch.full((rows.shape[0],), init.hi)
    elif init.method == "minmax":
        a, b = minmax_bounds(rows)
    elif init.method == "meanstd":
        a, b = meanstd_bounds(rows, init.k)
    elif init.method == "percentile":
        a, b = percentile_bounds(rows, init.percentile)
    else:  # mse
        a, b = clip_bounds(mse_eps(rows, r), r)
    return _squeeze(a, channel_dim), _squeeze(b, channel_dim)


class RangeObserver(nn.Module):
    """Accumulates per-tensor activation statistics for one :class:`InitSpec`.

    ``update(x)`` adds a batch; ``bounds()`` returns [a, b] (or None before any batch,
    except for ``const``); ``reset()`` forgets everything.
    """

    def __init__(self, init: InitSpec, r: IntRange):
        super().__init__()
        self.init, self.int_range = init, r
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("n_batches", torch.zeros((), dtype=torch.int64))
        self.register_buffer("lo", torch.zeros((), dtype=torch.float64))
        self.register_buffer("hi", torch.zeros((), dtype=torch.float64))
        self.register_buffer("total", torch.zeros((), dtype=torch.float64))
        self.register_buffer("total_sq", torch.zeros((), dtype=torch.float64))

    def reset(self) -> None:
        for buf in (self.count, self.n_batches, self.lo, self.hi, self.total, self.total_sq):
            buf.zero_()

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Add one batch: extrema, sums, or the per-batch percentile / MSE statistic."""
        if self.init.method == "const" or x.numel() == 0:
            return
        rows = per_channel_rows(x, None).float()
        first = bool(self.n_batches == 0)
        if self.init.method == "minmax":
            a, b = minmax_bounds(rows)
            self.lo.copy_(a[0] if first else torch.minimum(self.lo, a[0].double()))
            self.hi.copy_(b[0] if first else torch.maximum(self.hi, b[0].double()))
        elif self.init.method == "meanstd":
            flat = rows.double()
            self.total += flat.sum()
            self.total_sq += flat.pow(2).sum()
        else:  # percentile or mse: per-batch statistic, averaged in bounds()
            a, b = init_bounds(rows, self.init, self.int_range, None)
            self.lo += a.double()
            self.hi += b.double()
        self.count += rows.numel()
        self.n_batches += 1

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """[a, b] from what was observed (float32 scalars), None when nothing was."""
        if self.init.method == "const":
            return torch.tensor(self.init.lo), torch.tensor(self.init.hi)
        if int(self.n_batches) == 0:
            return None
        if self.init.method == "minmax":
            a, b = self.lo, self.hi
        elif self.init.method == "meanstd":
            mean = self.total / self.count
            var = torch.clamp(self.total_sq / self.count - mean * mean, min=0.0)
            a, b = mean - self.init.k * var.sqrt(), mean + self.init.k * var.sqrt()
        else:
            a, b = self.lo / self.n_batches, self.hi / self.n_batches
        return a.float(), b.float()
