"""The quantiser base class and the explicit registry of QAT algorithms.

A :class:`Quantiser` is an ``nn.Module`` holding the state of one fake quantiser: its
:class:`IntRange`, its scale ε (shape [] or [C] along ``channel_dim``) stored in whatever
form the algorithm learns (a bound, a log2 threshold...), and two flags: ``initialised``
(ε was set from statistics) and ``frozen`` (ε no longer changes). Each algorithm module
(``ste``, ``pact``, ``tqt``, ``ana``, ``inq``) registers its subclass with
:func:`register_quantiser`; :func:`make_quantiser` builds one from a :class:`QuantSpec`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgeq.errors import ConfigError
from edgeq.numerics.intrange import IntRange
from edgeq.train.quantiser import eps_covering, int_quantise
from edgeq.train.spec import QuantSpec


class Quantiser(nn.Module):
    """State and forward of one fake quantiser; subclasses define how ε is stored.

    Subclasses implement ``eps`` (property), ``_store_eps(eps)`` and ``forward(x)``.
    """

    #: True when the algorithm may quantise weights only (INQ).
    weights_only: bool = False
    #: True when a weight quantiser with a non-learned ε re-fits it from the weights every
    #: step until frozen (QuantLib-f2f behaviour); INQ keeps the s of its first step.
    refits_on_step: bool = True

    def __init__(self, spec: QuantSpec, n_channels: int | None = None, channel_dim: int = 0):
        super().__init__()
        if spec.per_channel and n_channels is None:
            raise ConfigError(
                "QuantSpec.granularity 'per_channel' applies to weights only (got an activation)"
            )
        self.spec = spec
        self.int_range: IntRange = spec.int_range
        self.channel_dim = channel_dim
        self.eps_shape: tuple[int, ...] = (n_channels,) if spec.per_channel else ()
        self.register_buffer("initialised", torch.tensor(False))
        self.register_buffer("frozen", torch.tensor(False))

    # -- scale ------------------------------------------------------------------------
    @property
    def eps(self) -> torch.Tensor:
        """ε, shape [] or [C]; differentiable when the algorithm learns it."""
        raise NotImplementedError

    def _store_eps(self, eps: torch.Tensor) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def set_eps(self, eps: torch.Tensor) -> None:
        """Overwrite ε (e.g. harmonisation); marks the quantiser initialised."""
        eps = torch.as_tensor(eps).detach()
        if eps.shape != self.eps_shape:
            eps = eps.expand(self.eps_shape)
        self._store_eps(eps)  # every _store_eps copies into its own tensor
        if not bool(self.initialised):  # weight ε is re-set every step: read, don't write
            self.initialised.fill_(True)

    def initialise(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Set ε from an observed interval [a, b]: the smallest grid covering it."""
        self.set_eps(eps_covering(a, b, self.int_range))

    # -- schedule hooks -----------------------------------------------------------------
    @property
    def learns_eps(self) -> bool:
        """True while ε is a trainable parameter (not frozen). Read on every controller
        step, so it looks at the module's own parameter dict, not ``parameters()``."""
        return any(p is not None and p.requires_grad for p in self._parameters.values())

    def freeze(self) -> None:
        """Stop ε changing: parameters stop requiring grad, re-fitting stops."""
        self.frozen.fill_(True)
        for p in self.parameters(recurse=False):
            p.requires_grad_(False)

    def set_epoch(self, epoch: int, x: torch.Tensor | None = None) -> None:
        """Epoch hook (ANA annealing, INQ freezing); ``x`` is the weight for INQ."""

    # -- integers -----------------------------------------------------------------------
    @torch.no_grad()
    def integers(self, x: torch.Tensor) -> torch.Tensor:
        """The integers x̂ the hard quantiser assigns to ``x`` (float tensor)."""
        return int_quantise(x, self.eps.detach(), self.int_range, self.channel_dim)

    def extra_repr(self) -> str:
        return f"range={self.int_range}, eps_shape={list(self.eps_shape)}"


QuantiserFactory = Callable[..., Quantiser]
QUANTISERS: dict[str, type[Quantiser]] = {}


def register_quantiser(name: str) -> Callable[[type[Quantiser]], type[Quantiser]]:
    """Class decorator: register a Quantiser under an algorithm name (duplicates refused)."""

    def deco(cls: type[Quantiser]) -> type[Quantiser]:
        if name in QUANTISERS:
            raise ValueError(f"quantiser {name!r} registered twice")
        QUANTISERS[name] = cls
        return cls

    return deco


def make_quantiser(
    spec: QuantSpec,
    n_channels: int | None = None,
    channel_dim: int = 0,
    weight_shape: tuple[int, ...] | None = None,
) -> Quantiser:
    """Build the quantiser of ``spec``; ``weight_shape`` is given for weights, None for
    activations (``n_channels`` = size of ``channel_dim`` for per-channel weights)."""
    cls = QUANTISERS.get(spec.algorithm)
    if cls is None:
        raise ConfigError(f"QuantSpec.algorithm {spec.algorithm!r} has no registered quantiser")
    if cls.weights_only:
        if weight_shape is None:
            raise ConfigError(f"algorithm {spec.algorithm!r} quantises weights only")
        return cls(spec, n_channels, channel_dim, weight_shape=weight_shape)
    return cls(spec, n_channels, channel_dim)
