"""Fake-quantised (FQ) modules: what F2F puts into a network and F2T reads back.

Every module here is a :class:`QuantModule`. Its life cycle:

1. **float + observe** (``quant_enabled`` False): the module computes in float. In training
   mode (or inside :func:`edgeq.train.controller.observing`) activation-like modules feed
   their float output to a :class:`RangeObserver`.
2. **start** (:meth:`QuantModule.start`): ε is initialised — weights from the weights
   themselves, activations from the observed statistics (or, if nothing was observed,
   from the first batch that arrives) — and quantisation is enabled.
3. **QAT**: the algorithm trains; weight ε that is not learned is re-fitted every
   :meth:`~QuantModule.step`; :meth:`~QuantModule.set_epoch` drives ANA annealing and INQ
   freezing.
4. **freeze** (:meth:`QuantModule.freeze`): ε stops changing.

F2T reads: ``QuantConv2d``/``QuantLinear`` — ``weight_range``, ``weight_eps``,
``int_weight()``; ``QuantActivation``/``HarmonisedAdd``/``HarmonisedConcat`` — ``range``,
``eps``. Biases stay float in the FQ network (F2T rounds them at scale ε_x·ε_w).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeq.errors import ConfigError, ShapeError
from edgeq.numerics.intrange import IntRange
from edgeq.train import native
from edgeq.train.algorithms import Quantiser, SteQuantiser, make_quantiser
from edgeq.train.observe import RangeObserver, init_bounds
from edgeq.train.quantiser import FALLBACK_BOUND, bound_divisor, to_int64
from edgeq.train.spec import QuantSpec

ACTIVATION_KINDS = ("relu", "relu6", "leaky_relu", "identity")


class QuantModule:
    """Mixin of every FQ module: ``spec``, ``quant_enabled``, ``observing`` and the
    schedule hooks ``start``/``stop``/``freeze``/``set_epoch``/``step``.

    ``quant_enabled`` is stored in a buffer so that it is saved with the state dict, and
    mirrored in a plain attribute that every forward reads (``bool(buffer)`` is a tensor
    read per module and forward); only the setter and ``load_state_dict`` write the buffer,
    and both update the mirror.
    ``observing`` (a plain attribute) forces float computation and statistics collection.
    """

    spec: QuantSpec
    observing: bool

    def _init_quant(self, spec: QuantSpec) -> None:
        if not isinstance(spec, QuantSpec):
            raise ConfigError(f"spec must be a QuantSpec, got {type(spec).__name__}")
        self.spec = spec
        self.observing = False
        self.register_buffer("_quant_enabled", torch.tensor(False))
        self._quant_on = False  # mirror of the buffer (see the class docstring)
        self.register_load_state_dict_post_hook(_sync_quant_enabled)

    # -- flags --------------------------------------------------------------------------
    @property
    def quant_enabled(self) -> bool:
        return self._quant_on

    @quant_enabled.setter
    def quant_enabled(self, value: bool) -> None:
        self._quant_enabled.fill_(bool(value))
        self._quant_on = bool(value)

    @property
    def frozen(self) -> bool:
        return all(bool(q.frozen) for q in self.quantisers())

    @property
    def initialised(self) -> bool:
        return all(bool(q.initialised) for q in self.quantisers())

    def _observe_now(self) -> bool:
        """Collect statistics when asked to, or while training before quantisation starts."""
        return self.observing or (self.training and not self.quant_enabled)

    def _float_now(self) -> bool:
        return self.observing or not self.quant_enabled

    # -- hooks implemented per module -----------------------------------------------------
    def quantisers(self) -> list[Quantiser]:
        raise NotImplementedError

    def init_bounds(self) -> bool:
        """(Re-)initialise ε from statistics; False when there is nothing to initialise from."""
        raise NotImplementedError

    def reset_observations(self) -> None:
        """Forget the observed statistics (weight modules observe nothing)."""

    # -- schedule -----------------------------------------------------------------------
    def start(self) -> None:
        """Initialise ε if not done yet (possibly lazily, at the first batch); enable QAT."""
        if not self.initialised:
            self.init_bounds()
        self.quant_enabled = True

    def stop(self) -> None:
        """Back to float (ε is kept)."""
        self.quant_enabled = False

    def freeze(self) -> None:
        for q in self.quantisers():
            q.freeze()

    def set_epoch(self, epoch: int) -> None:
        """Per-epoch algorithm state (ANA μ/σ); no effect before quantisation starts."""
        if self.quant_enabled:
            for q in self.quantisers():
                q.set_epoch(epoch)

    def step(self) -> None:
        """Per-batch hook (re-fitting of weight ε); nothing for activations."""


def _sync_quant_enabled(module: QuantModule, incompatible_keys) -> None:
    """``load_state_dict`` post-hook: the mirror follows the loaded buffer."""
    module._quant_on = bool(module._quant_enabled)


# ======================================================================================
# weights: Conv2d and Linear
# ======================================================================================
class _QuantWeight(QuantModule):
    """Shared weight handling of QuantConv2d and QuantLinear (output channels = dim 0)."""

    weight: nn.Parameter

    def _init_weight_quant(self, spec: QuantSpec) -> None:
        self._init_quant(spec)
        n_out = self.weight.shape[0]
        self.weight_quantiser = make_quantiser(
            spec,
            n_channels=n_out if spec.per_channel else None,
            channel_dim=0,
            weight_shape=tuple(self.weight.shape),
        ).to(self.weight.device)

    @property
    def _stat_dim(self) -> int | None:
        return 0 if self.spec.per_channel else None

    def quantisers(self) -> list[Quantiser]:
        return [self.weight_quantiser]

    def init_bounds(self) -> bool:
        """ε from the weights with the spec's init method (per tensor or per channel).

        minmax (the default, re-fitted every step by STE and ANA) takes one fused pass
        where it can: the ε ``eps_covering(min, max)`` gives, bit for bit.
        """
        q = self.weight_quantiser
        if self.spec.init.method == "minmax" and type(q).initialise is Quantiser.initialise:
            r = q.int_range
            eps = native.minmax_eps(self.weight, r.lo, r.hi, FALLBACK_BOUND / bound_divisor(r),
                                    self.spec.per_channel)
            if eps is not None:
                q.set_eps(eps)
                return True
        a, b = init_bounds(self.weight, self.spec.init, self.spec.int_range, self._stat_dim)
        self.weight_quantiser.initialise(a, b)
        return True

    def _ensure_initialised(self) -> None:
        if not bool(self.weight_quantiser.initialised):
            self.init_bounds()

    def step(self) -> None:
        """Re-fit a non-learned weight ε to the current weights, until frozen."""
        q = self.weight_quantiser
        if self.quant_enabled and q.refits_on_step and not q.learns_eps and not bool(q.frozen):
            self.init_bounds()

    def set_epoch(self, epoch: int) -> None:
        if self.quant_enabled:
            self._ensure_initialised()
            self.weight_quantiser.set_epoch(epoch, self.weight)

    # -- what the forward uses and F2T reads ----------------------------------------------
    def quantised_weight(self) -> torch.Tensor:
        """The fake-quantised weight ε·ŵ (INQ: frozen values where frozen)."""
        self._ensure_initialised()
        return self.weight_quantiser(self.weight)

    def _forward_weight(self) -> torch.Tensor:
        return self.weight if self._float_now() else self.quantised_weight()

    @property
    def weight_range(self) -> IntRange:
        """Integer range of ``int_weight()`` (INQ pow2: the range holding its codebook)."""
        return self.weight_quantiser.int_range

    @property
    def weight_eps(self) -> torch.Tensor:
        """ε_w, shape [] (per tensor) or [C_out] (per channel); detached."""
        self._ensure_initialised()
        return self.weight_quantiser.eps.detach().clone()

    def int_weight(self) -> torch.Tensor:
        """ŵ (int64) with ε_w·ŵ the weight the quantised forward uses."""
        self._ensure_initialised()
        return to_int64(self.weight_quantiser.integers(self.weight.detach()))

    def weight_levels(self) -> torch.Tensor | None:
        """Integer codebook when not every integer of ``weight_range`` is a level (INQ pow2)."""
        levels = getattr(self.weight_quantiser, "levels", None)
        return levels() if levels is not None else None


class QuantConv2d(nn.Conv2d, _QuantWeight):
    """``nn.Conv2d`` with a fake-quantised weight (any groups, incl. depthwise)."""

    def __init__(self, *args, spec: QuantSpec, **kwargs):
        nn.Conv2d.__init__(self, *args, **kwargs)
        self._init_weight_quant(spec)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, spec: QuantSpec) -> QuantConv2d:
        """Same geometry as ``conv``, weights and bias copied."""
        q = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            spec=spec,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        _copy_params(conv, q)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self._forward_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, algorithm={self.spec.algorithm}"


class QuantLinear(nn.Linear, _QuantWeight):
    """``nn.Linear`` with a fake-quantised weight."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, spec, **kw):
        nn.Linear.__init__(self, in_features, out_features, bias=bias, **kw)
        self._init_weight_quant(spec)

    @classmethod
    def from_float(cls, linear: nn.Linear, spec: QuantSpec) -> QuantLinear:
        q = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            spec=spec,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        _copy_params(linear, q)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self._forward_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, algorithm={self.spec.algorithm}"


