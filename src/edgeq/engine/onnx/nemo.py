"""NEMO integer ("id" stage) ONNX -> exact integer IR.

NEMO (pulp-platform/nemo) exports its integer-deployable network with integers carried
in float tensors and no annotations. The patterns, as in the DORY examples
(``shared/fixtures/nemo``):

- requantisation ``[Mul(κ)] -> [Add(λ)] -> Cast(int64) -> Mul(m) -> Div(D) -> Cast... ->
  Clip(lo, hi)``: BN is ``κ·acc + λ``, then ``⌊…·m / D⌋`` (integer ``Div`` truncates);
- scaled residual adds ``Mul(x1, c1) + Mul(x2, c2) -> Div(D) -> Floor``;
- ``AveragePool`` inside such a chain (its 1/k folds into the divisor).

Passes, in order (:func:`import_nemo`), validated after each:

1. constants must be integral -> int64; the input gets an IntRange (unsigned 8 bit);
2. :func:`fuse_requant`: every ``Div`` by a positive integer constant, with the chain of
   ``Cast``/``Mul(c)``/``Add(c)``/``AveragePool`` before it and ``Cast``/``Floor``/``Clip``
   after it, becomes ``RequantShift`` (D = 2^d and floor, or trunc with lo ≥ 0, where
   trunc and floor agree after the clip) or else ``RequantDiv``; a ``Div`` whose result
   is not rounded raises, naming it;
3. :func:`fuse_scaled_adds`: ``Add(Mul(x1,c1), Mul(x2,c2)) -> RequantShift(1, 0)`` becomes
   ``HarmonisedAdd``;
4. :func:`drop_identities`: ``Cast`` and ``Floor`` on integer values are identities;
5. :func:`annotate_ranges`: output ranges of the integer ops, and unclipped requants get
   the (provably no-op) bounds their input ranges imply.
"""

from __future__ import annotations

import numpy as np

from edgeq.engine.ir import EDGEQ_DOMAIN, Graph, Node, QuantInfo
from edgeq.engine.onnx import quantlab
from edgeq.engine.passes.base import run_passes, single_consumer
from edgeq.errors import UnsupportedOpError
from edgeq.numerics import IntRange

INT_TYPES = {2, 3, 4, 5, 6, 7, 12, 13}  # TensorProto uint8..int64, uint32, uint64
FLOAT_TYPES = {1, 10, 11, 16}
NO_CLIP = quantlab.NO_CLIP
# Ops whose output is an integer when their inputs are.
INTEGER_OPS = {"Conv", "MatMul", "Gemm", "Add", "Sub", "Mul", "MaxPool", "Flatten",
               "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Pad", "Concat",
               "Gather", "Relu", "Clip", "Floor", "Cast", "Slice", "RequantShift",
               "RequantDiv", "HarmonisedAdd", "ReduceSum"}


def is_nemo(graph: Graph) -> bool:
    """A NEMO id graph: no QuantLab marks, every float constant integral, and a rounded
    division (``Div`` by a constant followed by ``Floor``/``Cast``, or an int64 ``Cast``
    feeding ``Mul``/``Div``)."""
    if quantlab.is_quantlab(graph):
        return False
    for v in graph.constants():
        d = v.data
        if np.issubdtype(d.dtype, np.floating) and not np.all(np.isfinite(d) & (d == np.round(d))):
            return False
    for node in graph.nodes:
        users = {u.op for u in graph.consumers(node.outputs[0])} if node.outputs else set()
        if node.op == "Cast" and node.attrs.get("to") == 7 and users & {"Mul", "Div"}:
            return True
        if node.op == "Div" and _divisor_or_none(graph, node) and users & {"Floor", "Cast"}:
            return True
    return False


def _divisor_or_none(graph: Graph, div: Node) -> bool:
    c = graph.const(div.inputs[1]) if len(div.inputs) > 1 else None
    return c is not None and c.size == 1 and graph.const(div.inputs[0]) is None


