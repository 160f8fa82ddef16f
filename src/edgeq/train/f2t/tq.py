"""The true-quantised (TQ) network: a straight program of small exact integer ops.

Every tensor is int64. Each op reads named values and writes one; :class:`TQNetwork`
runs them in order. The ops (semantics of DESIGN §3, one IR node each, :mod:`.to_ir`):

* :class:`IntConv2d` / :class:`IntLinear`: ``acc = Σ x̂·ŵ + b̂``. CPU torch has no int64
  conv, so the sum runs in float64 — exact, because F2T proved statically that every
  partial sum stays below 2^53 (``Σ|ŵ|·max|x̂| < 2^53``) — then is cast back to int64.
* :class:`RequantShift`: ``clip(floor((x·mul + add) / 2^d), lo, hi)``, in int64; F2T
  chose d so that ``|x·mul + add|`` provably fits (no wrap can happen).
* :class:`IntHarmonisedAdd`: ``clip(Σ x_i, lo, hi)`` (inputs already on one ε);
  :class:`IntConcat`; :class:`IntSumPool` (exact window sums);
  :class:`IntMaxPool`; :class:`Flatten`; :class:`Reshape`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from edgeq.errors import IntegralityError, ShapeError
from edgeq.numerics import IntRange


class IntOp(nn.Module):
    """One op of the TQ program: reads ``inputs`` (value names), writes ``output``."""

    def __init__(self, name: str, inputs: list[str], output: str) -> None:
        super().__init__()
        self.op_name, self.inputs, self.output = name, list(inputs), output

    def extra_repr(self) -> str:
        return f"{self.output} <- {', '.join(self.inputs)}"


def _exact_float64(fn, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Run a float64 linear op on integers and come back to int64 (statically exact)."""
    return fn(x.to(torch.float64), w.to(torch.float64)).to(torch.int64)


class _IntWeighted(IntOp):
    """Integer weight ŵ (in ``weight_range``, scale ``weight_eps``) and bias b̂ (int64)."""

    def __init__(self, name, inputs, output, weight, bias, weight_range: IntRange,
                 weight_eps: torch.Tensor):
        super().__init__(name, inputs, output)
        self.register_buffer("weight", weight.to(torch.int64))
        self.register_buffer("bias", None if bias is None else bias.to(torch.int64))
        self.weight_range, self.weight_eps = weight_range, weight_eps


