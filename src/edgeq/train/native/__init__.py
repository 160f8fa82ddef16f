"""Fused C kernels for the QAT quantisers' per-element work (``qat_kernels.c``).

A training step runs every quantiser forward and backward once. In PyTorch each is a
dozen elementwise operations with their own temporaries and dispatch; on the small
tensors of QAT that fixed cost dominates. The kernels here do the same arithmetic in
one pass, per element the same IEEE float32 operations in the same order, so results
are bit-identical to the PyTorch code (tested against it). They cover the common case:

* :func:`pact_forward` / :func:`pact_backward` — PACT with a positive bound, unit-step
  ranges (not the bipolar {-1, +1});
* :func:`ana_uniform_forward` — ANA's uniform-noise expectation fast path.

Anything else, and every call where :func:`applies` is False, stays on the PyTorch
code: float64 or non-contiguous tensors, a ``torch.jit`` trace (ONNX export records
torch operations only), tensors large enough for PyTorch to split over several threads,
or no C compiler. The library is built with the host's ``gcc`` on first use and cached
under ``~/.cache/edgeq`` (keyed by source, flags and CPU), as the C backend's builds are.
"""

from __future__ import annotations

import ctypes
import os
import threading
from importlib import resources
from pathlib import Path

import torch

from edgeq.errors import BuildError

# no fast-math; no contraction into fused multiply-adds (the reference rounds twice);
# -fno-trapping-math only lets gcc vectorise the clamps' selects (values unchanged)
CFLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", "-Wall",
          "-Wextra", "-Werror")
# PyTorch splits elementwise work over threads from this many elements on (at::GRAIN_SIZE);
# below it, or with one thread, it runs on the calling thread as the kernels do
PARALLEL_GRAIN = 32768
# ANA windows of more terms take the PyTorch path (the reference's window-first limit)
ANA_MAX_TERMS = 7

_P, _I, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
_SIGNATURES = {
    "eq_pact_forward": (ctypes.c_int, [_P, _P, _P, _I, _I, _I, _P, _F, _F, _F, _F,
                                       ctypes.c_int]),
    "eq_pact_backward": (None, [_P, _P, _P, _P, _I, _F, _F, ctypes.c_int]),
    "eq_ana_uniform_forward": (None, [_P, _P, _P, _I, _I, _I, _P, _F, _F, _F, _F, _I, _I,
                                      ctypes.c_int]),
    "eq_minmax_eps": (None, [_P, _I, _I, _F, _F, _F, _P]),
}


class _Library:
    """The loaded kernels, built once per process on first use (None if they cannot be)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loaded = False  # read without the lock once True (set last, never reset)
        self.lib: ctypes.CDLL | None = None
        self.error: str | None = None  # why the build failed, for tests and diagnostics

    def get(self) -> ctypes.CDLL | None:
        with self._lock:
            if not self.loaded:
                self.lib = self._load()
                self.loaded = True
        return self.lib

    def _load(self) -> ctypes.CDLL | None:
        try:
            lib = ctypes.CDLL(str(build()))
        except (OSError, BuildError) as exc:
            self.error = str(exc)
            return None
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        return lib


_LIBRARY = _Library()


def source() -> str:
    return resources.files(__name__).joinpath("qat_kernels.c").read_text()


def _cpu_id() -> str:
    """The CPU model and flags (``-march=native`` code is only valid on that CPU)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return os.uname().machine
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features"))]
    return "\n".join(dict.fromkeys(keep))


def build() -> Path:
    """The shared library, compiled with gcc into the cache dir unless already there
    (keyed by source, flags and CPU: ``-march=native`` code runs only on that CPU)."""
    from edgeq.engine.backends.c.project import host_shared_object

    return host_shared_object(source(), "qat-kernels", CFLAGS, "the QAT kernels", _cpu_id())


def library() -> ctypes.CDLL | None:
    """The kernels, or None when they cannot be built here (see ``build_error``)."""
    return _LIBRARY.get() if not _LIBRARY.loaded else _LIBRARY.lib


def build_error() -> str | None:
    return _LIBRARY.error


def applies(x: torch.Tensor) -> bool:
    """True when a kernel may replace the PyTorch code for ``x`` (cheapest tests first:
    this runs on every quantiser call)."""
    return (x.dtype is torch.float32 and x.is_cpu and x.is_contiguous()
            and (x.numel() < PARALLEL_GRAIN or torch.get_num_threads() == 1)
            and not torch.jit.is_tracing() and library() is not None)