def _copy_params(src: nn.Module, dst: nn.Module) -> None:
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if src.bias is not None:
            dst.bias.copy_(src.bias)
    dst.train(src.training)


# ======================================================================================
# activations
# ======================================================================================
class _ObservedOutput(QuantModule):
    """One output quantiser plus the observer of its float input (activation-like)."""

    def _init_output_quant(self, spec: QuantSpec, what: str) -> None:
        self._init_quant(spec)
        if spec.per_channel:
            raise ConfigError(f"{what}: QuantSpec.granularity must be 'per_tensor' (one ε)")
        self.quantiser = make_quantiser(spec)
        self.observer = RangeObserver(spec.init, spec.int_range)

    def quantisers(self) -> list[Quantiser]:
        return [self.quantiser]

    def reset_observations(self) -> None:
        self.observer.reset()

    def init_bounds(self) -> bool:
        bounds = self.observer.bounds()
        if bounds is None:
            return False
        self.quantiser.initialise(*bounds)
        return True

    def _observe(self, y: torch.Tensor) -> None:
        if self._observe_now():
            self.observer.update(y)

    def _quantise_output(self, y: torch.Tensor) -> torch.Tensor:
        """Output quantiser, initialising ε from this batch if nothing was observed."""
        if not bool(self.quantiser.initialised) and not self.init_bounds():
            self.observer.update(y)
            self.init_bounds()
        return self.quantiser(y)

    @property
    def range(self) -> IntRange:
        """Integer range of the output."""
        return self.quantiser.int_range

    @property
    def eps(self) -> torch.Tensor:
        """Output ε (scalar, detached)."""
        if not bool(self.quantiser.initialised) and not self.init_bounds():
            raise ConfigError(
                f"{type(self).__name__} has no ε yet: observe data or start QAT first"
            )
        return self.quantiser.eps.detach().clone()


