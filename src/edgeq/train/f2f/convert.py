"""Point-wise replacement of float modules by their fake-quantised counterparts.

Conv2d -> QuantConv2d, Linear -> QuantLinear, ReLU/ReLU6/LeakyReLU/Identity ->
QuantActivation. Matching is on the exact class: a subclass may override ``forward``,
and silently quantising it as its base class would change what it computes.
BatchNorm stays float (F2T folds it into the requantisation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.fx as fx
from torch import nn

from edgeq.errors import ConfigError
from edgeq.train.f2f.policy import QUANTISABLE_TYPES
from edgeq.train.f2f.trace import finish, set_module
from edgeq.train.spec import QuantSpec

Factory = Callable[[nn.Module, QuantSpec], nn.Module]


def quant_factories() -> dict[type, Factory]:
    """Float class -> constructor of its fake-quantised counterpart."""
    from edgeq.train.modules import QuantActivation, QuantConv2d, QuantLinear

    factories: dict[type, Factory] = {
        nn.Conv2d: QuantConv2d.from_float,
        nn.Linear: QuantLinear.from_float,
        nn.ReLU: lambda m, s: QuantActivation("relu", s),
        nn.ReLU6: lambda m, s: QuantActivation("relu6", s),
        nn.LeakyReLU: lambda m, s: QuantActivation(
            "leaky_relu", s, negative_slope=m.negative_slope),
        nn.Identity: lambda m, s: QuantActivation("identity", s),
    }
    assert sorted(c.__name__ for c in factories) == sorted(QUANTISABLE_TYPES)
    return factories


def quantise_module(name: str, module: nn.Module, spec: QuantSpec, rule: int) -> nn.Module:
    """The fake-quantised counterpart of ``module``; errors name the module and the rule."""
    factory = quant_factories().get(type(module))
    where = f"module '{name}' ({type(module).__module__}.{type(module).__name__})"
    if factory is None:
        raise ConfigError(f"policy rule #{rule} selects {where}, which has no quantised "
                          f"counterpart; quantisable: {list(QUANTISABLE_TYPES)} from torch.nn")
    try:
        quantised = factory(module, spec)
    except Exception as exc:  # the quantised module refused the spec: say where and why
        raise ConfigError(f"cannot quantise {where} with policy rule #{rule}: {exc}") from exc
    quantised.train(module.training)
    return quantised


def quantise_modules(
    gm: fx.GraphModule, assigned: dict[str, tuple[int, QuantSpec]]
) -> list[tuple[str, str, str]]:
    """Replace each assigned module; returns (name, float type, quantised type) triples."""
    done = []
    for name, (rule, spec) in assigned.items():
        module = gm.get_submodule(name)
        quantised = quantise_module(name, module, spec, rule)
        set_module(gm, name, quantised)
        done.append((name, type(module).__name__, type(quantised).__name__))
    finish(gm)
    return done
