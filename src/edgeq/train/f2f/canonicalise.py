"""Canonicalisation: rewrite a traced float model into the few forms F2F quantises.

Each pass takes a GraphModule, rewrites it in place, regenerates its code and returns a
list describing what it changed (for the F2F report). The passes, in the order
:func:`canonicalise` runs them:

1. :func:`remove_inplace` — in-place activations become out-of-place; later readers of
   the input read the activation's output, which is what in-place meant.
2. :func:`modularise_activations` — F.relu, torch.relu, Tensor.relu, F.relu6,
   F.leaky_relu and F.hardtanh(0, 6) calls become nn.ReLU/ReLU6/LeakyReLU modules.
3. :func:`canonicalise_flatten` — torch.flatten(x, 1), x.flatten(1) and
   x.view/reshape(x.size(0), -1) become nn.Flatten().
4. :func:`split_shared_modules` — a parameter-free module called at several sites gets
   one copy per site (each activation site needs its own clipping bound).
5. :func:`fold_bias_into_bn` — a conv/linear bias feeding only a BatchNorm moves into
   the BN's running mean (μ ← μ − b).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from edgeq.errors import ConfigError
from edgeq.train.f2f.trace import finish, module_sites, scoped_name, unique_name

# ---------------------------------------------------------------------------------------
# 1. in-place activations
# ---------------------------------------------------------------------------------------
_INPLACE_FUNCTIONS = {torch.relu_, F.relu_, F.leaky_relu_}
_INPLACE_METHODS = {"relu_"}


def _is_inplace(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
    if node.op == "call_function":
        return node.target in _INPLACE_FUNCTIONS or node.kwargs.get("inplace") is True
    return node.op == "call_method" and node.target in _INPLACE_METHODS


def _redirect_later_readers(node: fx.Node, source: fx.Node) -> None:
    """Users of ``source`` that run after ``node`` read ``node`` instead."""
    seen_node = False
    for candidate in node.graph.nodes:
        if candidate is node:
            seen_node = True
        elif seen_node and source in candidate.all_input_nodes:
            candidate.replace_input_with(source, node)


def remove_inplace(gm: fx.GraphModule) -> list[str]:
    """Make in-place activation calls out-of-place without changing what anyone reads."""
    # Find every site first: clearing a shared module's flag must not hide its later sites.
    sites = []
    for node in gm.graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        source = node.args[0] if node.args else node.kwargs.get("input")
        if isinstance(source, fx.Node) and _is_inplace(gm, node):
            sites.append((node, source))
    for node, source in sites:
        _redirect_later_readers(node, source)
        if node.op == "call_module":
            gm.get_submodule(node.target).inplace = False
    finish(gm)
    return [node.name for node, _ in sites]


# ---------------------------------------------------------------------------------------
# 2. functional activations -> modules
# ---------------------------------------------------------------------------------------
def _arg(node: fx.Node, names: tuple[str, ...], key: str, default):
    """Value of parameter ``key`` of a call, positional (per ``names``) or keyword."""
    index = names.index(key)
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(key, default)


def _input_of(node: fx.Node) -> fx.Node:
    return node.args[0] if node.args else node.kwargs["input"]


def _relu(node: fx.Node) -> nn.Module:
    return nn.ReLU()


def _relu6(node: fx.Node) -> nn.Module:
    return nn.ReLU6()


def _leaky_relu(node: fx.Node) -> nn.Module:
    slope = _arg(node, ("input", "negative_slope", "inplace"), "negative_slope", 0.01)
    return nn.LeakyReLU(float(slope))


def _hardtanh(node: fx.Node) -> nn.Module | None:
    names = ("input", "min_val", "max_val", "inplace")
    lo, hi = _arg(node, names, "min_val", -1.0), _arg(node, names, "max_val", 1.0)
    # Only the ReLU6 form has a quantised counterpart; other hardtanh calls stay as they are.
    return nn.ReLU6() if (lo, hi) == (0, 6) else None


_FUNCTION_FACTORIES: dict[Callable, Callable[[fx.Node], nn.Module | None]] = {
    F.relu: _relu, torch.relu: _relu, F.relu_: _relu, torch.relu_: _relu,
    F.relu6: _relu6, F.leaky_relu: _leaky_relu, F.leaky_relu_: _leaky_relu,
    F.hardtanh: _hardtanh,
}
_METHOD_FACTORIES = {"relu": _relu, "relu_": _relu}


def _activation_factory(node: fx.Node):
    if node.op == "call_function":
        return _FUNCTION_FACTORIES.get(node.target)
    if node.op == "call_method":
        return _METHOD_FACTORIES.get(node.target)
    return None


def modularise_activations(gm: fx.GraphModule) -> list[str]:
    """Replace functional activation calls by calls of new modules; returns their names."""
    created = []
    for node in list(gm.graph.nodes):
        factory = _activation_factory(node)
        module = factory(node) if factory is not None else None
        if module is None:
            continue
        name = scoped_name(gm, node, type(module).__name__.lower())
        gm.add_submodule(name, module)
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(name, (_input_of(node),))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        created.append(name)
    finish(gm)
    return created


# ---------------------------------------------------------------------------------------
# 3. flatten
# ---------------------------------------------------------------------------------------
def _is_batch_size_of(node: object, x: fx.Node) -> bool:
    """True if ``node`` is ``x.size(0)``, ``x.size(dim=0)`` or ``x.shape[0]``."""
    if not isinstance(node, fx.Node):
        return False
    if node.op == "call_method" and node.target == "size" and node.args[0] is x:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return dim == 0
    if node.op == "call_function" and node.target is operator.getitem and node.args[1] == 0:
        src = node.args[0]
        return isinstance(src, fx.Node) and src.args[:1] == (x,) and (
            (src.op == "call_function" and src.target is getattr and src.args[1] == "shape")
            or (src.op == "call_method" and src.target == "size" and len(src.args) == 1)
        )
    return False


def _shape_args(node: fx.Node) -> tuple:
    shape = node.args[1:] if node.op == "call_method" else node.args[1:2]
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape) or tuple(node.kwargs.get("shape", ()))


def _flattened_input(node: fx.Node) -> fx.Node | None:
    """The tensor ``node`` flattens from dim 1 on, or None if it is not such a flatten."""
    x = node.args[0] if node.args else None
    if not isinstance(x, fx.Node):
        return None
    is_flatten = (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target == "flatten")
    if is_flatten:
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return x if (start, end) == (1, -1) else None
    is_reshape = (node.op == "call_method" and node.target in ("view", "reshape")) or (
        node.op == "call_function" and node.target is torch.reshape)
    if is_reshape:
        shape = _shape_args(node)
        if len(shape) == 2 and shape[1] == -1 and _is_batch_size_of(shape[0], x):
            return x
    return None


def _erase_if_dead(gm: fx.GraphModule, node: object) -> None:
    """Erase the size/shape nodes a rewritten flatten no longer needs (and only those)."""
    pure = {("call_method", "size"), ("call_function", operator.getitem),
            ("call_function", getattr)}
    if isinstance(node, fx.Node) and not node.users and (node.op, node.target) in pure:
        inputs = node.all_input_nodes
        gm.graph.erase_node(node)
        for parent in inputs:
            _erase_if_dead(gm, parent)


def canonicalise_flatten(gm: fx.GraphModule) -> list[str]:
    """Replace flatten-from-dim-1 idioms by calls of new nn.Flatten modules."""
    created = []
    for node in list(gm.graph.nodes):
        x = _flattened_input(node)
        if x is None:
            continue
        name = scoped_name(gm, node, "flatten")
        gm.add_submodule(name, nn.Flatten())
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(name, (x,))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        leftovers = [a for a in node.all_input_nodes if a is not x]
        gm.graph.erase_node(node)
        for leftover in leftovers:
            _erase_if_dead(gm, leftover)
        created.append(name)
    finish(gm)
    return created


# ---------------------------------------------------------------------------------------
# 4. shared modules
# ---------------------------------------------------------------------------------------
def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def split_shared_modules(gm: fx.GraphModule) -> dict[str, list[str]]:
    """Give every call site of a parameter-free module its own copy.

    The first site keeps the name; the others get ``<name>_1``, ``<name>_2``... (the
    3DDFA ``dw2_1.relu`` becomes ``dw2_1.relu`` and ``dw2_1.relu_1``). A module with
    parameters or buffers shared between sites is refused: copying it would untie the
    shared weights, and keeping it shared gives two sites one quantiser.
    """
    split = {}
    for target, sites in module_sites(gm).items():
        if len(sites) < 2:
            continue
        module = gm.get_submodule(target)
        if _has_state(module):
            raise ConfigError(
                f"module '{target}' ({type(module).__name__}) is called at {len(sites)} sites "
                f"({', '.join(n.name for n in sites)}) and has parameters or buffers; F2F "
                "cannot give each site its own quantiser without untying the shared weights: "
                "use one module per call site"
            )
        names = [target]
        for site in sites[1:]:
            name = unique_name(gm, target)
            gm.add_submodule(name, copy.deepcopy(module))
            site.target = name
            names.append(name)
        split[target] = names
    finish(gm)
    return split


# ---------------------------------------------------------------------------------------
# 5. bias -> BatchNorm
# ---------------------------------------------------------------------------------------
_LINEAR_OPS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _channels_on_dim1(node: fx.Node, module: nn.Module) -> bool:
    """A Linear's features are on dim 1 (where BN normalises) only for 2-D outputs."""
    if not isinstance(module, nn.Linear):
        return True
    meta = node.meta.get("tensor_meta")
    return meta is not None and len(meta.shape) == 2