def import_nemo(graph: Graph, input_range: IntRange | None = None) -> Graph:
    """Run the NEMO passes (module docstring) with validation after each."""
    rng = input_range or IntRange.from_bits(8, signed=False)

    def annotate_inputs(g: Graph) -> Graph:
        return quantlab.annotate_inputs(g, rng)

    passes = [_record_float_values, quantlab.integerise_constants, annotate_inputs,
              fuse_requant, fuse_scaled_adds, drop_identities, annotate_ranges]
    graph = run_passes(graph, passes)
    graph.meta.pop("nemo_float_values", None)
    graph.meta["dialect"] = "nemo"
    return graph


def _record_float_values(graph: Graph) -> Graph:
    """Which node outputs the file computes in float (decides how a Div rounds)."""
    floats = set()
    for v in graph.values.values():
        if not v.is_const and v.dtype is not None and np.issubdtype(v.dtype, np.floating):
            floats.add(v.name)
    graph.meta["nemo_float_values"] = floats
    return graph


# -- requantisation chains -----------------------------------------------------------------
def fuse_requant(graph: Graph) -> Graph:
    """Every ``Div`` by a positive integer constant becomes one requantisation node."""
    for div in [n for n in graph.nodes if n.op == "Div"]:
        if div not in graph.nodes:
            continue
        d = _divisor(graph, div)
        if d is None:
            continue
        head, x, mul, add, d = _chain_before(graph, div, d)
        tail, rounding = _chain_after(graph, div)
        lo, hi = _clip_bounds(graph, tail)
        _replace(graph, head + [div] + tail, x, mul, add, d, rounding, lo, hi)
    return graph


def _divisor(graph: Graph, div: Node) -> int | None:
    c = graph.const(div.inputs[1]) if len(div.inputs) > 1 else None
    if c is None or c.size != 1 or graph.const(div.inputs[0]) is not None:
        return None
    v = int(np.ravel(c)[0])
    if v < 1:
        raise UnsupportedOpError("Div", div.name, graph.opset, f"divisor {v} is not positive")
    return v


def _chain_before(graph: Graph, div: Node, d: int):
    """Walk back over Cast / Mul(c) / Add(c) / AveragePool: value = x*mul + add (over d)."""
    x, head = div.inputs[0], []
    mul, add = np.int64(1), np.int64(0)
    while True:
        p = graph.producer(x)
        if p is None or not single_consumer(graph, x):
            break
        if p.op == "Cast":
            x = p.inputs[0]
        elif p.op in ("Mul", "Add") and quantlab._other_const(graph, p) is not None:
            x, c = quantlab._other_const(graph, p)
            c = np.asarray(c, dtype=np.int64)
            mul, add = (mul * c, add) if p.op == "Mul" else (mul, add + mul * c)
        elif p.op == "AveragePool":
            k, sum_node, extra = quantlab._sum_pool(graph, p)
            graph.values.update(extra)
            graph.nodes[graph.nodes.index(p)] = sum_node
            if np.all(mul % k == 0):  # NEMO's avg pool multiplies the mean by k first
                mul = mul // k
            else:  # mean*mul + add = (sum*mul + add*k) / k
                add, d = add * k, d * k
            break
        else:
            break
        head.insert(0, p)
    return head, x, mul, add, d


def _chain_after(graph: Graph, div: Node) -> tuple[list[Node], str]:
    """Casts and a Floor after the Div (how it rounds), then an optional Clip."""
    int_div = div.inputs[0] not in graph.meta.get("nemo_float_values", ())
    rounding = "trunc" if int_div else None
    tail, cur = [], div.outputs[0]
    while True:
        users = graph.consumers(cur)
        if len(users) != 1 or not single_consumer(graph, cur):
            break
        u = users[0]
        if u.op == "Floor" and rounding is None:
            rounding = "floor"
        elif u.op == "Cast" and rounding is None and u.attrs.get("to") in INT_TYPES:
            rounding = "trunc"
        elif u.op not in ("Cast", "Floor", "Clip"):
            break
        elif u.op == "Clip" and any(i and graph.const(i) is None for i in u.inputs[1:]):
            break  # bounds computed at run time: not a requantisation clip
        tail.append(u)
        cur = u.outputs[0]
        if u.op == "Clip":
            break
    if rounding is None:
        raise UnsupportedOpError("Div", div.name, graph.opset,
                                 "a division whose result is never rounded to an integer")
    return tail, rounding


