"""Running graph passes: each pass is ``fn(graph) -> graph``; the validator runs after each.

A pass is a small pattern -> replacement rewrite, testable alone. ``run_passes`` names
the pass that left the graph inconsistent, so a broken rewrite is caught where it happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from edgeq.engine.ir import Graph
from edgeq.errors import ValidationError

GraphPass = Callable[[Graph], Graph]


def run_passes(graph: Graph, passes: Iterable[GraphPass], known_ops=None) -> Graph:
    """Apply ``passes`` in order, validating the graph after every one."""
    for p in passes:
        graph = p(graph)
        try:
            graph.validate(known_ops)
        except ValidationError as exc:
            raise ValidationError(f"after pass {p.__name__}: {exc}") from exc
    return graph


def single_consumer(graph: Graph, value: str) -> bool:
    """True when exactly one node reads ``value`` and it is not a graph output."""
    return value not in graph.outputs and len(graph.consumers(value)) == 1