class IntConv2d(_IntWeighted):
    """``acc = conv2d(x̂, ŵ) + b̂`` (zero padding = the real value 0)."""

    def __init__(self, name, inputs, output, weight, bias, weight_range, weight_eps, *,
                 stride, padding, dilation, groups):
        super().__init__(name, inputs, output, weight, bias, weight_range, weight_eps)
        self.stride, self.padding = tuple(stride), tuple(padding)
        self.dilation, self.groups = tuple(dilation), int(groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def conv(a, w):
            return F.conv2d(a, w, None, self.stride, self.padding, self.dilation, self.groups)

        acc = _exact_float64(conv, x, self.weight)
        return acc if self.bias is None else acc + self.bias.view(1, -1, 1, 1)


class IntLinear(_IntWeighted):
    """``acc = x̂ ŵᵀ + b̂``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acc = _exact_float64(F.linear, x, self.weight)
        return acc if self.bias is None else acc + self.bias


class RequantShift(IntOp):
    """``y = clip(floor((x·mul + add) / 2^shift), lo, hi)``; mul/add scalar or per channel
    (shaped to broadcast: [C, 1, 1] for NCHW, [C] for NC)."""

    def __init__(self, name, inputs, output, mul, add, shift: int, lo: int, hi: int):
        super().__init__(name, inputs, output)
        self.register_buffer("mul", torch.as_tensor(mul, dtype=torch.int64))
        self.register_buffer("add", torch.as_tensor(add, dtype=torch.int64))
        self.shift, self.lo, self.hi = int(shift), int(lo), int(hi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # >> on int64 is an arithmetic shift, i.e. floor division by 2^shift
        return torch.clamp((x * self.mul + self.add) >> self.shift, self.lo, self.hi)


class IntHarmonisedAdd(IntOp):
    """``y = clip(Σ_i x_i, lo, hi)``: the inputs already share one ε."""

    def __init__(self, name, inputs, output, lo: int, hi: int):
        super().__init__(name, inputs, output)
        self.lo, self.hi = int(lo), int(hi)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return torch.clamp(total, self.lo, self.hi)


class IntConcat(IntOp):
    def __init__(self, name, inputs, output, dim: int):
        super().__init__(name, inputs, output)
        self.dim = int(dim)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


class IntSumPool(IntOp):
    """Exact sums over ``kernel`` windows (zero padding): average pool × k, in int64."""

    def __init__(self, name, inputs, output, kernel, stride, padding):
        super().__init__(name, inputs, output)
        self.kernel, self.stride, self.padding = tuple(kernel), tuple(stride), tuple(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.padding
        x = F.pad(x, (pw, pw, ph, ph))
        (kh, kw), (sh, sw) = self.kernel, self.stride
        return x.unfold(2, kh, sh).unfold(3, kw, sw).sum(dim=(-2, -1))


class IntMaxPool(IntOp):
    def __init__(self, name, inputs, output, kernel, stride, padding, dilation, ceil_mode):
        super().__init__(name, inputs, output)
        self.kernel, self.stride, self.padding = tuple(kernel), tuple(stride), tuple(padding)
        self.dilation, self.ceil_mode = tuple(dilation), bool(ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.kernel, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode)


class Flatten(IntOp):
    def __init__(self, name, inputs, output, start_dim: int = 1, end_dim: int = -1):
        super().__init__(name, inputs, output)
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, self.start_dim, self.end_dim)


class Reshape(IntOp):
    """Reshape keeping the batch dimension: ``x.reshape(N, *shape)``."""

    def __init__(self, name, inputs, output, shape: tuple[int, ...]):
        super().__init__(name, inputs, output)
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


# ---------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------
class InputRule(NamedTuple):
    """The TQ input rule ``x̂ = clip(floor(x/ε + ½), lo, hi)``."""

    range: IntRange
    eps: float


@dataclass(frozen=True)
class ValueInfo:
    """What the program knows about one value: example shape (batch first), IntRange
    (quantiser outputs) or None (accumulators), ε ([] or [C] along dim 1), bounds."""

    shape: tuple[int, ...]
    range: IntRange | None
    eps: torch.Tensor
    lo: int
    hi: int


class TQNetwork(nn.Module):
    """The integer program F2T builds; ``forward(x̂)`` -> int64 output (``ε·y`` is real).

    ``quantiser_values`` maps every FQ quantiser (fx node name) to the TQ value holding
    the same integers, ``harmonised_inputs`` every harmonised add/concat (fx node name) to
    the values its input quantisers correspond to; ``values`` describes every value (see
    :class:`ValueInfo`).
    """

    def __init__(self, ops: list[IntOp], input_name: str, output_name: str,
                 input_rule: InputRule, values: dict[str, ValueInfo],
                 quantiser_values: dict[str, str], name: str = "tq",
                 harmonised_inputs: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.input_name, self.output_name, self.name = input_name, output_name, name
        self.input_quant = input_rule
        self.values = dict(values)
        self.quantiser_values = dict(quantiser_values)
        self.harmonised_inputs = dict(harmonised_inputs or {})

    @property
    def output_eps(self) -> torch.Tensor:
        """ε of the output: [] or one per output channel (dim 1)."""
        return self.values[self.output_name].eps

    def quantise_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input rule ``clip(floor(x/ε + ½), lo, hi)`` in float64, round half up exact."""
        t = x.detach().to(torch.float64) / self.input_quant.eps
        f = torch.floor(t)
        q = torch.where(t - f >= 0.5, f + 1, f)  # x + ½ in float would itself round
        r = self.input_quant.range
        return torch.clamp(q, r.lo, r.hi).to(torch.int64)

    def dequantise(self, y: torch.Tensor) -> torch.Tensor:
        """``ε·y`` (float64), ε broadcast along dim 1 when per channel."""
        eps = self.output_eps
        if eps.dim() > 0:
            eps = eps.view(1, -1, *([1] * (y.dim() - 2)))
        return y.to(torch.float64) * eps.to(torch.float64)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise IntegralityError(
                f"TQ network '{self.name}': input must be an integer tensor, got {x.dtype}; "
                "use quantise_input() on float data"
            )
        want = self.values[self.input_name].shape[1:]
        if tuple(x.shape[1:]) != tuple(want):
            raise ShapeError(f"TQ network '{self.name}': input shape {list(x.shape)}, "
                             f"expected [N, {', '.join(map(str, want))}]")
        r = self.input_quant.range
        if x.numel() and (int(x.min()) < r.lo or int(x.max()) > r.hi):
            raise IntegralityError(
                f"TQ network '{self.name}': input holds [{int(x.min())}, {int(x.max())}], "
                f"outside its range {r}"
            )

    def forward(self, x: torch.Tensor, capture: dict | None = None) -> torch.Tensor:
        """Run the program on integer input ``x``; ``capture`` (a dict) receives every value."""
        self._check_input(x)
        env = {self.input_name: x.to(torch.int64)}
        for op in self.ops:
            env[op.output] = op(*(env[name] for name in op.inputs))
        if capture is not None:
            capture.update(env)
        return env[self.output_name]

    def to_ir(self):
        """The same program as an :class:`edgeq.engine.ir.Graph` (see :mod:`.to_ir`)."""
        from edgeq.train.f2t.to_ir import tq_to_ir

        return tq_to_ir(self)