def _clip_bounds(graph: Graph, tail: list[Node]) -> tuple[int, int]:
    if tail and tail[-1].op == "Clip":
        return quantlab._clip_bounds(graph, tail[-1])
    return -NO_CLIP, NO_CLIP


def _replace(graph, chain, x, mul, add, d, rounding, lo, hi) -> None:
    base = chain[0].name
    mul_name, add_name = graph.fresh_name(f"{base}.rq_mul"), graph.fresh_name(f"{base}.rq_add")
    graph.values[mul_name] = quantlab._int_const(mul_name, mul)
    graph.values[add_name] = quantlab._int_const(add_name, add)
    pow2 = d & (d - 1) == 0
    if pow2 and (rounding == "floor" or lo >= 0):
        # trunc and floor differ only on negative non-integers, which a clip at lo >= 0
        # maps to lo either way.
        op, attrs = "RequantShift", {"shift": d.bit_length() - 1, "lo": lo, "hi": hi}
    else:
        op, attrs = "RequantDiv", {"div": d, "rounding": rounding, "lo": lo, "hi": hi}
    node = Node(op, graph.fresh_name(f"{base}_rq"), [x, mul_name, add_name],
                [chain[-1].outputs[0]], attrs, EDGEQ_DOMAIN)
    at = min(graph.nodes.index(n) for n in chain)
    graph.nodes = [n for n in graph.nodes if n not in chain]
    graph.nodes.insert(at, node)
    graph.remove_unused()


# -- scaled residual adds ----------------------------------------------------------------
def fuse_scaled_adds(graph: Graph) -> Graph:
    """``Add([Mul(x1,c1)], [Mul(x2,c2)]) -> RequantShift(·, 1, 0)`` -> ``HarmonisedAdd``.

    NEMO's integer add ``⌊Σ x_i·c_i / 2^d⌋``: each input scaled by an integer, summed
    exactly, floored once.
    """
    for rq in [n for n in graph.nodes if n.op == "RequantShift"]:
        add = graph.producer(rq.inputs[0])
        if add is None or add.op != "Add" or not single_consumer(graph, rq.inputs[0]):
            continue
        if any(graph.const(i) is not None for i in add.inputs):
            continue
        mul, off = graph.const(rq.inputs[1]), graph.const(rq.inputs[2])
        if mul.size != 1 or off.size != 1:
            continue
        xs, scales, dead = [], [], [add]
        for name in add.inputs:
            p = graph.producer(name)
            found = quantlab._other_const(graph, p) if p is not None and p.op == "Mul" else None
            if found is not None and found[1].size == 1 and single_consumer(graph, name):
                xs.append(found[0])
                scales.append(int(np.ravel(found[1])[0]))
                dead.append(p)
            else:
                xs.append(name)
                scales.append(1)
        attrs = {"in_mul": scales, "in_add": [0] * len(xs), "in_shift": [0] * len(xs),
                 "in_rq": [1] * len(xs), "out_mul": int(np.ravel(mul)[0]),
                 "out_add": int(np.ravel(off)[0]), "out_shift": rq.attrs["shift"], "out_rq": 1,
                 "lo": rq.attrs["lo"], "hi": rq.attrs["hi"]}
        node = Node("HarmonisedAdd", add.name, xs, list(rq.outputs), attrs, EDGEQ_DOMAIN)
        at = min(graph.nodes.index(n) for n in dead + [rq])
        graph.nodes = [n for n in graph.nodes if n not in dead and n is not rq]
        graph.nodes.insert(at, node)
        graph.remove_unused()
    return graph


# -- identities ----------------------------------------------------------------------------
def drop_identities(graph: Graph) -> Graph:
    """``Cast`` and ``Floor`` of an integer value are identities; a float->int ``Cast`` of a
    non-integer value (outside a requantisation) is refused."""
    integer = _integer_values(graph)
    for node in list(graph.nodes):
        if node.op not in ("Cast", "Floor"):
            continue
        src = node.inputs[0]
        if src not in integer:
            if node.op == "Cast" and node.attrs.get("to") in FLOAT_TYPES:
                continue
            raise UnsupportedOpError(node.op, node.name, graph.opset,
                                     "rounds a non-integer value outside a requantisation")
        _bypass(graph, node)
    return graph


