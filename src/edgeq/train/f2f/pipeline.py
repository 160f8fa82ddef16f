"""The F2F entry point: float model + precision policy -> fake-quantised GraphModule."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
import torch.fx as fx
from torch import nn

from edgeq.train.f2f.canonicalise import canonicalise
from edgeq.train.f2f.convert import quantise_modules
from edgeq.train.f2f.harmonise import (
    find_add_trees,
    find_concats,
    harmonise_adds,
    harmonise_concats,
)
from edgeq.train.f2f.inputs import insert_input_quantisers
from edgeq.train.f2f.policy import Policy, Target
from edgeq.train.f2f.trace import is_tensor, propagate_shapes, trace
from edgeq.train.spec import QuantSpec

# Ops that move or select values without changing them, or that F2T turns into exact
# integer ops (pooling); anything else left in the graph is computed in float.
_PASS_THROUGH_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
                         nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                         nn.Flatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
_PASS_THROUGH_METHODS = {"view", "reshape", "flatten", "contiguous", "permute", "transpose",
                         "squeeze", "unsqueeze", "size", "dim", "chunk", "split"}
_PASS_THROUGH_FUNCTIONS = {"getitem", "getattr", "flatten", "reshape", "squeeze", "unsqueeze",
                           "permute", "transpose", "max_pool2d", "avg_pool2d",
                           "adaptive_avg_pool2d", "dropout", "chunk", "split"}


@dataclass
class LayerAssignment:
    name: str
    type_name: str
    rule: int
    spec: dict


@dataclass
class F2FReport:
    """What F2F did, and what it could not make integer."""

    quantised: list[LayerAssignment] = field(default_factory=list)
    kept_float: list[str] = field(default_factory=list)  # excused by allow_float
    canonicalised: dict = field(default_factory=dict)
    harmonised_adds: list[tuple[str, int]] = field(default_factory=list)
    harmonised_concats: list[tuple[str, int]] = field(default_factory=list)
    # Quantised conv/linear layers whose input is not the output of a quantiser (their
    # integer input needs an extra quantiser before F2T). Without ``input_spec`` the
    # network input is float, so the first layer is listed here.
    unquantised_inputs: list[str] = field(default_factory=list)
    # Functional ops left computing in float (e.g. torch.sigmoid): not integer-only.
    float_ops: list[str] = field(default_factory=list)
    # Quantisers inserted after the network inputs (f2f(..., input_spec=...)).
    input_quantisers: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"{'layer':40s} {'type':12s} rule  spec"]
        for a in self.quantised:
            kind = "s" if a.spec["signed"] else "u"
            lines.append(f"{a.name:40s} {a.type_name:12s} #{a.rule:<3d} {a.spec['algorithm']} "
                         f"{kind}{a.spec['n_levels']} {a.spec['granularity']}")
        for title, items in (("kept float", self.kept_float),
                             ("unquantised inputs", self.unquantised_inputs),
                             ("float ops", self.float_ops)):
            if items:
                lines.append(f"{title}: {', '.join(items)}")
        return "\n".join(lines)


def _module_targets(gm: fx.GraphModule) -> list[Target]:
    names = dict.fromkeys(n.target for n in gm.graph.nodes if n.op == "call_module")
    return [Target(name, type(gm.get_submodule(name)).__name__) for name in names]


def _is_quantiser(gm: fx.GraphModule, node: fx.Node) -> bool:
    """True if ``node``'s value lies on a quantiser's grid (conv/linear outputs do not:
    they are accumulators at ε_x·ε_w plus a float bias)."""
    from edgeq.train.modules import HarmonisedAdd, HarmonisedConcat, QuantActivation

    grids = (QuantActivation, HarmonisedAdd, HarmonisedConcat)
    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), grids)


def _passes_through(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), _PASS_THROUGH_MODULES)
    if node.op == "call_method":
        return node.target in _PASS_THROUGH_METHODS
    return node.op == "call_function" and getattr(node.target, "__name__", "") in (
        _PASS_THROUGH_FUNCTIONS)


def _quantised_source(gm: fx.GraphModule, node: object) -> bool:
    while isinstance(node, fx.Node) and _passes_through(gm, node):
        node = node.args[0]
    return isinstance(node, fx.Node) and _is_quantiser(gm, node)


def _unquantised_inputs(gm: fx.GraphModule) -> list[str]:
    from edgeq.train.modules import QuantConv2d, QuantLinear

    return [n.target for n in gm.graph.nodes if n.op == "call_module"
            and isinstance(gm.get_submodule(n.target), (QuantConv2d, QuantLinear))
            and not _quantised_source(gm, n.args[0])]


def _float_ops(gm: fx.GraphModule) -> list[str]:
    """Tensor-valued functional ops that F2F left alone (int arithmetic on sizes is fine)."""
    return [f"{n.name} ({getattr(n.target, '__name__', n.target)})" for n in gm.graph.nodes
            if n.op in ("call_function", "call_method") and is_tensor(n)
            and not _passes_through(gm, n)]


def f2f(
    model: nn.Module,
    policy: Policy,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    leaf_modules: tuple[str | type, ...] = (),
    input_spec: QuantSpec | None = None,
) -> tuple[fx.GraphModule, F2FReport]:
    """Float-to-fake conversion of a copy of ``model`` (the model itself is not touched).

    trace -> shapes -> canonicalise -> resolve ``policy`` on modules, add trees and concats
    -> replace modules -> harmonise adds and concats. Raises ConfigError for untraceable
    models, policy errors and modules that no rule matches (see :mod:`.policy`).

    ``input_spec`` quantises the network input itself (an identity quantiser after each
    input; :mod:`.inputs`), as F2T requires; ``None`` leaves the input float.
    """
    gm = trace(copy.deepcopy(model), leaf_modules)
    gm.training = model.training
    propagate_shapes(gm, example_input)
    report = F2FReport(canonicalised=canonicalise(gm))
    trees, concats = find_add_trees(gm), find_concats(gm)
    targets = (_module_targets(gm) + [Target(t.name, "add") for t in trees]
               + [Target(c.name, "cat") for c in concats])
    resolution = policy.resolve(targets)
    assigned = resolution.assigned
    module_names = {t.name for t in targets if t.type_name not in ("add", "cat")}
    quantise_modules(gm, {k: v for k, v in assigned.items() if k in module_names})
    report.harmonised_adds = harmonise_adds(
        gm, lambda name: assigned[name][1], [t for t in trees if t.name in assigned])
    report.harmonised_concats = harmonise_concats(
        gm, lambda name: assigned[name][1], [c for c in concats if c.name in assigned])
    for name in [n for n, _ in report.harmonised_adds + report.harmonised_concats]:
        gm.get_submodule(name).train(model.training)
    if input_spec is not None:
        report.input_quantisers = insert_input_quantisers(gm, input_spec)
    types = {t.name: t.type_name for t in targets}
    report.quantised = [LayerAssignment(n, types[n], rule, spec.to_json())
                        for n, (rule, spec) in assigned.items()]
    report.kept_float = list(resolution.allowed_float)
    report.unquantised_inputs = _unquantised_inputs(gm)
    report.float_ops = _float_ops(gm)
    return gm, report
