"""onnxruntime-quantised ONNX (QDQ and QOperator formats) -> integer IR.

The contract: the IR computes what **onnxruntime's CPU kernels** compute (x86-64, MLAS),
bit for bit, not what a "dequantise -> float op -> quantise" reading gives.

1. **QDQ -> QOperator** (:func:`fuse_qdq`): like onnxruntime's QDQ graph transformer,
   ``DQ -> op -> Q`` groups become the QOperator node onnxruntime runs for them:
   Conv -> ``QLinearConv``, MatMul -> ``QLinearMatMul``, Gemm -> ``com.microsoft.QGemm``,
   Add -> ``com.microsoft.QLinearAdd``, GlobalAveragePool ->
   ``com.microsoft.QLinearGlobalAveragePool``; ``DQ -> MaxPool/Reshape/Flatten/... -> Q``
   with one scale and zero point runs on the integers. Any other ``DQ -> op -> Q`` stays
   a float op between ``DequantizeLinear`` and ``QuantizeLinear`` kernels, as in
   onnxruntime.
2. **QOperator -> IR** (:func:`lower`): each quantised op becomes exact integer ops plus
   one requantisation op whose reference kernel states onnxruntime's arithmetic:

   - ``QLinearConv/QLinearMatMul/QGemm``: ``Sub`` (input zero point, exact) -> ``Conv`` /
     ``MatMul`` / ``Gemm`` on ``w - w_zp`` with the int32 bias (exact int64, checked to
     fit int32) -> ``QLinearRequant(acc, fp32(fp32(s_x*s_w)/s_y), y_zp)``;
   - ``ConvInteger/MatMulInteger``: the exact int32 accumulator (no requantisation);
   - ``QLinearAdd`` -> ``QLinearAddOrt``; ``QLinearGlobalAveragePool`` ->
     ``QLinearAvgPoolOrt``; ``QLinearConcat`` -> per-input DequantizeLinear ->
     QuantizeLinear (onnxruntime's lookup table) where the scales differ, then ``Concat``;
   - ``QuantizeLinear``/``DequantizeLinear`` at the float boundary keep their ONNX
     meaning (kernels: float32 division, half-to-even, saturation).

Anything else in ``com.microsoft`` raises UnsupportedOpError naming the node.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeq.engine.ir import EDGEQ_DOMAIN, IR_OPS, Graph, QuantInfo
from edgeq.engine.onnx.reader import default_opset, infer_shapes, to_graph
from edgeq.engine.onnx.validate import check_shapes_after_inference
from edgeq.errors import UnsupportedOpError
from edgeq.numerics import IntRange

MS = "com.microsoft"
QOPERATOR = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm",
             "QLinearAdd", "QLinearGlobalAveragePool"}
QDQ_FUSED = {"Conv": "QLinearConv", "MatMul": "QLinearMatMul", "Gemm": "QGemm",
             "Add": "QLinearAdd", "GlobalAveragePool": "QLinearGlobalAveragePool"}
# onnxruntime drops DQ/Q around these when both sides share scale and zero point.
QDQ_DROPPED = {"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
               "Identity"}
TYPE_RANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127),
              np.dtype(np.uint16): (0, 65535), np.dtype(np.int16): (-32768, 32767)}


def _unpack(a: np.ndarray) -> np.ndarray:
    """INT4/UINT4 tensors (packed two per byte in the file; ml_dtypes arrays once read)
    are held as int8/uint8 arrays with the same values."""
    if a.dtype.name in ("int4", "uint4"):
        return a.astype(np.int8 if a.dtype.name == "int4" else np.uint8)
    return a


def is_qdq(model: onnx.ModelProto) -> bool:
    """True when the graph holds QuantizeLinear/DequantizeLinear or QOperator nodes."""
    ops = {(n.domain or "", n.op_type) for n in model.graph.node}
    return any(op in ("QuantizeLinear", "DequantizeLinear") or op in QOPERATOR
               for _, op in ops)


class _Model:
    """Mutable view of the ONNX graph: node list plus constant arrays by name."""

    def __init__(self, model: onnx.ModelProto, source: str) -> None:
        self.source = source
        raw = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.four_bit = {k for k, v in raw.items() if v.dtype.name in ("int4", "uint4")}
        self.consts: dict[str, np.ndarray] = {k: _unpack(v) for k, v in raw.items()}
        self.nodes: list[onnx.NodeProto] = []
        for n in model.graph.node:
            if n.op_type == "Constant" and not n.domain:
                self.consts[n.output[0]] = numpy_helper.to_array(
                    helper.get_attribute_value(n.attribute[0]))
            else:
                self.nodes.append(n)
        self.outputs = [o.name for o in model.graph.output]
        self.opset = default_opset(model)
        self._n = 0

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    def add_const(self, base: str, data: np.ndarray) -> str:
        self._n += 1
        name = f"{base}__q{self._n}"
        self.consts[name] = np.asarray(data)
        return name

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if name in n.input]

    def producer(self, name: str) -> onnx.NodeProto | None:
        return next((n for n in self.nodes if name in n.output), None)


def import_qdq(model: onnx.ModelProto, source: str) -> Graph:
    """Fuse QDQ groups, lower the QOperator ops, and read the result as an IR graph."""
    m = _Model(model, source)
    fuse_qdq(m)
    lower(m)
    graph = _to_ir(model, m)
    graph.meta["dialect"] = "onnxruntime-qdq"
    return graph


# -- 1. QDQ -> QOperator ---------------------------------------------------------------------
def _dq_source(m: _Model, name: str):
    """(int tensor, scale, zero point, axis) when ``name`` is a DequantizeLinear output."""
    p = m.producer(name)
    if p is None or p.op_type != "DequantizeLinear":
        return None
    scale, zp = m.const(p.input[1]), m.const(p.input[2]) if len(p.input) > 2 else None
    if scale is None or (len(p.input) > 2 and p.input[2] and zp is None):
        return None
    axis = _attr(p, "axis", 1)
    return p.input[0], p.input[1], (p.input[2] if len(p.input) > 2 else ""), axis


def _single_q_after(m: _Model, node: onnx.NodeProto):
    out = node.output[0]
    users = m.consumers(out)
    if out in m.outputs or len(users) != 1 or users[0].op_type != "QuantizeLinear":
        return None
    q = users[0]
    if m.const(q.input[1]) is None or (len(q.input) > 2 and m.const(q.input[2]) is None):
        return None
    return q


def fuse_qdq(m: _Model) -> None:
    """Rewrite ``DQ -> op -> Q`` groups as the QOperator nodes onnxruntime fuses them to."""
    m.convertible = _convertible_pairs(m)
    for node in list(m.nodes):
        if node.domain or node not in m.nodes:
            continue
        if node.op_type in QDQ_FUSED:
            _fuse_group(m, node)
        elif node.op_type in QDQ_DROPPED:
            _drop_qdq(m, node)
    _remove_dead(m)


def _int8_activations(m: _Model, node, srcs, q) -> bool:
    zps = [m.const(s[2]) for s in srcs if m.const(s[0]) is None]
    zps.append(m.const(q.input[2]) if len(q.input) > 2 else None)
    return any(z is not None and z.dtype == np.int8 for z in zps)


def _convertible_pairs(m: _Model) -> set[str]:
    """Outputs of int8 ``Q`` nodes that onnxruntime (x86) moves to uint8 before fusing:
    the Q feeds exactly one node, a DQ, and that DQ at most one node."""
    found = set()
    for q in m.nodes:
        if q.op_type != "QuantizeLinear" or q.output[0] in m.outputs:
            continue
        users = m.consumers(q.output[0])
        if len(users) == 1 and users[0].op_type == "DequantizeLinear" and len(
                m.consumers(users[0].output[0])) <= 1:
            found.add(q.output[0])
    return found


def _convertible(m: _Model, node, srcs, q) -> bool:
    """An int8-activation group runs in onnxruntime's uint8 kernels only when all its
    activation Q->DQ pairs moved to uint8 (:func:`_convertible_pairs`); else in float."""
    acts = [s[0] for s in srcs if m.const(s[0]) is None] + [q.output[0]]
    return all(a in m.convertible for a in acts)


def _fuse_group(m: _Model, node: onnx.NodeProto) -> None:
    q = _single_q_after(m, node)
    n_data = 1 if node.op_type == "GlobalAveragePool" else 2
    srcs = [_dq_source(m, i) for i in node.input[:n_data]]
    if q is None or any(s is None for s in srcs):
        return
    shifted = _int8_activations(m, node, srcs, q)
    if shifted and not _convertible(m, node, srcs, q):
        return
    yq = [q.input[1], q.input[2] if len(q.input) > 2 else ""]
    ins = [srcs[0][0], srcs[0][1], srcs[0][2]]
    for s in srcs[1:]:
        ins += [s[0], s[1], s[2]]
    op, domain = QDQ_FUSED[node.op_type], ""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type in ("Conv", "MatMul", "Gemm"):
        bias = ""
        if len(node.input) > 2 and node.input[2]:
            b = _dq_source(m, node.input[2])
            if b is None:
                return  # a float bias: onnxruntime does not fuse either
            bias = b[0]
        if node.op_type == "Gemm":
            domain = MS
            ins = ins + [bias] + yq
        elif node.op_type == "Conv":
            ins = ins + yq + ([bias] if bias else [])
        else:
            if bias:
                return
            ins = ins + yq
    elif node.op_type == "Add":
        domain, ins = MS, ins + yq
        if shifted:  # onnxruntime adds in its uint8 kernel: values and zero points + 128
            attrs["u8_shift"] = 128
    else:  # GlobalAveragePool
        domain, ins, attrs = MS, ins + yq, {"channels_last": 0}
    fused = helper.make_node(op, ins, [q.output[0]], name=node.name or q.name, domain=domain,
                             **attrs)
    at = m.nodes.index(node)
    m.nodes[at] = fused
    m.nodes.remove(q)


def _drop_qdq(m: _Model, node: onnx.NodeProto) -> None:
    q = _single_q_after(m, node)
    src = _dq_source(m, node.input[0]) if node.input else None
    if q is None or src is None:
        return
    same = [np.array_equal(m.const(a), m.const(b)) if a and b else a == b
            for a, b in ((src[1], q.input[1]),
                         (src[2], q.input[2] if len(q.input) > 2 else ""))]
    if not all(same):
        return
    node.input[0] = src[0]
    node.output[0] = q.output[0]
    m.nodes.remove(q)


def _remove_dead(m: _Model) -> None:
    changed = True
    while changed:
        used = {i for n in m.nodes for i in n.input} | set(m.outputs)
        keep = [n for n in m.nodes if any(o in used for o in n.output)]
        changed = len(keep) != len(m.nodes)
        m.nodes = keep


# -- 2. QOperator -> IR ------------------------------------------------------------------------
def lower(m: _Model) -> None:
    """Replace every QOperator node by exact integer ops and an onnxruntime requant op."""
    out: list[onnx.NodeProto] = []
    for node in m.nodes:
        op = node.op_type
        if node.domain not in ("", "ai.onnx", MS):
            raise UnsupportedOpError(f"{node.domain}.{op}", node.name, m.opset,
                                     f"custom domain in {m.source}")
        if op in ("QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger"):
            out += _lower_linear(m, node)
        elif op == "QLinearAdd":
            attrs = _out_range(m, node.input[7] if len(node.input) > 7 else "")
            attrs["u8_shift"] = _attr(node, "u8_shift", 0)
            out.append(_ir_node(m, node, "QLinearAddOrt", list(node.input), attrs))
        elif op == "QLinearConcat":
            out += _lower_concat(m, node)
        elif op == "QLinearGlobalAveragePool":
            if _attr(node, "channels_last", 0):
                raise UnsupportedOpError(op, node.name, m.opset, "channels_last=1")
            out.append(_ir_node(m, node, "QLinearAvgPoolOrt", list(node.input),
                                _out_range(m, node.input[4] if len(node.input) > 4 else "")))
        elif node.domain == MS:
            raise UnsupportedOpError(f"{MS}.{op}", node.name, m.opset,
                                     "no onnxruntime-exact lowering for this contrib op")
        elif op == "QuantizeLinear" and set(node.input[2:3]) & m.four_bit:
            raise UnsupportedOpError(op, node.name, m.opset, "quantising to a 4-bit type")
        else:
            out.append(node)
    m.nodes = out


def _attr(node: onnx.NodeProto, key: str, default):
    for a in node.attribute:
        if a.name == key:
            return helper.get_attribute_value(a)
    return default


def _out_range(m: _Model, zp_name: str) -> dict:
    zp = m.const(zp_name)
    dt = np.dtype(np.uint8) if zp is None else zp.dtype
    if dt not in TYPE_RANGE:
        raise UnsupportedOpError("QLinear", zp_name, m.opset, f"output type {dt}")
    lo, hi = TYPE_RANGE[dt]
    return {"lo": lo, "hi": hi}


def _ir_node(m, node, op, inputs, attrs, outputs=None):
    return helper.make_node(op, inputs, outputs or list(node.output),
                            name=node.name or f"{op}_{len(m.consts)}", **attrs)


def _zp_array(m: _Model, name: str) -> np.ndarray:
    zp = m.const(name)
    return np.zeros((), np.int64) if zp is None else zp.astype(np.int64)


def _per_channel(a: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """A 1-D per-channel array shaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    if a.ndim == 0 or a.size == 1:
        return a.reshape(())
    shape = [1] * rank
    shape[axis] = a.size
    return a.reshape(shape)


