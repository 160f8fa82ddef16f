"""Per-node backend dispatch (DESIGN §7): a rule list, an assignment, and the segments.

- :class:`BackendSpec` parses ``"default=c,Conv=reference,conv1=c"``: ordered rules whose
  key is an op type or a node name; the first matching rule wins, ``default`` matches
  every node and always comes last.
- :func:`assign` gives every node a backend. A node matched by an explicit rule must be
  supported by that backend (else BackendError naming the node); a node only the
  default rule matches falls back, in the order of ``supports``, to the first backend
  that can run it.
- :func:`partition` cuts the graph into maximal runs of consecutive nodes with one
  backend, each a standalone valid :class:`~edgeq.engine.ir.Graph` whose inputs and
  outputs are the values crossing its boundary, to be run in order.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edgeq.engine.ir import Graph, Node
from edgeq.errors import BackendError, ConfigError

DEFAULT = "default"
_NAME = re.compile(r"^[A-Za-z0-9_.:/\-]+$")

Supports = Mapping[str, Callable[[Graph, Node], bool]]


@dataclass(frozen=True)
class BackendSpec:
    """Ordered ``(key, backend)`` rules; ``key`` is an op type, a node name or ``default``."""

    rules: tuple[tuple[str, str], ...] = ((DEFAULT, "reference"),)

    def __post_init__(self) -> None:
        keys = [k for k, _ in self.rules]
        for key, backend in self.rules:
            for what, v in (("key", key), ("backend", backend)):
                if not isinstance(v, str) or not _NAME.match(v):
                    raise ConfigError(f"backend spec: invalid {what} {v!r} in rule {key}={backend}")
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ConfigError(f"backend spec: key '{dup[0]}' has more than one rule")
        if DEFAULT in keys and keys[-1] != DEFAULT:
            raise ConfigError("backend spec: the 'default' rule must come last")

    @classmethod
    def parse(cls, text: str) -> BackendSpec:
        """``"key=backend,key=backend,..."``; a lone ``"c"`` means ``default=c``."""
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("backend spec: empty; expected e.g. 'default=c,Conv=reference'")
        rules, default = [], None
        for part in text.split(","):
            part = part.strip()
            if "=" not in part:
                if len(text.split(",")) == 1 and _NAME.match(part):
                    return cls(((DEFAULT, part),))
                raise ConfigError(
                    f"backend spec {text!r}: rule {part!r} is not KEY=BACKEND (e.g. Conv=c)")
            key, _, backend = (s.strip() for s in part.partition("="))
            if not key or not backend:
                raise ConfigError(f"backend spec {text!r}: rule {part!r} has an empty side")
            if key == DEFAULT:
                if default is not None:
                    raise ConfigError(f"backend spec {text!r}: 'default' given twice")
                default = backend
            else:
                rules.append((key, backend))
        if default is not None:
            rules.append((DEFAULT, default))
        return cls(tuple(rules))

    def __str__(self) -> str:
        return ",".join(f"{k}={b}" for k, b in self.rules)

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(b for _, b in self.rules))

    def match(self, node: Node) -> tuple[str, str] | None:
        """The first rule naming this node or its op type, else the default (or None)."""
        for key, backend in self.rules:
            if key in (node.name, node.op) or key == DEFAULT:
                return key, backend
        return None

    def to_json(self) -> dict:
        return {"rules": [list(r) for r in self.rules]}

    @classmethod
    def from_json(cls, data: dict) -> BackendSpec:
        try:
            return cls(tuple((str(k), str(b)) for k, b in data["rules"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"backend spec JSON: expected {{'rules': [[key, backend], ...]}}"
                              f" ({exc})") from None


def assign(graph: Graph, spec: BackendSpec, supports: Supports) -> dict[str, str]:
    """Node name -> backend (module docstring for the rules)."""
    unknown = [b for b in spec.backends if b not in supports]
    if unknown:
        raise BackendError(
            f"backend spec '{spec}': unknown backend '{unknown[0]}' "
            f"(available: {', '.join(supports)})")
    out = {}
    for node in graph.nodes:
        rule = spec.match(node)
        if rule is not None and rule[0] != DEFAULT:
            key, backend = rule
            if not supports[backend](graph, node):
                raise BackendError(
                    f"node '{node.name}' ({node.op}): rule {key}={backend} cannot be honoured, "
                    f"backend '{backend}' does not support this node")
            out[node.name] = backend
            continue
        order = ([rule[1]] if rule else []) + [b for b in supports if not rule or b != rule[1]]
        able = [b for b in order if supports[b](graph, node)]
        if not able:
            raise BackendError(
                f"node '{node.name}' ({node.op}): no backend supports it "
                f"(tried {', '.join(order)})")
        out[node.name] = able[0]
    return out


@dataclass(frozen=True)
class Segment:
    """A run of consecutive nodes with one backend, as a standalone graph."""

    backend: str
    graph: Graph


def partition(graph: Graph, assignment: Mapping[str, str]) -> list[Segment]:
    """Maximal runs of consecutive nodes with one backend (module docstring)."""
    missing = [n.name for n in graph.nodes if n.name not in assignment]
    if missing:
        raise BackendError(f"node '{missing[0]}' has no backend assigned")
    runs: list[list[Node]] = []
    for node in graph.nodes:
        if runs and assignment[runs[-1][-1].name] == assignment[node.name]:
            runs[-1].append(node)
        else:
            runs.append([node])
    later_reads = _reads_after(graph, runs)
    segments = []
    for i, run in enumerate(runs):
        backend = assignment[run[0].name]
        segments.append(Segment(backend, _segment_graph(graph, run, i, later_reads[i], backend)))
    return segments


def _reads_after(graph: Graph, runs: list[list[Node]]) -> list[set[str]]:
    """For each run: the values read by later runs, plus the graph outputs."""
    out, seen = [], set(graph.outputs)
    for run in reversed(runs):
        out.append(set(seen))
        for node in run:
            seen.update(n for n in node.inputs if n)
    return out[::-1]


def _segment_graph(graph: Graph, run: list[Node], index: int, needed: set[str],
                   backend: str) -> Graph:
    produced = [o for n in run for o in n.outputs if o]
    inputs: list[str] = []
    for node in run:
        for name in node.inputs:
            if name and name not in produced and name not in inputs and not graph.values[
                    name].is_const:
                inputs.append(name)
    outputs = [o for o in produced if o in needed]
    names = set(inputs) | set(produced) | {i for n in run for i in n.inputs if i}
    values = {k: copy.copy(graph.values[k]) for k in graph.values if k in names}
    meta = dict(graph.meta)
    if isinstance(meta.get("bounds"), dict):
        meta["bounds"] = {n.name: meta["bounds"][n.name] for n in run if n.name in meta["bounds"]}
    g = Graph([copy.copy(n) for n in run], values, inputs, outputs,
              name=f"{graph.name}.{index}.{backend}", opset=graph.opset, meta=meta)
    g.validate()
    return g