def _bn_after(gm: fx.GraphModule, node: fx.Node) -> tuple[str, nn.Module] | None:
    """The BatchNorm that is the only reader of ``node``, if any."""
    if len(node.users) != 1:
        return None
    user = next(iter(node.users))
    if user.op != "call_module" or user.args[:1] != (node,):
        return None
    bn = gm.get_submodule(user.target)
    return (user.target, bn) if isinstance(bn, _BATCH_NORMS) else None


def fold_bias_into_bn(gm: fx.GraphModule) -> list[tuple[str, str]]:
    """Move the bias b of conv/linear -> BN into the BN: μ ← μ − b, bias removed.

    BN(y + b) = γ(y + b − μ)/σ + β = γ(y − (μ − b))/σ + β, so eval mode is exact. In
    training mode the batch mean absorbs b anyway, and the running mean keeps tracking
    μ − b consistently. Returns the (linear op, BN) name pairs folded.
    """
    folded = []
    sites = module_sites(gm)
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        module = gm.get_submodule(node.target)
        if not isinstance(module, _LINEAR_OPS) or module.bias is None:
            continue
        found = _bn_after(gm, node)
        if found is None or len(sites[node.target]) != 1 or not _channels_on_dim1(node, module):
            continue
        bn_name, bn = found
        if len(sites[bn_name]) != 1 or bn.num_features != module.bias.numel():
            continue
        with torch.no_grad():
            if bn.running_mean is not None:
                bn.running_mean -= module.bias.to(bn.running_mean.dtype)
        module.bias = None
        folded.append((node.target, bn_name))
    finish(gm)
    return folded


def canonicalise(gm: fx.GraphModule) -> dict[str, object]:
    """Run all canonicalisation passes in order; returns what each changed."""
    return {
        "inplace_removed": remove_inplace(gm),
        "modularised": modularise_activations(gm),
        "flattened": canonicalise_flatten(gm),
        "split": split_shared_modules(gm),
        "folded_biases": fold_bias_into_bn(gm),
    }
