"""Which nodes of a float graph PTQ quantises, and how (the *plan*).

- **linear layers**: Conv, Gemm (alpha = beta = 1, no transA) and MatMul with a constant
  weight (and constant bias); a Relu that is the only reader of the output is fused.
- **add layers**: Add of two computed tensors, lowered to a HarmonisedAdd (Relu fused too).
- **pool layers**: GlobalAveragePool (static spatial size), lowered to an exact integer
  ReduceSum and a RequantShift by 1/count (a pure shift when count is a power of two).
- **pass-through ops** keep their input's quantisation: max pooling and shape ops, and a
  standalone Relu (exact on integers).
- **shape computations** (Shape, and any node reading only shapes and constants, e.g.
  the Gather/Unsqueeze/Concat of ``x.view(x.size(0), -1)``) run unchanged on int64 shapes;
- every other op is refused, naming the node, unless its op type is in ``keep_float``:
  then it and everything computed from it stay in float (the float tail), and the
  integer tensors it reads are dequantised (Cast, Mul by ε: exact, ε is a power of two).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.engine.ir import Graph, Node
from edgeq.errors import UnsupportedOpError

LINEAR_OPS = ("Conv", "Gemm", "MatMul")
PASS_THROUGH = frozenset({
    "MaxPool", "GlobalMaxPool", "Flatten", "Reshape", "Identity", "Transpose", "Squeeze",
    "Unsqueeze", "Relu", "Dropout",
})


@dataclass(frozen=True)
class Layer:
    """A quantised layer: ``node`` (and a fused ``relu``) writing ``output``."""

    name: str
    kind: str  # "linear", "add" or "pool"
    node: Node
    relu: Node | None
    output: str

    @property
    def weight(self) -> str | None:
        return self.node.inputs[1] if self.kind == "linear" else None

    @property
    def bias(self) -> str | None:
        if self.kind == "linear" and len(self.node.inputs) > 2 and self.node.inputs[2]:
            return self.node.inputs[2]
        return None

    @property
    def channel_axis(self) -> int:
        """The output-channel axis of the weight: M of Conv [M, C, k…], N of B [K, N]."""
        if self.node.op == "Conv":
            return 0
        return 0 if self.node.attrs.get("transB", 0) else 1


@dataclass(frozen=True)
class Plan:
    layers: tuple[Layer, ...]
    float_nodes: frozenset[str]  # node names kept in float (keep_float and downstream)
    index_nodes: frozenset[str] = frozenset()  # shape computations, run unchanged

    def layer(self, name: str) -> Layer:
        return next(x for x in self.layers if x.name == name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(x.name for x in self.layers)


def fold_constant_identities(graph: Graph) -> Graph:
    """A copy without the ``Identity`` nodes that only forward a constant (the PyTorch
    exporter writes them for shared or renamed weights): their outputs become constants."""
    if not any(n.op == "Identity" and graph.values[n.inputs[0]].is_const for n in graph.nodes):
        return graph
    g = graph.copy()
    keep = []
    for node in g.nodes:
        src = g.values[node.inputs[0]] if node.op == "Identity" else None
        if src is not None and src.is_const and node.outputs[0] not in g.outputs:
            out = g.values[node.outputs[0]]
            out.data, out.shape, out.dtype = src.data, src.shape, src.dtype
        else:
            keep.append(node)
    g.nodes = keep
    g.remove_unused()
    return g


def make_plan(graph: Graph, keep_float: tuple[str, ...] = ()) -> Plan:
    float_values: set[str] = set()
    float_nodes: set[str] = set()
    index_values: set[str] = set()
    index_nodes: set[str] = set()
    fused: set[str] = set()
    layers = []
    for node in graph.nodes:
        if node.name in fused:
            continue
        computed = [i for i in node.inputs if i and not graph.values[i].is_const]
        if node.op == "Shape" or (node.op != "Identity" and all(i in index_values
                                                                  for i in computed)):
            index_nodes.add(node.name)
            index_values.update(o for o in node.outputs if o)
            continue
        if node.op in keep_float or any(i in float_values for i in computed):
            float_nodes.add(node.name)
            float_values.update(o for o in node.outputs if o)
            continue
        kind = _kind(graph, node, computed)
        if kind is None:
            raise UnsupportedOpError(
                node.op, node.name, None,
                f"PTQ cannot quantise it; pass --keep-float {node.op} to leave it in float",
            )
        if kind == "pass":
            continue
        relu = _fusable_relu(graph, node)
        if relu is not None:
            fused.add(relu.name)
        out = (relu or node).outputs[0]
        layers.append(Layer(node.name, kind, node, relu, out))
    return Plan(tuple(layers), frozenset(float_nodes), frozenset(index_nodes))


def _kind(graph: Graph, node: Node, computed: list[str]) -> str | None:
    if node.op in LINEAR_OPS and _is_linear(graph, node):
        return "linear"
    if node.op == "Add" and len(computed) == 2 and len(node.inputs) == 2:
        return "add"
    if node.op == "GlobalAveragePool" and pool_count(graph, node) is not None:
        return "pool"
    if node.op in PASS_THROUGH and len([o for o in node.outputs if o]) == 1:
        return "pass"
    return None


def _is_linear(graph: Graph, node: Node) -> bool:
    consts = [graph.values[i].is_const if i else True for i in node.inputs[1:]]
    if len(node.inputs) < 2 or not all(consts) or graph.values[node.inputs[0]].is_const:
        return False
    a = node.attrs
    if node.op == "Gemm":
        return a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0 and not a.get("transA")
    if node.op == "MatMul":
        return graph.values[node.inputs[1]].data.ndim == 2
    return True


def pool_count(graph: Graph, node: Node) -> int | None:
    """Elements averaged by a GlobalAveragePool (None unless its input shape is static)."""
    shape = graph.values[node.inputs[0]].shape
    if shape is None or len(shape) < 3 or not all(isinstance(d, int) for d in shape[2:]):
        return None
    n = 1
    for d in shape[2:]:
        n *= d
    return n


def _fusable_relu(graph: Graph, node: Node) -> Node | None:
    out = node.outputs[0]
    readers = graph.consumers(out)
    if len(readers) == 1 and readers[0].op == "Relu" and out not in graph.outputs:
        return readers[0]
    return None
