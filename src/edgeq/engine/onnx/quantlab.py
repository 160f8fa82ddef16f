"""The QuantLab/DORY integer dialect (DESIGN §4), as passes over a freshly read graph.

QuantLab exports integer networks with integers carried in float tensors and a few
non-standard node attributes. The passes below, run in order by :func:`import_quantlab`,
turn such a graph into an exact integer IR graph:

1. :func:`integerise_constants`  every float constant must hold integers -> int64;
2. :func:`annotate_inputs`       graph inputs get an IntRange (default unsigned 8 bit);
3. :func:`integer_average_pools` ``AveragePool -> Mul(c)`` with k | c -> exact sum, ``Mul(c/k)``;
   :func:`fuse_requant`          ``[Mul]->[Add]->Div(2^d)->[Floor]->[Clip]`` -> RequantShift;
4. :func:`fuse_harmonised_adds`  ``Add`` with ``in1_*/in2_*/out_*`` attrs -> HarmonisedAdd;
5. :func:`annotate_precision`    ``weight_bits``/``bias_bits`` and requant output ranges;
6. :func:`drop_dialect_attrs`    remove the annotations standard kernels do not take.
"""

from __future__ import annotations

import numpy as np

from edgeq.engine.ir import EDGEQ_DOMAIN, Graph, Node, QuantInfo, Value
from edgeq.engine.passes.base import run_passes, single_consumer
from edgeq.errors import IntegralityError, RangeError, UnsupportedOpError
from edgeq.numerics import IntRange, narrowest_dtype, to_integers

LINEAR_OPS = ("Conv", "Gemm", "MatMul")
ADDER_KEYS = ("mul", "add", "shift", "n_levels", "rq")
DIALECT_ATTRS = ("weight_bits", "bias_bits", "out_bits", "mult_bits", "add_bits")
RANGE_PRESERVING = ("MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
                    "Identity", "Pad")
NO_CLIP = 2**62


def is_quantlab(graph: Graph) -> bool:
    """True when any node carries a QuantLab/DORY annotation."""
    marks = set(DIALECT_ATTRS) | {"in1_mul", "out_n_levels"}
    return any(marks & set(n.attrs) for n in graph.nodes)


def import_quantlab(graph: Graph, input_range: IntRange | None = None) -> Graph:
    """Run the dialect passes (module docstring) with validation after each."""
    rng = input_range or IntRange.from_bits(8, signed=False)

    def annotate_inputs_(g: Graph) -> Graph:
        return annotate_inputs(g, rng)

    annotate_inputs_.__name__ = "annotate_inputs"
    passes = [integerise_constants, annotate_inputs_, integer_average_pools, fuse_requant,
              fuse_harmonised_adds, annotate_precision, drop_dialect_attrs]
    graph = run_passes(graph, passes)
    graph.meta["dialect"] = "quantlab"
    return graph


# -- 1. constants -------------------------------------------------------------------------
def integerise_constants(graph: Graph) -> Graph:
    """Float constants (and opset-10 Clip bounds) must be integral; store them as int64."""
    src = graph.meta.get("source", graph.name)
    for v in graph.constants():
        if np.issubdtype(v.data.dtype, np.floating):
            v.data = to_integers(v.data, f"{src}: constant '{v.name}'")
            v.dtype = v.data.dtype
    for node in graph.nodes:
        if node.op == "Clip":
            for key in ("min", "max"):
                if key in node.attrs:
                    what = f"{src}: node '{node.name}' attribute '{key}'"
                    node.attrs[key] = int(to_integers(np.asarray(node.attrs[key]), what))
    return graph


# -- 2. inputs ------------------------------------------------------------------------------
def annotate_inputs(graph: Graph, rng: IntRange) -> Graph:
    """Integer graphs take integer inputs: give each float input the range ``rng``."""
    for name in graph.inputs:
        v = graph.values[name]
        if v.dtype is None or np.issubdtype(v.dtype, np.floating):
            v.quant = QuantInfo(rng)
            v.dtype = rng.dtype
    return graph


