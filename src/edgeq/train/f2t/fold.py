"""Folding floats into integers: BatchNorm, biases, static bounds, requantisation.

Every float computed here is in the conversion ``dtype`` (float64 by default, DESIGN
§3.9); only the final scaling by 2^d and the rounding to integers happen in float64 /
exact integers (:func:`edgeq.numerics.make_requant`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgeq.errors import IntegerOverflowError
from edgeq.numerics import RequantParams, choose_shift, make_requant, round_half_up

#: Integers below this magnitude are exact in float64: the float64 conv/linear bound.
FLOAT64_EXACT = 2**53


@dataclass(frozen=True)
class F2TOptions:
    """Conversion arithmetic: float format, accumulator and multiplier widths.

    ``add_bits`` (None: no limit beyond ``acc_bits``) additionally keeps every
    requantisation ``add`` within a signed ``add_bits`` integer, by lowering the shift;
    with ``mul_bits = add_bits = 25`` every constant is exact in float32, as the ONNX
    exporters carry them.
    """

    dtype: torch.dtype = torch.float64
    acc_bits: int = 64
    mul_bits: int = 32
    add_bits: int | None = None


def to_dtype(t, dtype: torch.dtype) -> torch.Tensor:
    """A float tensor (FQ parameters are float32) in the conversion format."""
    return torch.as_tensor(t).detach().to(dtype)


def bn_fold(bn: nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = γ̂·x + β̂: γ̂ = γ/√(σ² + ϵ), β̂ = β − μ·γ̂."""
    var, mean = to_dtype(bn.running_var, dtype), to_dtype(bn.running_mean, dtype)
    n = var.numel()
    gamma = to_dtype(bn.weight, dtype) if bn.weight is not None else torch.ones(n, dtype=dtype)
    beta = to_dtype(bn.bias, dtype) if bn.bias is not None else torch.zeros(n, dtype=dtype)
    gamma_hat = gamma / torch.sqrt(var + bn.eps)
    return gamma_hat, beta - mean * gamma_hat


def integer_bias(bias: torch.Tensor, eps_acc: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """b̂ = round_half_up(b / (ε_x·ε_w)), int64 (DESIGN §3.2)."""
    real = (to_dtype(bias, dtype) / eps_acc).to(torch.float64).numpy()
    return torch.from_numpy(round_half_up(real).astype(np.int64))


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

    The shift d is :func:`~edgeq.numerics.choose_shift`'s (largest d keeping ``mul``
    within ``mul_bits`` and ``acc·mul + add`` within ``acc_bits`` for |acc| <=
    ``acc_bound``), lowered further while ``add`` exceeds ``opts.add_bits``.
    """
    m = real_mul.to(torch.float64).numpy()
    a = real_add.to(torch.float64).numpy()
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(a))):
        raise IntegerOverflowError(f"{where}: the requantisation scale is not finite")
    d = choose_shift(m, acc_bound, a, opts.mul_bits, opts.acc_bits, where=where)
    while True:
        p = make_requant(m, a, acc_bound, lo, hi, shift=d, mul_bits=opts.mul_bits,
                         acc_bits=opts.acc_bits, where=where)
        if opts.add_bits is None or int(np.max(np.abs(p.add))) < 2 ** (opts.add_bits - 1):
            return p
        if d == 1:
            raise IntegerOverflowError(f"{where}: add does not fit {opts.add_bits} bits")
        d -= 1


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