class QuantActivation(nn.Module, _ObservedOutput):
    """Float activation (relu, relu6, leaky_relu, identity) followed by its quantiser."""

    def __init__(self, kind: str, spec: QuantSpec, negative_slope: float = 0.01):
        nn.Module.__init__(self)
        if kind not in ACTIVATION_KINDS:
            raise ConfigError(f"activation kind must be one of {list(ACTIVATION_KINDS)}: {kind!r}")
        self.kind, self.negative_slope = kind, float(negative_slope)
        self._init_output_quant(spec, f"QuantActivation({kind})")

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "relu":
            return F.relu(x)
        if self.kind == "relu6":
            return F.relu6(x)
        if self.kind == "leaky_relu":
            return F.leaky_relu(x, self.negative_slope)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "relu" and not self._float_now():
            y = self._fused_relu(x)
            if y is not None:
                return y
        y = self.activation(x)
        self._observe(y)
        return y if self._float_now() else self._quantise_output(y)

    def _fused_relu(self, x: torch.Tensor) -> torch.Tensor | None:
        """relu and the output quantiser in one pass where the quantiser offers it
        (``relu_forward``: PACT with the fused kernels), else None. Nothing is observed
        while quantising, so skipping ``_observe`` changes nothing."""
        fused = getattr(self.quantiser, "relu_forward", None)
        if fused is None or not bool(self.quantiser.initialised):
            return None
        return fused(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, algorithm={self.spec.algorithm}, range={self.range}"


# ======================================================================================
# ε-harmonised add and concat
# ======================================================================================
class _Harmonised(nn.Module, _ObservedOutput):
    """Inputs requantised onto the output ε, combined, then the output quantiser.

    Every input has an STE quantiser on the output's range whose ε :meth:`harmonise`
    copies from the output quantiser (bit-identical) before every quantised forward, so
    the integer op is exact: y = clip(combine_i(x̂_i), lo, hi) at one ε. Only the output
    quantiser learns; input quantisers pass gradients straight through inside the range.
    """

    def __init__(self, n_inputs: int, spec: QuantSpec):
        nn.Module.__init__(self)
        if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or n_inputs < 1:
            raise ConfigError(f"{type(self).__name__}: n_inputs must be an integer >= 1")
        self.n_inputs = n_inputs
        self._init_output_quant(spec, type(self).__name__)
        in_spec = QuantSpec("ste", spec.n_levels, spec.signed, "per_tensor", spec.init)
        self.in_quantisers = nn.ModuleList(SteQuantiser(in_spec) for _ in range(n_inputs))

    def quantisers(self) -> list[Quantiser]:
        return [self.quantiser, *self.in_quantisers]

    def set_epoch(self, epoch: int) -> None:
        if self.quant_enabled:
            self.quantiser.set_epoch(epoch)

    def init_bounds(self) -> bool:
        ok = super().init_bounds()
        if ok:
            self.harmonise()
        return ok

    @torch.no_grad()
    def harmonise(self) -> None:
        """Copy the output ε into every input quantiser."""
        eps = self.quantiser.eps.detach()
        for q in self.in_quantisers:
            q.set_eps(eps)

    def combine(self, xs: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if len(xs) != self.n_inputs:
            raise ShapeError(f"{type(self).__name__} expects {self.n_inputs} inputs, got {len(xs)}")
        if self._float_now():
            y = self.combine(list(xs))
            self._observe(y)
            return y
        if not bool(self.quantiser.initialised) and not self.init_bounds():
            self.observer.update(self.combine(list(xs)).detach())
            self.init_bounds()
        if not torch.jit.is_tracing():  # ONNX export: ε is already harmonised, and the
            self.harmonise()  # tracer cannot record the buffer writes (aten::fill_)
        y = self.combine([q(x) for q, x in zip(self.in_quantisers, xs, strict=True)])
        return self.quantiser(y)

    @property
    def input_eps(self) -> list[torch.Tensor]:
        """ε of every input quantiser (equal to :attr:`eps` after harmonisation)."""
        return [q.eps.detach().clone() for q in self.in_quantisers]


class HarmonisedAdd(_Harmonised):
    """y = Q_out(Σ_i Q_in(x_i; ε_out)) — the harmonised adder (DESIGN §3.5)."""

    def combine(self, xs: list[torch.Tensor]) -> torch.Tensor:
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y


class HarmonisedConcat(_Harmonised):
    """y = Q_out(cat_i Q_in(x_i; ε_out)) along ``dim``."""

    def __init__(self, n_inputs: int, dim: int, spec: QuantSpec):
        super().__init__(n_inputs, spec)
        self.dim = int(dim)

    def combine(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"n_inputs={self.n_inputs}, dim={self.dim}, algorithm={self.spec.algorithm}"


def quant_modules(model: nn.Module) -> list[tuple[str, QuantModule]]:
    """All (name, module) pairs of ``model`` that are :class:`QuantModule` s."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantModule)]
