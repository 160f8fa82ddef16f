"""The float formats F2T can do its conversion arithmetic in (DESIGN §3.9).

Native formats — float64, float32, float16, bfloat16 — are torch dtypes: every operation
runs in that dtype, and torch rounds each result to it (on CPU half formats compute in
float32 and round back, which is the correctly rounded result: float32 has more than
2p + 2 significand bits for p = 11 or 8).

The fp8 formats (OCP FP8: E4M3 "fn" — 4 exponent bits, 3 mantissa bits, max 448, no
infinities — and E5M2 — max 57344, ±inf) have no torch arithmetic, so they are
*emulated*: values are held in float32 and every operation's float32 result is rounded to
the fp8 value set with ``ml_dtypes`` (round to nearest, ties to even; overflow gives NaN
in E4M3 and ±inf in E5M2, never a silent saturation). float32 keeps 24 ≥ 2·4 + 2
significand bits, so this double rounding equals a correctly rounded fp8 operation.

:class:`Arith` is what the conversion code calls: ``cast`` converts a float32 parameter
into the format and ``rnd`` rounds a result; both raise :class:`FormatError` naming the
node and the quantity when a value that was finite and non-zero becomes zero (underflow)
or not finite (overflow) — never garbage carried on silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np
import torch

from edgeq.errors import ConfigError, IntegerOverflowError

#: format name -> (torch dtype of the API, numpy dtype used to round emulated formats)
_EMULATED = {
    torch.float8_e4m3fn: ml_dtypes.float8_e4m3fn,
    torch.float8_e5m2: ml_dtypes.float8_e5m2,
}
NATIVE = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
FORMATS = NATIVE + tuple(_EMULATED)


class FormatError(IntegerOverflowError):
    """A conversion quantity overflows or underflows to zero in the arithmetic format."""


def format_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def parse_format(name: str) -> torch.dtype:
    """``'float16'``, ``'bfloat16'``, ``'float8_e4m3fn'``... -> the torch dtype."""
    for dtype in FORMATS:
        if format_name(dtype) == name:
            return dtype
    raise ConfigError(f"unknown F2T arithmetic format {name!r}; one of "
                      f"{[format_name(d) for d in FORMATS]}")


def round_to_format(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` rounded to ``dtype``'s values, held in the format's carrier dtype
    (the dtype itself when native, float32 when emulated)."""
    if dtype in _EMULATED:
        a = t.detach().to(torch.float32).numpy()
        return torch.from_numpy(a.astype(_EMULATED[dtype]).astype(np.float32))
    return t.detach().to(dtype)


@dataclass(frozen=True)
class Arith:
    """Conversion arithmetic in one format: ``cast`` parameters in, ``rnd`` results.

    A scale (an ε, or a product/quotient of non-zero scales) that is subnormal in the
    format has lost the format's relative precision (E5M2 keeps 1 bit of it at 2^-17);
    that is an error too unless ``allow_subnormal`` (studies measure what it costs).
    """

    dtype: torch.dtype = torch.float64
    allow_subnormal: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in FORMATS:
            raise ConfigError(f"F2T arithmetic format {self.dtype} is not supported; one of "
                              f"{[format_name(d) for d in FORMATS]}")

    @property
    def emulated(self) -> bool:
        return self.dtype in _EMULATED

    @property
    def name(self) -> str:
        return format_name(self.dtype)

    def cast(self, t, where: str = "", what: str = "value", nonzero: bool = False
             ) -> torch.Tensor:
        """A float tensor (FQ parameters are float32) in this format. Raises on overflow,
        and with ``nonzero`` (scales ε) on a non-zero value that underflows to 0."""
        src = torch.as_tensor(t).detach()
        out = round_to_format(src, self.dtype)
        self._check(out, where, what, (src,) if nonzero else ())
        return out

    def rnd(self, result: torch.Tensor, where: str = "", what: str = "value",
            factors: tuple = ()) -> torch.Tensor:
        """An operation's result rounded to the format (a no-op for native formats, whose
        operations already rounded it). Raises when it is not finite (the inputs are), or
        is 0 where all ``factors`` of a product/quotient are non-zero (underflow)."""
        out = round_to_format(result, self.dtype) if self.emulated else result
        self._check(out, where, what, factors)
        return out

    def _check(self, out: torch.Tensor, where: str, what: str, factors: tuple) -> None:
        if not bool(torch.isfinite(out).all()):
            raise FormatError(f"F2T: {where}: {what} overflows in {self.name}; "
                              "convert in a wider float format")
        if factors:
            nonzero = torch.ones((), dtype=torch.bool)
            for f in factors:
                nonzero = nonzero & (torch.as_tensor(f) != 0)
            if bool((nonzero & (out == 0)).any()):
                raise FormatError(f"F2T: {where}: {what} underflows to 0 in {self.name}; "
                                  "convert in a wider float format")
            small = (out != 0) & (out.abs() < self.smallest_normal)
            if not self.allow_subnormal and bool(small.any()):
                value = float(out[small].abs().min())
                raise FormatError(f"F2T: {where}: {what} = {value:.3g} is subnormal in "
                                  f"{self.name} (below {self.smallest_normal:.3g}: precision "
                                  "lost); convert in a wider float format")

    @property
    def smallest_normal(self) -> float:
        if self.emulated:
            return float(ml_dtypes.finfo(_EMULATED[self.dtype]).smallest_normal)
        return float(torch.finfo(self.dtype).tiny)


__all__ = ["FORMATS", "NATIVE", "Arith", "FormatError", "format_name", "parse_format",
           "round_to_format"]