def _lower_linear(m: _Model, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    op, i = node.op_type, list(node.input) + [""] * 10
    name = node.name or op
    if op == "QLinearConv":
        x, xs, xz, w, ws, wz, ys, yz, b = i[:9]
    elif op == "QLinearMatMul":
        x, xs, xz, w, ws, wz, ys, yz = i[:8]
        b = ""
    elif op == "QGemm":
        x, xs, xz, w, ws, wz, b, ys, yz = i[:9]
    else:  # ConvInteger / MatMulInteger: (x, w, x_zp, w_zp)
        x, w, xz, wz = i[:4]
        xs = ws = ys = yz = b = ""
    if op == "QGemm" and not ys:
        raise UnsupportedOpError(op, name, m.opset, "QGemm without y_scale has a float output")
    wq = m.const(w)
    if wq is None:
        raise UnsupportedOpError(op, name, m.opset, "the weight must be a constant")
    nodes = []
    xi = x
    if m.const(xz) is not None and np.any(m.const(xz)):
        xi = f"{name}.x_centered"
        nodes.append(helper.make_node("Sub", [x, m.add_const(f"{name}.x_zp", _zp_array(m, xz))],
                                      [xi], name=f"{name}.sub_zp"))
    w_axis = {"QLinearConv": 0, "ConvInteger": 0}.get(op, 1)
    if op == "QGemm" and _attr(node, "transB", 0):
        w_axis = 0
    wz_arr = _zp_array(m, wz)
    if wq.dtype not in (np.int8, np.uint8) or wq.ndim <= w_axis or wz_arr.size not in (
            1, wq.shape[w_axis]):
        raise UnsupportedOpError(op, name, m.opset, f"weight {wq.dtype}{list(wq.shape)} with "
                                 f"{wz_arr.size} zero point(s): 8-bit weights, one zero point "
                                 "per tensor or per output channel expected")
    w_int = wq.astype(np.int64) - _per_channel(wz_arr, wq.ndim, w_axis)
    narrow = np.int8 if w_int.size and -128 <= w_int.min() and w_int.max() <= 127 else np.int16
    w_name = m.add_const(f"{name}.w", w_int.astype(narrow))  # w - w_zp lies in [-255, 255]
    acc = f"{name}.acc" if ys else node.output[0]
    lin_in = [xi, w_name] + ([b] if b else [])
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if op in ("QLinearConv", "ConvInteger"):
        nodes.append(helper.make_node("Conv", lin_in, [acc], name=f"{name}.conv", **attrs))
    elif op == "QGemm":
        if abs(float(attrs.pop("alpha", 1.0)) - 1.0) > 0:
            raise UnsupportedOpError(op, name, m.opset, "alpha != 1")
        nodes.append(helper.make_node("Gemm", lin_in, [acc], name=f"{name}.gemm", **attrs))
    else:
        nodes.append(helper.make_node("MatMul", lin_in[:2], [acc], name=f"{name}.matmul"))
    if not ys:
        return nodes
    if m.const(xs) is None or m.const(ws) is None or m.const(ys) is None:
        raise UnsupportedOpError(op, name, m.opset, "scales must be constants")
    mult = _multiplier(m.const(xs), m.const(ws), m.const(ys))
    out_rank = 4 if op == "QLinearConv" else 2
    mult = _per_channel(mult, out_rank, 1)
    nodes.append(helper.make_node(
        "QLinearRequant", [acc, m.add_const(f"{name}.multiplier", mult),
                           m.add_const(f"{name}.y_zp", _zp_array(m, yz))],
        [node.output[0]], name=f"{name}.requant", **_out_range(m, yz)))
    return nodes


def _lower_concat(m: _Model, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """``QLinearConcat(y_s, y_zp, (x_i, s_i, zp_i)...)``: onnxruntime maps each input whose
    scale or zero point differs from the output's through a 256-entry table built as
    ``QuantizeLinear(fp32(s_i * (v - zp_i)), y_s, y_zp)`` -- exactly DequantizeLinear then
    QuantizeLinear -- and copies the others; then concatenates the integers."""
    ins, name = list(node.input), node.name or "QLinearConcat"
    ys, yz, triples = ins[0], ins[1], ins[2:]
    if len(triples) % 3 or not triples:
        raise UnsupportedOpError("QLinearConcat", name, m.opset, "inputs are not (x, s, zp)s")
    nodes, parts = [], []
    for i in range(0, len(triples), 3):
        x, xs, xz = triples[i:i + 3]
        same = all(m.const(a) is not None and m.const(b) is not None
                   and np.array_equal(m.const(a), m.const(b)) for a, b in ((xs, ys), (xz, yz)))
        if same:
            parts.append(x)
            continue
        real, q = f"{name}.in{i // 3}.real", f"{name}.in{i // 3}.q"
        nodes += [helper.make_node("DequantizeLinear", [x, xs, xz], [real], name=f"{real}.dq"),
                  helper.make_node("QuantizeLinear", [real, ys, yz], [q], name=f"{q}.q")]
        parts.append(q)
    nodes.append(helper.make_node("Concat", parts, list(node.output), name=name,
                                  axis=_attr(node, "axis", 1)))
    return nodes


def _multiplier(xs, ws, ys) -> np.ndarray:
    """onnxruntime's ``fp32(fp32(s_x * s_w) / s_y)`` (per tensor or per output channel)."""
    f32 = np.float32
    return (f32(xs) * np.asarray(ws, f32).ravel() / f32(ys)).astype(f32)


# -- 3. to the IR ------------------------------------------------------------------------------
def _to_ir(original: onnx.ModelProto, m: _Model) -> Graph:
    used = {i for n in m.nodes for i in n.input}
    inits = [numpy_helper.from_array(np.ascontiguousarray(v), k)
             for k, v in m.consts.items() if k in used]
    g = original.graph
    const_names = set(m.consts)
    inputs = [vi for vi in g.input if vi.name not in const_names]
    graph_proto = helper.make_graph(m.nodes, g.name or "graph", inputs, list(g.output), inits)
    model = helper.make_model(graph_proto, opset_imports=list(original.opset_import))
    model.ir_version = original.ir_version
    inferred = infer_shapes(model, m.source)
    check_shapes_after_inference(inferred, m.source)
    graph = to_graph(inferred, m.source)
    for node in graph.nodes:
        if node.op in IR_OPS:
            node.domain = EDGEQ_DOMAIN
            lo, hi = node.attrs["lo"], node.attrs["hi"]
            v = graph.values[node.outputs[0]]
            v.quant = QuantInfo(IntRange.from_bounds(lo, hi))
            v.dtype = v.quant.range.dtype
    return graph
