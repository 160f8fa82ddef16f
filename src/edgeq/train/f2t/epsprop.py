"""ε propagation: what F2T knows about every fx node's output.

A :class:`State` describes the output of one fx node of the FQ network as the TQ network
holds it. Two kinds exist:

* **float** — the raw network input before its quantiser; nothing integer may read it.
* **integer** — an integer tensor ``q`` (a TQ value) with a static bound ``lo <= q <= hi``
  and a scale ε (scalar, or one per channel along dim 1), plus an optional *pending
  affine* ``(a, c)`` in real units, so that the FQ network's float value is

      x = a·ε·q + c            (a = 1, c = 0 when nothing is pending).

  A quantiser output has ``range`` set (its IntRange) and nothing pending; an
  accumulator (conv/linear/sum-pool output) has ``range`` None; a BatchNorm leaves the
  integers alone and only composes the pending affine (folded later into a requant).

The rules (each a short function below), with every float in the conversion ``dtype``:

* linear op:   ε_out = ε_x·ε_w                              (:func:`linear_eps`)
* BatchNorm:   (a, c) -> (γ̂·a, γ̂·c + β̂)                     (:func:`with_batchnorm`)
* sum pool:    ε_out = ε_in/k, bounds ×k, affine unchanged   (:func:`pooled`)
* requant:     real_mul = a·ε_in/ε_out, real_add = c/ε_out  (:func:`requant_reals`)
* max pool, flatten, dropout: unchanged (max pool needs a > 0 where an affine is pending).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from edgeq.errors import ConfigError
from edgeq.numerics import IntRange
from edgeq.train.f2t.formats import Arith


class F2TError(ConfigError):
    """F2T cannot convert a node: names the fx node and what is missing or unsupported."""


def node_error(node_name: str, what: str, message: str) -> F2TError:
    """One-line error naming the fx node (and its op)."""
    return F2TError(f"F2T: node '{node_name}' ({what}): {message}")


@dataclass(frozen=True)
class State:
    """The TQ view of one fx node's output (see the module docstring)."""

    value: str  # name of the TQ value holding the integers (or the float input)
    shape: tuple[int, ...]  # example shape, batch first
    eps: torch.Tensor | None = None  # [] or [C] (channel axis 1), in the conversion dtype
    lo: int = 0
    hi: int = 0
    range: IntRange | None = None  # the quantiser's range, for quantiser outputs
    scale: torch.Tensor | None = None  # pending affine multiplier a ([] or [C]); None = 1
    offset: torch.Tensor | None = None  # pending affine offset c (real units); None = 0
    affine_from: str = ""  # fx node that left the affine pending (for errors)
    is_float: bool = False

    @property
    def pending(self) -> bool:
        return self.scale is not None or self.offset is not None

    @property
    def per_channel(self) -> bool:
        return any(t is not None and t.dim() > 0 for t in (self.eps, self.scale, self.offset))

    @property
    def bound(self) -> int:
        """max |q|, the static bound every integer proof starts from."""
        return max(abs(self.lo), abs(self.hi))

    @property
    def channels(self) -> int:
        return self.shape[1] if len(self.shape) > 1 else 1

    def replace(self, **changes) -> State:
        return dataclasses.replace(self, **changes)


def float_input(value: str, shape: tuple[int, ...]) -> State:
    return State(value, shape, is_float=True)


def quantised(value: str, shape, eps: torch.Tensor, r: IntRange) -> State:
    """A quantiser output: integers in ``r`` at scale ``eps``, nothing pending."""
    return State(value, tuple(shape), eps, r.lo, r.hi, r)


def accumulator(value: str, shape, eps: torch.Tensor, lo: int, hi: int) -> State:
    return State(value, tuple(shape), eps, int(lo), int(hi))


# ---------------------------------------------------------------------------------------
# the propagation rules
# ---------------------------------------------------------------------------------------
# Every rule takes the conversion arithmetic (:class:`~.formats.Arith`, default float64)
# and rounds each operation's result to its format, naming the node (``where``) in errors.
_F64 = Arith(torch.float64)


def linear_eps(eps_x: torch.Tensor, eps_w: torch.Tensor, arith: Arith = _F64,
               where: str = "") -> torch.Tensor:
    """ε of ``Σ x̂·ŵ``: ε_x·ε_w (per output channel when ε_w is)."""
    return arith.rnd(eps_x * eps_w, where, "ε_x·ε_w", factors=(eps_x, eps_w))


def with_batchnorm(s: State, gamma_hat: torch.Tensor, beta_hat: torch.Tensor, bn: str,
                   arith: Arith = _F64) -> State:
    """BN(a·ε·q + c) = γ̂·a·ε·q + (γ̂·c + β̂): compose the pending affine."""
    r = arith.rnd
    where = f"node '{bn}'"
    a = gamma_hat if s.scale is None else r(gamma_hat * s.scale, where, "γ̂·a")
    c = beta_hat if s.offset is None else r(r(gamma_hat * s.offset, where, "γ̂·c") + beta_hat,
                                            where, "γ̂·c + β̂")
    return s.replace(scale=a, offset=c, affine_from=bn, range=None)


def pooled(s: State, value: str, shape, k: int, arith: Arith = _F64) -> State:
    """A sum over k taps of a·ε·q + c, divided by k as the average does: ε/k, bounds ×k."""
    lo, hi = min(k * s.lo, 0), max(k * s.hi, 0)  # zero padding may enter the window
    eps = arith.rnd(s.eps / k, f"node '{value}'", "ε/k", factors=(s.eps,))
    return s.replace(value=value, shape=tuple(shape), eps=eps, lo=lo, hi=hi, range=None)


def requant_reals(s: State, eps_out: torch.Tensor, arith: Arith = _F64, where: str = ""
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(real_mul, real_add) with y = acc·real_mul + real_add in output units:
    real_mul = a·ε_in/ε_out, real_add = c/ε_out (DESIGN §3.3)."""
    r = arith.rnd
    if s.scale is None:
        mul = r(s.eps / eps_out, where, "m = ε_in/ε_out", factors=(s.eps,))
    else:
        scaled = r(s.scale * s.eps, where, "a·ε_in")
        mul = r(scaled / eps_out, where, "m = a·ε_in/ε_out")
    add = (torch.zeros((), dtype=mul.dtype) if s.offset is None
           else r(s.offset / eps_out, where, "a = c/ε_out"))
    return mul, add