def _layout(x: torch.Tensor, scale: torch.Tensor, channel_dim: int
            ) -> tuple[int, int, int] | None:
    """(outer, channels, inner) of x around ``channel_dim`` (per-tensor: 1, 1, numel), or
    None when ``scale`` is not one contiguous float32 CPU value per channel (the PyTorch
    code then broadcasts it, or reports the mismatch)."""
    if scale.dtype is not torch.float32 or not scale.is_cpu or not scale.is_contiguous():
        return None
    n = x.numel()
    if scale.dim() == 0:
        return 1, 1, n
    if scale.dim() != 1 or not 0 <= channel_dim < x.dim():
        return None
    outer = 1
    for size in x.shape[:channel_dim]:
        outer *= size
    channels = x.shape[channel_dim]
    if scale.numel() != channels or n == 0:
        return None
    return outer, channels, n // (outer * channels)


def pact_forward(x, bound, lo: int, hi: int, divisor: int, min_bound: float, channel_dim: int,
                 relu: bool = False):
    """(y, code) of PACT of x (or of relu(x)) for the raw ``bound`` (float32, [] or [C]),
    or None when some bound is below ``min_bound`` (or NaN), or the bound does not fit x
    (see :func:`_layout`): the caller's PyTorch code handles those cases.

    code is uint8: 1 where v < lo·ε, 2 where v >= hi·ε, else 0 (ε = bound/divisor, v = x
    or relu(x)), plus 4 where relu zeroes the gradient (x <= 0).
    """
    layout = _layout(x, bound, channel_dim)
    if layout is None:
        return None
    outer, channels, inner = layout
    y = torch.empty_like(x)
    code = torch.empty_like(x, dtype=torch.uint8)
    ok = library().eq_pact_forward(x.data_ptr(), y.data_ptr(), code.data_ptr(), outer,
                                   channels, inner, bound.data_ptr(), float(divisor),
                                   min_bound, float(lo), float(hi), int(relu))
    return (y, code) if ok else None


def pact_backward(g, code, c_hi: float, c_lo: float, clip_gradient: bool, bound_grad: bool,
                  relu: bool = False):
    """(grad_x, prod): grad_x = g·inside (g itself without ``clip_gradient``), then 0
    where relu passes nothing, and prod = g·(c_hi·above + c_lo·below), whose sum is the
    bound gradient (None unless ``bound_grad``)."""
    g = g.contiguous()
    grad_x = torch.empty_like(g) if clip_gradient or relu else None
    prod = torch.empty_like(g) if bound_grad else None
    if grad_x is not None or prod is not None:
        library().eq_pact_backward(
            g.data_ptr(), code.data_ptr(), None if grad_x is None else grad_x.data_ptr(),
            None if prod is None else prod.data_ptr(), g.numel(), c_hi, c_lo,
            int(clip_gradient))
    return (g if grad_x is None else grad_x), prod


def ana_uniform_forward(x, eps, mu: float, sigma: float, lo: int, step: int, n_thr: int,
                        reach: int, dense: bool, channel_dim: int, with_derivative: bool):
    """(y, dE[q]/dv or None) of ANA's uniform-noise expectation, or None when ``eps`` is
    not one float32 value per channel (see :func:`_layout`). The window (``reach``,
    ``dense``) is the reference's."""
    layout = _layout(x, eps, channel_dim)
    if layout is None:
        return None
    outer, channels, inner = layout
    y = torch.empty_like(x)
    deriv = torch.empty_like(x) if with_derivative else None
    library().eq_ana_uniform_forward(
        x.data_ptr(), y.data_ptr(), None if deriv is None else deriv.data_ptr(), outer,
        channels, inner, eps.data_ptr(), mu, sigma, float(lo), float(step), n_thr, reach,
        int(dense))
    return y, deriv


def minmax_eps(w: torch.Tensor, lo: int, hi: int, fallback: float, per_channel: bool):
    """ε re-fitted to ``w`` with the minmax init (``eps_covering(min, max)`` per output
    channel along dim 0, or over all of w): [C] or [] float32, or None where the kernel
    does not apply (empty or not float32/contiguous/CPU, or while tracing)."""
    if w.numel() == 0 or w.dim() == 0 or not applies(w):
        return None
    rows = w.shape[0] if per_channel else 1
    eps = torch.empty(rows if per_channel else (), dtype=torch.float32)
    library().eq_minmax_eps(w.data_ptr(), rows, w.numel() // rows, float(lo), float(hi),
                            fallback, eps.data_ptr())
    return eps
