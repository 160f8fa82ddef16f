"""Runs an IR graph with the reference kernels, node by node in topological order."""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference.registry import KERNELS
from edgeq.engine.ir import Graph, Node
from edgeq.errors import EdgeqError, MissingInputError, ShapeError, UnsupportedOpError


def run_graph(graph: Graph, feeds: dict[str, np.ndarray], observe=None) -> dict[str, np.ndarray]:
    """Evaluate ``graph`` on ``feeds`` (graph input name -> array); return its outputs.

    Intermediate arrays are released once their last consumer has run. Integer outputs
    of annotated values are stored in their value's (narrowest) dtype. ``observe``, if
    given, is called as ``observe(name, array)`` for every node output.
    """
    env: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        if name not in feeds:
            raise MissingInputError(f"graph '{graph.name}': input '{name}' was not supplied")
        env[name] = feeds[name]
    for v in graph.constants():
        env[v.name] = v.data
    last_use = _last_uses(graph)
    for i, node in enumerate(graph.nodes):
        results = _run_node(graph, node, [env[n] if n else None for n in node.inputs])
        for name, arr in zip(node.outputs, results, strict=False):
            if name:
                env[name] = _store(graph, name, arr)
                if observe is not None:
                    observe(name, env[name])
        for name in last_use.get(i, ()):
            env.pop(name, None)
    return {name: env[name] for name in graph.outputs}


def _run_node(graph: Graph, node: Node, args: list) -> tuple:
    entry = KERNELS.get(node.op)
    if entry is None:
        raise UnsupportedOpError(node.op, node.name, graph.opset)
    while args and args[-1] is None:  # trailing omitted optional inputs
        args.pop()
    if node.attrs.get("layout") == "NHWC":  # a node of the layout pass: NCHW kernel inside
        from edgeq.engine.passes.layout import run_nhwc

        return run_nhwc(graph, node, args, lambda a, attrs: _call(graph, node, entry, a, attrs))
    return _call(graph, node, entry, args, node.attrs)


def _call(graph: Graph, node: Node, entry, args: list, attrs: dict) -> tuple:
    kwargs = dict(attrs)
    if entry.opset_aware:
        kwargs["opset"] = graph.opset
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = entry.fn(*args, **kwargs)
    except EdgeqError as exc:
        raise type(exc)(f"node '{node.name}' ({node.op}): {exc}") from None
    except (ValueError, IndexError, TypeError) as exc:
        shapes = ", ".join("∅" if a is None else str(np.shape(a)) for a in args)
        raise ShapeError(f"node '{node.name}' ({node.op}) on inputs {shapes}: {exc}") from None
    return out if isinstance(out, tuple) else (out,)


def _store(graph: Graph, name: str, arr: np.ndarray) -> np.ndarray:
    v = graph.values.get(name)
    if v is not None and v.quant is not None and v.dtype is not None and arr.dtype != v.dtype:
        return arr.astype(v.dtype)
    return arr


def _last_uses(graph: Graph) -> dict[int, list[str]]:
    keep = set(graph.outputs) | {v.name for v in graph.constants()}
    last: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            if name:
                last[name] = i
    by_node: dict[int, list[str]] = {}
    for name, i in last.items():
        if name not in keep:
            by_node.setdefault(i, []).append(name)
    return by_node