def _integer_values(graph: Graph) -> set[str]:
    integer = {v.name for v in graph.constants()} | {
        n for n in graph.inputs if graph.values[n].quant is not None}
    for node in graph.nodes:
        ins = [i for i in node.inputs if i]
        if node.op in INTEGER_OPS and all(i in integer for i in ins):
            integer.update(o for o in node.outputs if o)
    return integer


def _bypass(graph: Graph, node: Node) -> None:
    src, dst = node.inputs[0], node.outputs[0]
    graph.nodes.remove(node)
    if dst in graph.outputs:  # keep the output's name: rename the producer's output
        producer = graph.producer(src)
        if producer is not None and _unread(graph, src):
            producer.outputs[producer.outputs.index(src)] = dst
            graph.remove_unused()
            return
        graph.nodes.append(Node("Identity", node.name, [src], [dst]))
        return
    for user in graph.consumers(dst):
        user.inputs = [src if i == dst else i for i in user.inputs]
    graph.remove_unused()


def _unread(graph: Graph, value: str) -> bool:
    """No node reads ``value`` and it is not a graph output."""
    return value not in graph.outputs and not graph.consumers(value)


# -- ranges --------------------------------------------------------------------------------
def annotate_ranges(graph: Graph) -> Graph:
    """Output ranges of integer ops; unclipped requants/adds get their implied bounds."""
    for node in graph.nodes:
        if node.op in ("RequantShift", "RequantDiv", "HarmonisedAdd"):
            if node.attrs["lo"] <= -NO_CLIP or node.attrs["hi"] >= NO_CLIP:
                bounds = _implied_bounds(graph, node)
                if bounds is None:
                    continue
                node.attrs["lo"] = max(node.attrs["lo"], bounds[0])
                node.attrs["hi"] = min(node.attrs["hi"], bounds[1])
            _set_range(graph, node.outputs[0], IntRange.from_bounds(node.attrs["lo"],
                                                                    node.attrs["hi"]))
        elif node.op in quantlab.RANGE_PRESERVING:
            q = graph.values[node.inputs[0]].quant
            if q is not None:
                _set_range(graph, node.outputs[0], q.range)
    return graph


def _set_range(graph: Graph, name: str, rng: IntRange) -> None:
    v = graph.values[name]
    v.quant = QuantInfo(rng)
    v.dtype = rng.dtype


def _in_range(graph: Graph, name: str) -> tuple[int, int] | None:
    q = graph.values[name].quant
    return None if q is None else (q.range.lo, q.range.hi)


def _implied_bounds(graph: Graph, node: Node) -> tuple[int, int] | None:
    """Exact bounds of the unclipped result from the input ranges (monotone maps)."""
    if node.op == "HarmonisedAdd":
        a = node.attrs
        if not all(a["in_rq"]) or a["out_rq"] != 1 or any(a["in_add"]) or any(a["in_shift"]):
            return None
        lo = hi = 0
        for name, c in zip(node.inputs, a["in_mul"], strict=True):
            r = _in_range(graph, name)
            if r is None:
                return None
            lo, hi = lo + min(c * r[0], c * r[1]), hi + max(c * r[0], c * r[1])
        m, off, d = a["out_mul"], a["out_add"], 2 ** a["out_shift"]
        ends = sorted(((lo * m + off) // d, (hi * m + off) // d))
        return ends[0], ends[1]
    r = _in_range(graph, node.inputs[0])
    mul, add = graph.const(node.inputs[1]), graph.const(node.inputs[2])
    if r is None:
        return None
    vals = [int(m) * x + int(c) for m in np.ravel(mul) for c in np.ravel(add) for x in r]
    d = 2 ** node.attrs["shift"] if node.op == "RequantShift" else node.attrs["div"]
    # floor and trunc are monotone: the extreme results come from the extreme values
    # (a per-channel mul/add pairs every mul with every add here: a superset, still safe).
    return min(vals) // d - 1, max(vals) // d + 1