# -- 3a. average pooling -----------------------------------------------------------------
def integer_average_pools(graph: Graph) -> Graph:
    """``AveragePool -> Mul(c)`` on integers becomes ``sum -> Mul(c/k)``, exactly.

    The mean of k integers is not an integer; QuantLab/DORY make ``mean * c`` one by
    aligning c to a multiple of the window size k (DORY's AlignAvgPoolPass). The sum is
    a depthwise ``Conv`` with all-ones weights (``ReduceSum`` for the global pool).
    Any other integer average pool is refused, naming the node.
    """
    for node in [n for n in graph.nodes if n.op in ("AveragePool", "GlobalAveragePool")]:
        k, sum_node, extra = _sum_pool(graph, node)
        users = graph.consumers(node.outputs[0])
        mul = users[0] if len(users) == 1 and users[0].op == "Mul" else None
        found = _other_const(graph, mul) if mul is not None else None
        if found is None or np.any(found[1] % k):
            raise UnsupportedOpError(
                node.op, node.name, graph.opset,
                f"an integer average over {k} elements must feed a Mul by a multiple of {k}")
        const = next(i for i in mul.inputs if i != node.outputs[0])
        graph.values[const] = _int_const(const, found[1] // k)
        graph.values.update(extra)
        graph.nodes[graph.nodes.index(node)] = sum_node
    return graph


def _sum_pool(graph: Graph, node: Node) -> tuple[int, Node, dict]:
    shape = graph.values[node.inputs[0]].shape
    if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise UnsupportedOpError(node.op, node.name, graph.opset,
                                 "integer average pooling needs a static NCHW input shape")
    if node.op == "GlobalAveragePool":
        attrs = {"axes": [2, 3], "keepdims": 1}
        return shape[2] * shape[3], Node("ReduceSum", node.name, node.inputs, node.outputs,
                                         attrs), {}
    a = node.attrs
    kh, kw = a["kernel_shape"]
    if a.get("ceil_mode", 0) or (any(a.get("pads", [0])) and not a.get("count_include_pad", 0)):
        raise UnsupportedOpError(node.op, node.name, graph.opset,
                                 "integer average pooling with a varying divisor")
    c = shape[1]
    w_name = graph.fresh_name(f"{node.name}.ones")
    ones = np.ones((c, 1, kh, kw), dtype=np.int8)
    conv_attrs = {"group": c, "kernel_shape": [kh, kw]}
    conv_attrs.update({key: a[key] for key in ("strides", "pads", "auto_pad") if key in a})
    conv = Node("Conv", node.name, [node.inputs[0], w_name], node.outputs, conv_attrs)
    return kh * kw, conv, {w_name: Value(w_name, ones.shape, ones.dtype, None, ones)}


# -- 3. requantisation chains --------------------------------------------------------------
def fuse_requant(graph: Graph) -> Graph:
    """Rewrite every ``[Mul(c)] -> [Add(c)] -> Div(2^d) -> [Floor] -> [Clip]`` chain."""
    for div in [n for n in graph.nodes if n.op == "Div"]:
        d = _pow2_exponent(graph, div)
        if d is None or div not in graph.nodes:
            continue
        tail = _chain_after(graph, div)
        if not tail:
            continue  # a Div with neither Floor nor Clip after it keeps ONNX semantics
        head, x, mul, add = _chain_before(graph, div)
        _replace_chain(graph, head + [div] + tail, x, mul, add, d)
    return graph


def _pow2_exponent(graph: Graph, div: Node) -> int | None:
    c = graph.const(div.inputs[1]) if len(div.inputs) > 1 else None
    if c is None or c.size != 1:
        return None
    v = int(np.ravel(c)[0])
    if v < 1 or v & (v - 1):
        return None
    return v.bit_length() - 1


def _other_const(graph: Graph, node: Node) -> tuple[str, np.ndarray] | None:
    """(variable input, constant) of a binary node with exactly one constant operand."""
    a, b = node.inputs[0], node.inputs[1]
    ca, cb = graph.const(a), graph.const(b)
    if cb is not None and ca is None:
        return a, cb
    if ca is not None and cb is None:
        return b, ca
    return None


def _chain_before(graph: Graph, div: Node):
    """Walk back from Div over an optional Add(c) and an optional Mul(c)."""
    x, head = div.inputs[0], []
    mul, add = np.int64(1), np.int64(0)
    for op in ("Add", "Mul"):
        p = graph.producer(x)
        if p is None or p.op != op or not single_consumer(graph, x) or set(p.attrs) - {
            "mult_bits", "add_bits"
        }:
            continue
        found = _other_const(graph, p)
        if found is None:
            continue
        x, c = found
        head.insert(0, p)
        if op == "Add":
            add = c
        else:
            mul = c
    return head, x, mul, add


def _chain_after(graph: Graph, div: Node) -> list[Node]:
    tail, cur = [], div.outputs[0]
    for op in ("Floor", "Clip"):
        users = graph.consumers(cur)
        if len(users) == 1 and users[0].op == op and single_consumer(graph, cur):
            tail.append(users[0])
            cur = users[0].outputs[0]
    return tail


def _clip_bounds(graph: Graph, clip: Node) -> tuple[int, int]:
    lo = clip.attrs.get("min")
    hi = clip.attrs.get("max")
    if len(clip.inputs) > 1 and clip.inputs[1]:
        lo = int(np.ravel(graph.const(clip.inputs[1]))[0])
    if len(clip.inputs) > 2 and clip.inputs[2]:
        hi = int(np.ravel(graph.const(clip.inputs[2]))[0])
    return (-NO_CLIP if lo is None else int(lo)), (NO_CLIP if hi is None else int(hi))


def _replace_chain(graph: Graph, chain: list[Node], x: str, mul, add, d: int) -> None:
    last = chain[-1]
    lo, hi = (-NO_CLIP, NO_CLIP)
    if last.op == "Clip":
        lo, hi = _clip_bounds(graph, last)
    base = chain[0].name
    mul_name = graph.fresh_name(f"{base}.rq_mul")
    graph.values[mul_name] = _int_const(mul_name, mul)
    add_name = graph.fresh_name(f"{base}.rq_add")
    graph.values[add_name] = _int_const(add_name, add)
    attrs = {"shift": d, "lo": lo, "hi": hi}
    node = Node("RequantShift", graph.fresh_name(f"{base}_rqs"), [x, mul_name, add_name],
                [last.outputs[0]], attrs, EDGEQ_DOMAIN)
    at = graph.nodes.index(chain[0])
    graph.nodes = [n for n in graph.nodes if n not in chain]
    graph.nodes.insert(at, node)
    graph.remove_unused()


def _int_const(name: str, data) -> Value:
    data = np.asarray(data, dtype=np.int64)
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    data = data.astype(narrowest_dtype(lo, hi))
    return Value(name, tuple(data.shape), data.dtype, None, data)


# -- 4. harmonised adders ------------------------------------------------------------------
def fuse_harmonised_adds(graph: Graph) -> Graph:
    """``Add`` nodes carrying ``in1_*``/``in2_*``/``out_*`` become HarmonisedAdd."""
    for i, node in enumerate(graph.nodes):
        if node.op != "Add" or "out_n_levels" not in node.attrs:
            continue
        graph.nodes[i] = _adder(node)
    return graph


def _adder(node: Node) -> Node:
    a = node.attrs
    missing = [f"{p}_{k}" for p in ("in1", "in2", "out") for k in ADDER_KEYS if f"{p}_{k}" not in a]
    if missing:
        raise UnsupportedOpError("Add", node.name, None, f"adder attributes missing: {missing}")
    rng = IntRange.from_levels(int(a["out_n_levels"]), bool(a.get("out_signed", 0)))
    attrs = {
        "in_mul": [int(a["in1_mul"]), int(a["in2_mul"])],
        "in_add": [int(a["in1_add"]), int(a["in2_add"])],
        "in_shift": [int(a["in1_shift"]), int(a["in2_shift"])],
        "in_rq": [int(a["in1_rq"]), int(a["in2_rq"])],
        "out_mul": int(a["out_mul"]),
        "out_add": int(a["out_add"]),
        "out_shift": int(a["out_shift"]),
        "out_rq": int(a["out_rq"]),
        "lo": rng.lo,
        "hi": rng.hi,
    }
    return Node("HarmonisedAdd", node.name, list(node.inputs), list(node.outputs), attrs,
                EDGEQ_DOMAIN)


# -- 5. precision --------------------------------------------------------------------------
def annotate_precision(graph: Graph) -> Graph:
    """Weight/bias ranges from ``weight_bits``/``bias_bits``; output ranges of integer ops."""
    for node in graph.nodes:
        if node.op in LINEAR_OPS:
            _annotate_param(graph, node, 1, node.attrs.get("weight_bits"), "weight_bits")
            if len(node.inputs) > 2 and node.inputs[2]:
                _annotate_param(graph, node, 2, node.attrs.get("bias_bits"), "bias_bits")
        elif node.op in ("RequantShift", "HarmonisedAdd"):
            lo, hi = node.attrs["lo"], node.attrs["hi"]
            if hi < NO_CLIP and lo > -NO_CLIP:
                _set_range(graph.values[node.outputs[0]], IntRange.from_bounds(lo, hi))
        elif node.op in RANGE_PRESERVING:
            q = graph.values[node.inputs[0]].quant
            if q is not None and q.eps is None:
                _set_range(graph.values[node.outputs[0]], q.range)
    return graph


def _set_range(v: Value, rng: IntRange) -> None:
    v.quant = QuantInfo(rng)
    v.dtype = rng.dtype


def _annotate_param(graph: Graph, node: Node, idx: int, bits, key: str) -> None:
    v = graph.values[node.inputs[idx]]
    if not v.is_const:
        return
    if bits is None:
        v.data = v.data.astype(narrowest_dtype(int(v.data.min()), int(v.data.max())))
        v.dtype = v.data.dtype
        return
    try:
        rng = IntRange.from_bits(int(bits), signed=True)
    except RangeError as exc:
        raise RangeError(f"node '{node.name}': {key}={bits}: {exc}") from None
    if not rng.contains(v.data):
        raise IntegralityError(
            f"node '{node.name}': '{v.name}' holds values in "
            f"[{int(v.data.min())}, {int(v.data.max())}], outside {key}={bits} range {rng}"
        )
    v.data = v.data.astype(rng.dtype)
    _set_range(v, rng)


# -- 6. clean-up ----------------------------------------------------------------------------
def drop_dialect_attrs(graph: Graph) -> Graph:
    """Annotations are now in the IR; keep them in ``node.attrs`` only for IR ops."""
    for node in graph.nodes:
        if node.domain == EDGEQ_DOMAIN:
            continue
        dialect = {k: node.attrs.pop(k) for k in DIALECT_ATTRS if k in node.attrs}
        if dialect:
            graph.meta.setdefault("dialect_attrs", {})[node.name] = dialect
    return graph
