"""QONNX files (``Quant``/``IntQuant``, ``BipolarQuant``, ``Trunc``; Brevitas ``export_qonnx``).

Read as float-carrier graphs with qonnx's own semantics: each QONNX node runs a reference
kernel that repeats qonnx 1.0.0's executor arithmetic (``thirdparty.py``), everything else
is standard ONNX. Domains accepted: ``qonnx.custom_op.general``, ``finn.custom_op.general``
and ``onnx.brevitas``; the ``Trunc`` version follows the domain's opset (1: five inputs,
2: six), as in qonnx.

Integer lowering (:func:`lower_to_integers`, ``lower=True``): a ``Conv``/``MatMul``/``Gemm``
whose activation and weight are ``Quant`` outputs and whose (optional ``Relu``) result
feeds one ``Quant`` becomes ``Conv`` on the integers -> ``RequantDiv`` (half to even) when

- every scale involved is a power of two (per tensor; per output channel for weights),
  every zero point is 0, rounding is ROUND, the output scale divides ``s_x*s_w``
  (``s_x*s_w/s_out = 2^-k``, k ≥ 0), there is no bias (or a bias ``Quant`` with scale
  ``s_x*s_w``), and
- the accumulator provably stays below 2^24 in magnitude (``K·max|q_x|·max|q_w| + |b|``),

because then qonnx's float32 computation is exact up to the final rounding, so the
integer network equals it bit for bit. Other patterns stay float-carrier.
"""

from __future__ import annotations

import numpy as np
import onnx

from edgeq.engine.ir import EDGEQ_DOMAIN, Graph, Node, QuantInfo, Value
from edgeq.engine.onnx.reader import default_opset, infer_shapes, to_graph
from edgeq.engine.onnx.validate import check_shapes_after_inference
from edgeq.errors import UnsupportedOpError
from edgeq.numerics import IntRange

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas")
QONNX_OPS = ("Quant", "IntQuant", "BipolarQuant", "Trunc")
ARITY = {"Quant": 4, "IntQuant": 4, "BipolarQuant": 2}
FLOAT32_EXACT = 2**24


def is_qonnx(model: onnx.ModelProto) -> bool:
    return any(n.domain in QONNX_DOMAINS and n.op_type in QONNX_OPS for n in model.graph.node)


