"""Tracing a float model with torch.fx, and the graph utilities every F2F pass shares.

The tracer treats edgeq's fake-quantised modules and any user-named modules as leaves.
When torch.fx cannot trace a model (data-dependent control flow, non-torch calls on
tensors...) we raise a :class:`~edgeq.errors.ConfigError` that says which module and
which source line failed, and how to get around it.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Collection, Iterable

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from edgeq.errors import ConfigError

_TORCH_DIR = os.path.dirname(torch.__file__)


def _quant_module_types() -> tuple[type, ...]:
    # Imported lazily: canonicalisation must work without the quantiser package loaded.
    try:
        from edgeq.train.modules import QuantModule
    except ImportError:  # pragma: no cover - modules.py is part of the package
        return ()
    return (QuantModule,)


class F2FTracer(fx.Tracer):
    """fx tracer with extra leaves, which remembers where a failed trace was."""

    def __init__(self, leaf_types: tuple[type, ...] = (), leaf_names: Iterable[str] = ()):
        super().__init__()
        self.leaf_types = leaf_types + _quant_module_types()
        self.leaf_names = frozenset(leaf_names)
        self._path: list[str] = []
        self.failed_in: tuple[str, str] | None = None  # (qualified name, type) of the culprit

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, self.leaf_types) or module_qualified_name in self.leaf_names:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m, forward, args, kwargs):
        self._path.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            # The innermost module records itself first; outer ones must not overwrite it.
            if self.failed_in is None:
                self.failed_in = (self._path[-1], type(m).__name__)
            raise
        finally:
            self._path.pop()


def _user_frame(exc: BaseException) -> str:
    """'file:line in func: code' of the last traceback frame outside torch."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(_TORCH_DIR) and f.filename != __file__]
    if not frames:
        return "unknown location"
    f = frames[-1]
    return f"{f.filename}:{f.lineno} in {f.name}: `{(f.line or '').strip()}`"


def trace(
    model: nn.Module, leaf_modules: Iterable[str | type] = ()
) -> fx.GraphModule:
    """Symbolically trace ``model``; ``leaf_modules`` are types or qualified names kept opaque.

    The returned GraphModule shares its leaf modules with ``model`` (fx does not copy them).
    """
    leaf_modules = tuple(leaf_modules)
    names = [x for x in leaf_modules if isinstance(x, str)]
    types = tuple(x for x in leaf_modules if isinstance(x, type))
    tracer = F2FTracer(types, names)
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # any failure inside user code during tracing
        raise ConfigError(_trace_failure_message(model, tracer, exc)) from exc
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def _trace_failure_message(model: nn.Module, tracer: F2FTracer, exc: BaseException) -> str:
    where = "the top-level forward"
    hint = "rewrite that code without data-dependent control flow or non-torch calls on tensors"
    if tracer.failed_in is not None:
        name, type_name = tracer.failed_in
        where = f"module '{name}' ({type_name})"
        hint = (f"mark it as a leaf module (f2f(..., leaf_modules=['{name}']) keeps it opaque; "
                f"then list it in the policy's allow_float) or {hint}")
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"torch.fx cannot trace {type(model).__name__}: {where} failed at {_user_frame(exc)}: "
            f"{type(exc).__name__}: {first_line}; {hint}")


# --------------------------------------------------------------------------------------
# shared graph helpers
# --------------------------------------------------------------------------------------
def propagate_shapes(gm: fx.GraphModule, example_input: torch.Tensor | tuple) -> None:
    """Fill ``node.meta['tensor_meta']`` by running ``example_input`` through ``gm``.

    Runs in eval mode under no_grad, so BatchNorm running statistics and observers are not
    touched; every module's training flag is restored afterwards.
    """
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    modes = {m: m.training for m in gm.modules()}
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*inputs)
    finally:
        for m, mode in modes.items():
            m.training = mode


def is_tensor(node: object) -> bool:
    """True for a graph node known (from shape propagation) to produce a tensor."""
    return isinstance(node, fx.Node) and "tensor_meta" in node.meta and isinstance(
        node.meta["tensor_meta"], torch.fx.passes.shape_prop.TensorMetadata
    )


def is_float_tensor(node: object) -> bool:
    """A tensor of floats: the only kind a quantiser may touch (not index arithmetic)."""
    return is_tensor(node) and node.meta["tensor_meta"].dtype.is_floating_point


def scope_of(node: fx.Node) -> str:
    """Qualified name of the innermost module whose forward produced ``node`` ('' at top)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    qualname = list(stack.values())[-1]
    return qualname[0] if isinstance(qualname, tuple) else str(qualname)


def has_attr_path(root: nn.Module, qualname: str) -> bool:
    obj: object = root
    for part in qualname.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def unique_name(root: nn.Module, base: str, taken: Collection[str] = ()) -> str:
    """``base``, or ``base_1``, ``base_2``... — the first that names no attribute of root
    and is not in ``taken`` (names reserved but not registered yet)."""

    def free(name: str) -> bool:
        return name not in taken and not has_attr_path(root, name)

    if free(base):
        return base
    k = 1
    while not free(f"{base}_{k}"):
        k += 1
    return f"{base}_{k}"


def scoped_name(
    root: nn.Module, node: fx.Node, leaf: str, taken: Collection[str] = ()
) -> str:
    """A fresh qualified name ``<scope>.<leaf>`` for a module created for ``node``."""
    scope = scope_of(node)
    return unique_name(root, f"{scope}.{leaf}" if scope else leaf, taken)


def set_module(root: nn.Module, qualname: str, module: nn.Module) -> None:
    """Replace (or create) the submodule at ``qualname``."""
    parent_name, _, leaf = qualname.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, module)


def module_sites(gm: fx.GraphModule) -> dict[str, list[fx.Node]]:
    """Call sites of every called module, in execution order."""
    sites: dict[str, list[fx.Node]] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            sites.setdefault(node.target, []).append(node)
    return sites


def finish(gm: fx.GraphModule) -> None:
    """Check and regenerate the code of a rewritten graph."""
    gm.graph.lint()
    gm.recompile()
