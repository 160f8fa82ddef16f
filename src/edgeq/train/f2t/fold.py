"""Folding floats into integers: BatchNorm, biases, static bounds, requantisation.

Every float computed here is in the conversion ``dtype`` (float64 by default, DESIGN
§3.9; fp8 formats emulated, :mod:`.formats`); only the final scaling by 2^d and the
rounding to integers happen in float64 / exact integers
(:func:`edgeq.numerics.make_requant`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgeq.errors import IntegerOverflowError
from edgeq.numerics import RequantParams, make_requant, round_half_up, round_significant
from edgeq.train.f2t.formats import Arith

#: Integers below this magnitude are exact in float64: the float64 conv/linear bound.
FLOAT64_EXACT = 2**53


@dataclass(frozen=True)
class F2TOptions:
    """Conversion arithmetic: float format, accumulator and multiplier widths.

    ``significant_bits`` (None: exact integers, no limit) rounds every requantisation
    ``mul`` and ``add`` and every bias to that many significant bits (round half up): with
    24 each is exactly representable in float32, as the ONNX exporters carry integers.
    The relative change is at most 2^-24, far below the rounding of ``mul`` itself.
    ``allow_subnormal`` lets scales be subnormal in ``dtype`` (:class:`~.formats.Arith`).
    """

    dtype: torch.dtype = torch.float64
    acc_bits: int = 64
    mul_bits: int = 32
    significant_bits: int | None = None
    allow_subnormal: bool = False

    @property
    def arith(self) -> Arith:
        """The arithmetic of ``dtype`` (rounding and over/underflow checks)."""
        return Arith(self.dtype, self.allow_subnormal)


def to_dtype(t, dtype: torch.dtype) -> torch.Tensor:
    """A float tensor (FQ parameters are float32) in the conversion format."""
    return Arith(dtype).cast(t)


def bn_fold(bn: nn.Module, arith: Arith | torch.dtype, where: str = "BatchNorm"
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = γ̂·x + β̂: γ̂ = γ/√(σ² + ϵ), β̂ = β − μ·γ̂ (each operation
    rounded to the format)."""
    A = arith if isinstance(arith, Arith) else Arith(arith)
    var, mean = A.cast(bn.running_var, where, "σ²"), A.cast(bn.running_mean, where, "μ")
    n = var.numel()
    gamma = (A.cast(bn.weight, where, "γ") if bn.weight is not None
             else torch.ones(n, dtype=var.dtype))
    beta = A.cast(bn.bias, where, "β") if bn.bias is not None else torch.zeros(n, dtype=var.dtype)
    root = A.rnd(torch.sqrt(A.rnd(var + bn.eps, where, "σ² + ϵ")), where, "√(σ² + ϵ)")
    gamma_hat = A.rnd(gamma / root, where, "γ̂ = γ/√(σ² + ϵ)", factors=(gamma,))
    shift = A.rnd(mean * gamma_hat, where, "μ·γ̂")
    return gamma_hat, A.rnd(beta - shift, where, "β̂ = β − μ·γ̂")


def integer_bias(bias: torch.Tensor, eps_acc: torch.Tensor, opts: F2TOptions,
                 where: str = "bias") -> torch.Tensor:
    """b̂ = round_half_up(b / (ε_x·ε_w)), int64 (DESIGN §3.2), to ``significant_bits``."""
    A = opts.arith
    q = A.rnd(A.cast(bias, where, "bias") / eps_acc, where, "bias / (ε_x·ε_w)")
    real = q.to(torch.float64).numpy()
    if not np.all(np.abs(real) < 2.0**62):
        raise IntegerOverflowError(f"{where}: bias / (ε_x·ε_w) is not a representable "
                                   f"integer in {opts.dtype}")
    b = round_half_up(real).astype(np.int64)
    return torch.from_numpy(significant(b, opts.significant_bits))


def linear_bound(w_int: torch.Tensor, x_bound: int, b_int: torch.Tensor | None) -> int:
    """Static bound of |Σ x̂·ŵ + b̂| and of every partial sum: max_c Σ|ŵ_c|·max|x̂| + |b̂_c|."""
    per_channel = [int(v) * int(x_bound) for v in w_int.abs().flatten(1).sum(1).tolist()]
    if b_int is not None:
        per_channel = [p + abs(int(b)) for p, b in zip(per_channel, b_int.tolist(), strict=True)]
    return max(per_channel, default=0)


def check_accumulator(bound: int, opts: F2TOptions, where: str) -> None:
    """The static bound proves the accumulator fits: below 2^53 (the TQ network's float64
    conv/linear is exact there) and within a signed ``acc_bits`` integer (DESIGN §3.7)."""
    if bound >= FLOAT64_EXACT:
        raise IntegerOverflowError(
            f"{where}: the accumulator bound {bound} reaches 2^53; the float64 conv/linear "
            "would not be exact"
        )
    if bound > 2 ** (opts.acc_bits - 1) - 1:
        raise IntegerOverflowError(
            f"{where}: the accumulator bound {bound} does not fit {opts.acc_bits} bits"
        )


def significant(a, bits: int | None) -> np.ndarray:
    """Integer array ``a`` (int64), each element rounded to ``bits`` significant bits."""
    a = np.asarray(a, dtype=np.int64)
    if bits is None:
        return a
    rounded = np.frompyfunc(lambda v: round_significant(v, bits), 1, 1)(a.astype(object))
    return np.asarray(rounded, dtype=object).astype(np.int64)


def requant_params(
    real_mul: torch.Tensor,
    real_add: torch.Tensor,
    acc_bound: int,
    lo: int,
    hi: int,
    opts: F2TOptions,
    where: str,
) -> RequantParams:
    """Integer RequantShift approximating ``clip(round_half_up(acc·real_mul + real_add))``.

    The shift d is :func:`~edgeq.numerics.choose_shift`'s: the largest d keeping ``mul``
    within ``mul_bits`` and ``acc·mul + add`` within ``acc_bits`` for |acc| <=
    ``acc_bound`` (checked after rounding to ``opts.significant_bits``, if set).
    """
    m = real_mul.to(torch.float64).numpy()
    a = real_add.to(torch.float64).numpy()
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(a))):
        raise IntegerOverflowError(f"{where}: the requantisation scale is not finite in "
                                   f"{opts.dtype} (overflow or division by an underflowed ε)")
    return make_requant(m, a, acc_bound, lo, hi, mul_bits=opts.mul_bits,
                        acc_bits=opts.acc_bits, where=where,
                        significant_bits=opts.significant_bits)


def activation_bounds(kind: str, lo: int, hi: int, eps_out: torch.Tensor) -> tuple[int, int]:
    """Output clip of a quantised activation, with the float activation folded in.

    q(act(x)) = clip(⌊act(x)/ε + ½⌋, lo, hi), and ⌊·/ε + ½⌋ is monotone, so
    relu → lo' = max(lo, 0); relu6 → also hi' = min(hi, ⌊6/ε + ½⌋); identity unchanged.
    """
    if kind in ("relu", "relu6"):
        lo = max(lo, 0)
    if kind == "relu6":
        six = int(round_half_up(6.0 / float(eps_out)))
        hi = min(hi, six)
    return lo, hi