def import_qonnx(model: onnx.ModelProto, source: str, lower: bool = True) -> Graph:
    """Read a QONNX file; optionally lower the exact integer patterns (module docstring)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    version = _domain_version(model)
    for node in m.graph.node:
        if node.domain in QONNX_DOMAINS:
            if node.op_type not in QONNX_OPS:
                raise UnsupportedOpError(f"{node.domain}.{node.op_type}", node.name or "?",
                                         default_opset(model), "not a QONNX quantiser")
            want = ARITY[node.op_type] if node.op_type != "Trunc" else (5 if version < 2 else 6)
            if len(node.input) != want:
                raise UnsupportedOpError(
                    f"{node.domain}.{node.op_type}", node.name or "?", version,
                    f"{len(node.input)} inputs, version {version} takes {want}")
            node.domain = ""
    del m.opset_import[:]
    m.opset_import.extend(op for op in model.opset_import if op.domain not in QONNX_DOMAINS)
    inferred = infer_shapes(m, source)
    check_shapes_after_inference(inferred, source)
    graph = to_graph(inferred, source)
    graph.meta["dialect"] = "qonnx"
    if lower:
        graph = lower_to_integers(graph)
    return graph


def _domain_version(model: onnx.ModelProto) -> int:
    for op in model.opset_import:
        if op.domain in QONNX_DOMAINS:
            return int(op.version)
    return 1


# -- integer lowering ----------------------------------------------------------------------
def _pow2_exponent(a) -> np.ndarray | None:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0 or np.any(a <= 0) or not np.all(np.isfinite(a)):
        return None
    m, e = np.frexp(a)
    return (e - 1).astype(np.int64) if np.all(m == 0.5) else None


def _quant_params(graph: Graph, node: Node | None):
    """(scale, zeropt, bits, signed, narrow) of a Quant node with constant parameters."""
    if node is None or node.op not in ("Quant", "IntQuant"):
        return None
    consts = [graph.const(i) for i in node.inputs[1:4]]
    if any(c is None for c in consts) or str(node.attrs.get("rounding_mode", "ROUND")).upper() \
            not in ("ROUND", "HALF_EVEN"):
        return None
    scale, zp, bits = consts
    if np.any(zp != 0) or bits.size != 1 or int(bits.ravel()[0]) < 2:
        return None
    return scale, int(bits.ravel()[0]), bool(node.attrs.get("signed", 1)), \
        bool(node.attrs.get("narrow", 1))


def _int_quant_values(graph: Graph, node: Node) -> np.ndarray:
    """The integers a constant-input Quant produces (qonnx arithmetic, then / scale)."""
    from edgeq.engine.backends.reference.thirdparty import qonnx_quant

    x, s, z, b = (graph.const(i) for i in node.inputs[:4])
    y = qonnx_quant(x, s, z, b, signed=node.attrs.get("signed", 1),
                    narrow=node.attrs.get("narrow", 1),
                    rounding_mode=node.attrs.get("rounding_mode", "ROUND"))
    return np.rint(np.asarray(y, np.float64) / np.asarray(s, np.float64)).astype(np.int64)


def lower_to_integers(graph: Graph) -> Graph:
    """Lower each exact ``Quant -> linear -> [Relu] -> Quant`` pattern (module docstring)."""
    for node in [n for n in graph.nodes if n.op in ("Conv", "MatMul", "Gemm")]:
        if node in graph.nodes:
            _lower_one(graph, node)
    graph.remove_unused()
    return graph


def _lower_one(graph: Graph, lin: Node) -> None:
    if lin.op == "Gemm" and (lin.attrs.get("transA", 0) or lin.attrs.get("alpha", 1.0) != 1.0
                             or lin.attrs.get("beta", 1.0) != 1.0):
        return
    qx, qw = graph.producer(lin.inputs[0]), graph.producer(lin.inputs[1])
    px, pw = _quant_params(graph, qx), _quant_params(graph, qw)
    if px is None or pw is None or graph.const(qw.inputs[0]) is None:
        return
    if len(graph.consumers(qw.outputs[0])) != 1 or qw.outputs[0] in graph.outputs:
        return
    relu, out_q = _tail(graph, lin)
    po = _quant_params(graph, out_q)
    if po is None:
        return
    ex, ew, eo = (_pow2_exponent(p[0]) for p in (px, pw, po))
    if ex is None or ew is None or eo is None or ex.size != 1 or eo.size != 1:
        return
    k = int(eo.ravel()[0]) - (int(ex.ravel()[0]) + ew.ravel())  # s_x*s_w/s_out = 2^-k
    if np.any(k < 0) or (k.size > 1 and not np.all(k == k[0])):
        return  # per-channel shifts would need per-channel divisors: keep float
    bias = _bias_ints(graph, lin, px[0], pw[0])
    if bias is False:
        return
    w_int = _int_quant_values(graph, qw)
    lo_x, hi_x = _range(px)
    if lin.op == "Conv":
        k_len = int(np.prod(w_int.shape[1:]))
    else:  # MatMul (K, N) / Gemm B, (N, K) when transB
        k_len = w_int.shape[-1] if lin.attrs.get("transB", 0) else w_int.shape[-2]
    bound = k_len * max(abs(lo_x), abs(hi_x)) * int(np.abs(w_int).max(initial=0))
    if bias is not None:
        bound += int(np.abs(bias).max(initial=0))
    if bound >= FLOAT32_EXACT:
        return
    _rewrite(graph, lin, qx, w_int, bias, relu, out_q, int(k.ravel()[0]), px, po)


def _tail(graph: Graph, lin: Node):
    users = graph.consumers(lin.outputs[0])
    relu = None
    if len(users) == 1 and users[0].op == "Relu":
        relu, users = users[0], graph.consumers(users[0].outputs[0])
    if len(users) != 1 or users[0].op not in ("Quant", "IntQuant"):
        return None, None
    return relu, users[0]


def _bias_ints(graph: Graph, lin: Node, s_x, s_w):
    """None (no bias), the bias integers (a Quant at scale s_x*s_w), or False (anything else)."""
    if len(lin.inputs) < 3 or not lin.inputs[2]:
        return None
    qb = graph.producer(lin.inputs[2])
    pb = _quant_params(graph, qb)
    if pb is None or graph.const(qb.inputs[0]) is None:
        return False
    # s_w is uniform here (one shift k for all channels), so one product to compare with
    want = float(np.ravel(s_x)[0]) * float(np.ravel(s_w)[0])
    if not np.all(np.asarray(pb[0], np.float64) == want):
        return False
    return _int_quant_values(graph, qb)


def _range(p) -> tuple[int, int]:
    _, bits, signed, narrow = p
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1 - int(narrow)


def _rewrite(graph, lin, qx, w_int, bias, relu, out_q, k, px, po) -> None:
    """x_f -> Quant -> [÷s_x, Cast] -> Conv(int) -> [Relu] -> RequantDiv -> [×s_out]."""
    name = lin.name
    s_x = float(np.ravel(px[0])[0])
    s_out = np.asarray(po[0])
    q_int, acc, rq_out = (graph.fresh_name(f"{name}.{t}") for t in ("x_int", "acc", "y_int"))
    w_name, inv = graph.fresh_name(f"{name}.w_int"), graph.fresh_name(f"{name}.inv_scale")
    lo, hi = _range(po)
    xq_out = qx.outputs[0]
    new = [Node("Mul", graph.fresh_name(f"{name}.to_int"), [xq_out, inv], [q_int + ".f"]),
           Node("Cast", graph.fresh_name(f"{name}.cast"), [q_int + ".f"], [q_int],
                {"to": onnx.TensorProto.INT32})]
    graph.values[inv] = Value(inv, (), np.dtype(np.float32), None, np.float32(1.0 / s_x))
    w_arr = w_int.astype(np.int8 if np.abs(w_int).max(initial=0) < 128 else np.int32)
    graph.values[w_name] = Value(w_name, w_arr.shape, w_arr.dtype, None, w_arr)
    lin_inputs = [q_int, w_name]
    if bias is not None:
        b_name = graph.fresh_name(f"{name}.b_int")
        b_arr = bias.astype(np.int32)
        graph.values[b_name] = Value(b_name, b_arr.shape, b_arr.dtype, None, b_arr)
        lin_inputs.append(b_name)
    new.append(Node(lin.op, name, lin_inputs, [acc], dict(lin.attrs)))
    src = acc
    if relu is not None:
        src = graph.fresh_name(f"{name}.relu")
        new.append(Node("Relu", relu.name, [acc], [src]))
    one, zero = graph.fresh_name(f"{name}.one"), graph.fresh_name(f"{name}.zero")
    graph.values[one] = Value(one, (), np.dtype(np.int8), None, np.int8(1))
    graph.values[zero] = Value(zero, (), np.dtype(np.int8), None, np.int8(0))
    new.append(Node("RequantDiv", out_q.name, [src, one, zero], [rq_out],
                    {"div": 2**k, "rounding": "half_even", "lo": lo, "hi": hi}, EDGEQ_DOMAIN))
    sc = graph.fresh_name(f"{name}.out_scale")
    graph.values[sc] = Value(sc, s_out.shape, np.dtype(np.float32), None,
                             s_out.astype(np.float32))
    new.append(Node("Mul", graph.fresh_name(f"{name}.to_float"), [rq_out, sc],
                    [out_q.outputs[0]]))
    for n in new:
        for o in n.outputs:
            graph.values.setdefault(o, Value(o))
    rng = IntRange.from_bounds(lo, hi)
    graph.values[rq_out].quant = QuantInfo(rng, float(np.ravel(s_out)[0]))
    graph.values[rq_out].dtype = rng.dtype
    at = graph.nodes.index(lin)
    dead = [lin, out_q] + ([relu] if relu is not None else [])
    dead += [p for p in (graph.producer(lin.inputs[1]),) if p is not None]
    if len(lin.inputs) > 2 and lin.inputs[2]:
        dead.append(graph.producer(lin.inputs[2]))
    graph.nodes = [n for n in graph.nodes[:at] if n not in dead] + new + [
        n for n in graph.nodes[at:] if n not in dead]
