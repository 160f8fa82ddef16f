"""IR graph -> C sources: ``model.h``/``model.c`` (call sequence), ``weights.c`` (data).

The generator writes only data (weights, arena offsets, shapes, requantisation
constants) and calls into the kernel library in ``kernels/`` (DESIGN §7). It expects a
graph after the passes of :func:`prepare_graph`: concrete shapes, fused requantisation,
proven bounds in ``graph.meta["bounds"]``, and a :class:`MemoryPlan`.

Kernel choice per linear node: the 8-bit path (``eq_conv_q8``/``eq_conv_dw8``/
``eq_gemm_q8``: u8 or s8 activations, weights in [-128, 127], int32 accumulator) when
the range proof gives ``acc_bits == 32`` and the shifted-input partial sums provably fit
int32; the int64 path otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeq.engine.ir import Graph, Node
from edgeq.errors import UnsupportedOpError

DTYPE_CODES = {
    np.dtype(np.uint8): "EQ_U8",
    np.dtype(np.int8): "EQ_S8",
    np.dtype(np.uint16): "EQ_U16",
    np.dtype(np.int16): "EQ_S16",
    np.dtype(np.uint32): "EQ_U32",
    np.dtype(np.int32): "EQ_S32",
    np.dtype(np.int64): "EQ_S64",
    np.dtype(np.float32): "EQ_F32",
    np.dtype(np.float64): "EQ_F64",
}
C_TYPES = {
    np.dtype(np.uint8): "uint8_t",
    np.dtype(np.int8): "int8_t",
    np.dtype(np.uint16): "uint16_t",
    np.dtype(np.int16): "int16_t",
    np.dtype(np.uint32): "uint32_t",
    np.dtype(np.int32): "int32_t",
    np.dtype(np.int64): "int64_t",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}
VIEW_OPS = frozenset({"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity"})
LINEAR_OPS = frozenset({"Conv", "Gemm", "MatMul", "ConvRequant", "GemmRequant", "MatMulRequant"})
ELEMENTWISE_OPS = frozenset({"Relu", "Clip", "Sigmoid", "Add", "Sub", "Mul"})
POOL_OPS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
OTHER_OPS = frozenset({"RequantShift", "HarmonisedAdd", "Concat", "Gather", "LayoutConvert"})
SUPPORTED_OPS = VIEW_OPS | LINEAR_OPS | ELEMENTWISE_OPS | POOL_OPS | OTHER_OPS
# Partial sums of the 8-bit path in the +128 domain: K * 255 * 128 must stay below 2^31.
MAX_Q8_TAPS = (2**31 - 1) // (255 * 128)


def _dt(graph: Graph, name: str) -> np.dtype:
    return np.dtype(graph.values[name].dtype)


def _shape(graph: Graph, name: str) -> tuple[int, ...]:
    """Concrete shape (a symbolic dim, before compilation fixes the batch, counts as 1)."""
    return tuple(int(d) if isinstance(d, (int, np.integer)) else 1
                 for d in graph.values[name].shape)


def _is_float(dt: np.dtype) -> bool:
    return np.issubdtype(dt, np.floating)


def _unsupported(node: Node, detail: str) -> UnsupportedOpError:
    return UnsupportedOpError(node.op, node.name, detail=f"C backend: {detail}")


# ---------------------------------------------------------------------------------
# support predicate (BackendSpec.assign asks it per node)
# ---------------------------------------------------------------------------------
def supports(graph: Graph, node: Node) -> bool:
    """True when the C backend can run ``node`` (op known, dtypes storable)."""
    if node.op not in SUPPORTED_OPS:
        return False
    names = [n for n in node.inputs if n] + [n for n in node.outputs if n]
    for n in names:
        v = graph.values.get(n)
        if v is None or v.dtype is None or np.dtype(v.dtype) not in DTYPE_CODES:
            return False
        if v.shape is None:
            return False
    try:
        _check_node(graph, node)
    except UnsupportedOpError:
        return False
    return True


def _check_node(graph: Graph, node: Node) -> None:
    """Raise UnsupportedOpError for attribute values the C kernels do not implement."""
    a = node.attrs
    if node.op in ("Conv", "ConvRequant", "MaxPool", "AveragePool"):
        if len(_shape(graph, node.inputs[0])) != 4:
            raise _unsupported(node, "only 2-D (NCHW) windows are implemented")
        if node.op in ("MaxPool",) and len(node.outputs) > 1 and node.outputs[1]:
            raise _unsupported(node, "MaxPool indices output")
        if a.get("storage_order", 0):
            raise _unsupported(node, "storage_order=1")
    if node.op in ("Gemm", "GemmRequant"):
        scaled = float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0
        if a.get("transA", 0) or scaled:
            raise _unsupported(node, "Gemm with transA or alpha/beta != 1")
        if _static_data(graph, node.inputs[1]) is None:
            raise _unsupported(node, "Gemm with a non-constant B")
    if node.op in ("MatMul", "MatMulRequant"):
        b = _static_data(graph, node.inputs[1])
        if b is None or b.ndim != 2:
            raise _unsupported(node, "MatMul needs a constant 2-D right operand")
    if node.op in ("Conv", "ConvRequant"):
        if _static_data(graph, node.inputs[1]) is None:
            raise _unsupported(node, "Conv with non-constant weights")
    if node.op == "Gather" and graph.const(node.inputs[1]) is None:
        raise _unsupported(node, "Gather with non-constant indices")
    if node.op in ("Add", "Sub", "Mul"):
        if len(_shape(graph, node.outputs[0])) > 6:
            raise _unsupported(node, "rank above 6")
    if node.op == "HarmonisedAdd":
        out = _shape(graph, node.outputs[0])
        if any(_shape(graph, i) != out for i in node.inputs):
            raise _unsupported(node, "HarmonisedAdd inputs of different shapes")
    if node.op == "Clip" and any(i and graph.const(i) is None for i in node.inputs[1:]):
        raise _unsupported(node, "Clip with non-constant bounds")
    if node.op in THIRDPARTY_OPS:
        _tp_check(graph, node)
    for n in node.inputs:
        if n and graph.values[n].is_const and n not in _const_inputs_allowed(node):
            raise _unsupported(node, f"constant input '{n}' where a tensor is expected")


def _const_inputs_allowed(node: Node) -> set[str]:
    if node.op in THIRDPARTY_OPS:
        return _tp_const_inputs(node)
    if node.op in LINEAR_OPS or node.op in ("RequantShift", "Gather", "Clip"):
        return set(node.inputs[1:])
    if node.op in ("Add", "Sub", "Mul", "Concat"):
        return set(node.inputs)
    if node.op == "Reshape":
        return set(node.inputs[1:])
    if node.op in ("Squeeze", "Unsqueeze"):
        return set(node.inputs[1:])
    return set()


# ---------------------------------------------------------------------------------
# emission
# ---------------------------------------------------------------------------------
@dataclass
class _Emitter:
    graph: Graph
    plan: object
    bounds: dict
    weights: list[str] = field(default_factory=list)  # C definitions in weights.c
    decls: list[str] = field(default_factory=list)  # extern declarations for model.c
    layers: list[tuple[str, str, list[str]]] = field(default_factory=list)
    scratch: dict[str, int] = field(default_factory=dict)  # buffer -> elements
    kernels: set[str] = field(default_factory=set)
    threads: int = 1
    _n: int = 0

    # -- data ----------------------------------------------------------------------
    def const(self, ctype: str, values, hint: str) -> str:
        """A const array in weights.c; returns its C name."""
        self._n += 1
        name = f"W{self._n}_{_c_ident(hint)}"
        flat = np.asarray(values).reshape(-1)
        if flat.size == 0:
            flat = np.zeros(1, dtype=flat.dtype)
        if ctype in ("float", "double"):
            body = ",".join(_c_float(float(v), ctype) for v in flat)
        else:
            body = ",".join(_c_int(int(v)) for v in flat)
        self.weights.append(f"const {ctype} {name}[{flat.size}] = {{{body}}};")
        self.decls.append(f"extern const {ctype} {name}[{flat.size}];")
        return name

    def need(self, buf: str, n: int) -> None:
        self.scratch[buf] = max(self.scratch.get(buf, 0), int(n))

    def ptr(self, name: str) -> str:
        off = self.offset(name)
        return f"(arena + {off})"

    def offset(self, name: str) -> int:
        plan = self.plan
        if name in plan.aliases:
            base, byte_off = plan.aliases[name]
            return self.offset(base) + int(byte_off)
        return int(plan.buffers[name].offset)

    def rq(self, node: Node, mul_name: str, add_name: str, channels: int, axis_len_fn) -> str:
        """Emit an eq_rq struct for per-channel (or scalar) mul/add; returns a C expr."""
        mul = axis_len_fn(self.graph.const(mul_name), channels)
        add = axis_len_fn(self.graph.const(add_name), channels)
        m = self.const("int64_t", mul, node.name + "_mul")
        a = self.const("int64_t", add, node.name + "_add")
        shift = int(node.attrs.get("shift", 0))
        if not 0 <= shift <= 62:
            raise _unsupported(node, f"shift={shift} outside [0, 62]")
        lo, hi = int(node.attrs["lo"]), int(node.attrs["hi"])
        return f"{{{m}, {a}, {shift}, {_c_int(lo)}, {_c_int(hi)}}}"

    def layer(self, node: Node, body: list[str]) -> None:
        self.layers.append((node.name, node.op, body))


def _c_ident(s: str) -> str:
    out = "".join(ch if ch.isalnum() else "_" for ch in s)
    return out[:40]


def _c_int(v: int) -> str:
    if v == -(2**63):
        return "INT64_MIN"
    if -(2**31) <= v < 2**31:
        return str(v)
    return f"INT64_C({v})"


def _c_float(v: float, ctype: str) -> str:
    if np.isnan(v):
        return "NAN"
    if np.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return repr(v) if ctype == "double" else repr(float(np.float32(v))) + "f"


def _channel_vector(data: np.ndarray, channels: int, out_rank: int, axis: int) -> np.ndarray:
    """mul/add broadcast against an output of rank ``out_rank``: one value per channel
    along ``axis`` (raises ValueError when it varies along any other axis)."""
    a = np.asarray(data)
    if a.size == 1:
        return np.full(channels, a.reshape(-1)[0], dtype=np.int64)
    shape = (1,) * (out_rank - a.ndim) + a.shape
    a = a.reshape(shape)
    if any(d != 1 for i, d in enumerate(shape) if i != axis) or shape[axis] != channels:
        raise ValueError(f"constant of shape {data.shape} is not per channel along axis {axis}")
    return a.reshape(-1).astype(np.int64)


def _rq_axis(graph: Graph, node: Node, out_shape) -> int:
    """The axis along which a RequantShift's mul/add vary (1 if scalar)."""
    rank = len(out_shape)
    for name in node.inputs[1:3]:
        a = np.asarray(graph.const(name))
        if a.size > 1:
            shape = (1,) * (rank - a.ndim) + a.shape
            axes = [i for i, d in enumerate(shape) if d != 1]
            if len(axes) == 1:
                return axes[0]
            raise _unsupported(node, f"mul/add of shape {a.shape} vary along several axes")
    return 1 if rank > 1 else 0


def emit(graph: Graph, plan, bounds: dict, threads: int = 1) -> _Emitter:
    """Emit every node of ``graph`` (prepared) into an _Emitter; convolutions split their
    work over ``threads`` POSIX threads."""
    em = _Emitter(graph, plan, bounds, threads=threads)
    for node in graph.nodes:
        if not supports(graph, node):
            _check_node(graph, node)
            raise _unsupported(node, "op or dtype not implemented")
        _EMIT.get(node.op, _emit_unknown)(em, node)
    return em


def _emit_unknown(em: _Emitter, node: Node) -> None:
    raise _unsupported(node, "no emitter")


# -- linear ----------------------------------------------------------------------------
def _nchw(graph: Graph, node: Node, name: str) -> tuple[int, ...]:
    """The NCHW-order shape of ``name`` as ``node`` sees it (an NHWC node of the layout
    pass stores [N, H, W, C])."""
    shape = _shape(graph, name)
    if node.attrs.get("layout") == "NHWC" and len(shape) == 4:
        return (shape[0], shape[3], shape[1], shape[2])
    return shape


def _conv_geometry(graph: Graph, node: Node) -> dict:
    n, c, h, w = _nchw(graph, node, node.inputs[0])
    _, m, oh, ow = _nchw(graph, node, node.outputs[0])
    wt = graph.const(node.inputs[1])
    kh, kw = wt.shape[2:]
    return dict(n=n, c=c, h=h, w=w, m=m, oh=oh, ow=ow, kh=kh, kw=kw,
                **_window(node.attrs, h, w, oh, ow, kh, kw),
                group=int(node.attrs.get("group", 1)))


def _window(a: dict, h: int, w: int, oh: int, ow: int, kh: int, kw: int) -> dict:
    """Strides, dilations and the top/left padding of a conv or pool window (auto_pad
    resolved against the output shape)."""
    sh, sw = a.get("strides") or (1, 1)
    dh, dw = a.get("dilations") or (1, 1)
    pads = a.get("pads") or (0, 0, 0, 0)
    pt, pl = pads[0], pads[1]
    auto = a.get("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pt = _same_begin(h, oh, kh, sh, dh, auto)
        pl = _same_begin(w, ow, kw, sw, dw, auto)
    elif auto == "VALID":
        pt = pl = 0
    return dict(sh=sh, sw=sw, dh=dh, dw=dw, pt=pt, pl=pl)


def _same_begin(size, out, k, s, d, mode) -> int:
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2 if mode == "SAME_UPPER" else total - total // 2


def _shape_struct(g: dict, kind: str) -> str:
    keys = (["n", "c", "h", "w", "m", "oh", "ow", "kh", "kw", "sh", "sw", "dh", "dw", "pt",
             "pl", "group"] if kind == "conv" else
            ["n", "c", "h", "w", "oh", "ow", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl"])
    return "{" + ", ".join(str(int(g[k])) for k in keys) + "}"


def _int8_fits(w: np.ndarray) -> bool:
    return w.size == 0 or (int(w.min()) >= -128 and int(w.max()) <= 127)


def _q8_ok(em: _Emitter, node: Node, x_dt, w: np.ndarray, bias32: np.ndarray | None,
           k: int) -> bool:
    b = em.bounds.get(node.name)
    if b is None or b.acc_bits != 32:
        return False
    if x_dt not in (np.dtype(np.uint8), np.dtype(np.int8)) or not _int8_fits(w):
        return False
    if k > MAX_Q8_TAPS:
        return False
    return bias32 is None or (
        int(bias32.min(initial=0)) >= -(2**31) and int(bias32.max(initial=0)) < 2**31)


def _nhwc_module():
    from edgeq.engine.backends.c import nhwc

    return nhwc


def nhwc_conv_ok(graph: Graph, node: Node) -> bool:
    """True when the C backend has an NHWC kernel for this Conv/ConvRequant: the 8-bit
    path (proven int32 accumulator, u8/s8 input, int8 weights), 2-D, and depthwise or
    group 1 (the layout pass asks this through ``passes.layout.c_layout``)."""
    if node.op not in ("Conv", "ConvRequant") or not graph.values[node.inputs[0]].is_integer:
        return False
    w = graph.const(node.inputs[1])
    if w is None or w.ndim != 4 or len(_shape(graph, node.inputs[0])) != 4:
        return False
    b = graph.meta.get("bounds", {}).get(node.name)
    x_dt = _dt(graph, node.inputs[0])
    if b is None or b.acc_bits != 32 or x_dt not in (np.dtype(np.uint8), np.dtype(np.int8)):
        return False
    if not _int8_fits(w) or w.shape[1] * w.shape[2] * w.shape[3] > MAX_Q8_TAPS:
        return False
    bias = graph.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    wsum = w.astype(np.int64).reshape(w.shape[0], -1).sum(axis=1)
    bias32 = (np.zeros(w.shape[0], np.int64) if bias is None else bias.astype(np.int64))
    for v in (bias32, bias32 - 128 * wsum):
        if int(v.min()) < -(2**31) or int(v.max()) >= 2**31:
            return False
    group, c = int(node.attrs.get("group", 1)), w.shape[1] * int(node.attrs.get("group", 1))
    return group == 1 or (group == c == w.shape[0] and w.shape[1] == 1)


def _rq_expr(em: _Emitter, node: Node, channels: int, out_rank: int, axis: int) -> str:
    if not node.op.endswith("Requant"):
        return "NULL"
    nin = len(node.inputs)
    mul_name, add_name = node.inputs[nin - 2], node.inputs[nin - 1]
    expr = em.rq(node, mul_name, add_name, channels,
                 lambda d, c: _channel_vector(d, c, out_rank, axis))
    return f"&(const eq_rq){expr}"


def _emit_conv(em: _Emitter, node: Node) -> None:
    if node.attrs.get("layout") == "NHWC":
        from edgeq.engine.backends.c import nhwc

        nhwc.emit_conv(em, node)
        return
    graph = em.graph
    g = _conv_geometry(graph, node)
    x, out = node.inputs[0], node.outputs[0]
    x_dt, y_dt = _dt(graph, x), _dt(graph, out)
    w = graph.const(node.inputs[1])
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    b = graph.const(b_name) if b_name else None
    m, group = g["m"], g["group"]
    k = w.shape[1] * g["kh"] * g["kw"]
    shape = f"&(const eq_conv_shape){_shape_struct(g, 'conv')}"
    yc, xc = DTYPE_CODES[y_dt], DTYPE_CODES[x_dt]
    if _is_float(x_dt) or _is_float(y_dt) or _is_float(w.dtype):
        wn = em.const("float", w.astype(np.float32), node.name + "_w")
        bn = em.const("float", b.astype(np.float32), node.name + "_b") if b is not None else "NULL"
        em.layer(node, [f"eq_conv_f({shape}, {em.ptr(x)}, {xc}, {wn}, {bn}, {em.ptr(out)}, {yc});"])
        return
    rq = _rq_expr(em, node, m, 4, 1)
    wi = w.astype(np.int64).reshape(m, k)
    bias = np.zeros(m, dtype=np.int64) if b is None else b.astype(np.int64)
    flip = x_dt == np.dtype(np.int8)
    bias32 = bias - 128 * wi.sum(axis=1) if flip else bias
    if _q8_ok(em, node, x_dt, w, bias32, k):
        if group == g["c"] == m and w.shape[1] == 1:
            wn = em.const("int8_t", wi, node.name + "_w")
            bn = em.const("int32_t", bias, node.name + "_b")
            t = _layer_threads(em, g["n"] * g["c"] * g["oh"] * g["ow"] * g["kh"] * g["kw"])
            em.need("pad8", t * (_dw_pad(g) + (g["kw"] - 1) * g["dw"]))
            pw = (g["ow"] - 1) * g["sw"] + (g["kw"] - 1) * g["dw"] + 1
            em.need("acc32", t * g["oh"] * pw)
            em.layer(node, [f"eq_conv_dw8({shape}, {em.ptr(x)}, {xc}, {wn}, {bn}, {rq}, "
                            f"{em.ptr(out)}, {yc}, s_pad8, s_acc32, {t});"])
            return
        kp = -(-k // 4) * 4
        wn = em.const("int8_t", pack_q8(wi, group, kp), node.name + "_w")
        bn = em.const("int32_t", bias32, node.name + "_b")
        pb = _conv_block(kp, g["oh"] * g["ow"])
        t = _layer_threads(em, g["n"] * g["oh"] * g["ow"] * m * kp)
        em.need("cols8", t * pb * kp)
        em.need("acc32", t * 16 * pb)
        em.layer(node, [f"eq_conv_q8({shape}, {em.ptr(x)}, {xc}, {wn}, {kp}, {bn}, {rq}, "
                        f"{em.ptr(out)}, {yc}, s_cols8, s_acc32, {t});"])
        return
    wn = em.const("int64_t", wi, node.name + "_w")
    bn = em.const("int64_t", bias, node.name + "_b") if b is not None else "NULL"
    em.need("acc64", g["ow"])
    em.layer(node, [f"eq_conv_i64({shape}, {em.ptr(x)}, {xc}, {wn}, {bn}, {rq}, "
                    f"{em.ptr(out)}, {yc}, s_acc64);"])


def pack_q8(w: np.ndarray, group: int, kp: int) -> np.ndarray:
    """[m][k] weights -> eq_conv_q8's layout: per group, per block of 16 output channels
    (zero channels pad the last block), [kp/4][16][4] with zero taps from k to kp."""
    m, k = w.shape
    mg = m // group
    mp = -(-mg // 16) * 16
    out = np.zeros((group, mp, kp), dtype=np.int8)
    out[:, :mg, :k] = w.reshape(group, mg, k)
    # (group, blocks, 16, kp/4, 4) -> (group, blocks, kp/4, 16, 4)
    out = out.reshape(group, mp // 16, 16, kp // 4, 4).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(out).reshape(-1)


# Starting a thread costs tens of microseconds: below this many multiply-adds per
# thread a layer runs on one (measured: MobileNetV1's small layers got slower threaded).
MIN_MACS_PER_THREAD = 2_000_000


def _layer_threads(em: _Emitter, macs: int) -> int:
    return max(1, min(em.threads, macs // MIN_MACS_PER_THREAD))


def _dw_pad(g: dict) -> int:
    ph = (g["oh"] - 1) * g["sh"] + (g["kh"] - 1) * g["dh"] + 1
    pw = (g["ow"] - 1) * g["sw"] + (g["kw"] - 1) * g["dw"] + 1
    return ph * pw


def _conv_block(kp: int, positions: int) -> int:
    """Mirror of eq_conv_block() in eq_conv.c (im2col rows per block)."""
    pb = max(65536 // max(kp, 1), 4)
    return min(pb, positions)


def _emit_gemm(em: _Emitter, node: Node) -> None:
    graph = em.graph
    a_name, b_name, out = node.inputs[0], node.inputs[1], node.outputs[0]
    a_dt, y_dt = _dt(graph, a_name), _dt(graph, out)
    bmat = graph.const(b_name)
    is_matmul = node.op.startswith("MatMul")
    if is_matmul or not node.attrs.get("transB", 0):
        bmat = bmat.T  # -> [cols][k]
    cols, k = bmat.shape
    a_shape = _shape(graph, a_name)
    if a_shape[-1] != k:
        raise _unsupported(node, f"operand shapes {a_shape} and {graph.const(b_name).shape}")
    rows = int(np.prod(a_shape[:-1], dtype=np.int64))
    c_name = "" if is_matmul or len(node.inputs) < 3 else node.inputs[2]
    c = graph.const(c_name) if c_name else None
    if c_name and c is None:
        raise _unsupported(node, "Gemm with a non-constant C")
    if c is not None:
        if c.size not in (1, cols) or (c.ndim == 2 and c.shape[0] != 1):
            raise _unsupported(node, f"Gemm C of shape {c.shape} (only a per-column bias)")
        c = np.broadcast_to(c.reshape(-1), (cols,))
    ac, yc = DTYPE_CODES[a_dt], DTYPE_CODES[y_dt]
    head = f"{rows}, {cols}, {k}, {em.ptr(a_name)}, {ac}"
    if _is_float(a_dt) or _is_float(y_dt) or _is_float(bmat.dtype):
        wn = em.const("float", bmat.astype(np.float32), node.name + "_w")
        bn = em.const("float", c.astype(np.float32), node.name + "_b") if c is not None else "NULL"
        em.layer(node, [f"eq_gemm_f({head}, {wn}, {bn}, {em.ptr(out)}, {yc});"])
        return
    rq = _rq_expr(em, node, cols, len(_shape(graph, out)), len(_shape(graph, out)) - 1)
    wi = bmat.astype(np.int64)
    bias = np.zeros(cols, dtype=np.int64) if c is None else c.astype(np.int64)
    flip = a_dt == np.dtype(np.int8)
    bias32 = bias - 128 * wi.sum(axis=1) if flip else bias
    if _q8_ok(em, node, a_dt, wi, bias32, k):
        from edgeq.engine.backends.c import nhwc

        nhwc.emit_gemm_q8(em, node, rows, cols, k, wi, bias32, rq, em.ptr(a_name), ac,
                          em.ptr(out), yc)
        return
    if _i32_ok(em, node, a_name, wi, bias):
        wn = em.const("int32_t", wi, node.name + "_w")
        bn = em.const("int32_t", bias, node.name + "_b") if c is not None else "NULL"
        em.need("acc32", k)
        em.layer(node, [f"eq_gemm_i32({head}, {wn}, {bn}, {rq}, {em.ptr(out)}, {yc}, s_acc32);"])
        return
    wn = em.const("int64_t", wi, node.name + "_w")
    bn = em.const("int64_t", bias, node.name + "_b") if c is not None else "NULL"
    em.need("acc64", k)
    em.layer(node, [f"eq_gemm_i64({head}, {wn}, {bn}, {rq}, {em.ptr(out)}, {yc}, s_acc64);"])


def _fits32(lo: int, hi: int) -> bool:
    return -(2**31) <= lo and hi < 2**31


def _i32_ok(em: _Emitter, node: Node, a_name: str, w: np.ndarray, bias: np.ndarray) -> bool:
    """eq_gemm_i32: the proven accumulator (bias included), the input values, the weights
    and the bias all fit int32 (e.g. a classifier head after a sum pool)."""
    b = em.bounds.get(node.name)
    rng = em.graph.meta.get("value_ranges", {}).get(a_name)
    if b is None or b.acc_lo is None or rng is None or not _fits32(b.acc_lo, b.acc_hi):
        return False
    return (_fits32(*rng) and _fits32(int(w.min(initial=0)), int(w.max(initial=0)))
            and _fits32(int(bias.min(initial=0)), int(bias.max(initial=0))))


# -- integer ops -------------------------------------------------------------------------
def _emit_requant(em: _Emitter, node: Node) -> None:
    graph = em.graph
    x, out = node.inputs[0], node.outputs[0]
    shape = _shape(graph, out)
    lshape = _nchw(graph, node, out)  # mul/add broadcast against the NCHW shape
    axis = _rq_axis(graph, node, lshape)
    ch = lshape[axis] if lshape else 1
    try:
        expr = em.rq(node, node.inputs[1], node.inputs[2], ch,
                     lambda d, c: _channel_vector(d, c, len(shape), axis))
    except ValueError as exc:
        raise _unsupported(node, str(exc)) from None
    if lshape != shape:  # NHWC: the NCHW channel axis 1 is stored last
        axis = {0: 0, 1: 3, 2: 1, 3: 2}[axis]
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    em.layer(node, [f"eq_requant({em.ptr(x)}, {DTYPE_CODES[_dt(graph, x)]}, {outer}, {ch}, "
                    f"{inner}, &(const eq_rq){expr}, {em.ptr(out)}, "
                    f"{DTYPE_CODES[_dt(graph, out)]});"])


def _emit_hadd(em: _Emitter, node: Node) -> None:
    graph, a = em.graph, node.attrs
    n = len(node.inputs)

    def lst(key, default):
        v = a.get(key)
        return [default] * n if v is None else [int(t) for t in v]

    out = node.outputs[0]
    numel = int(np.prod(_shape(graph, out), dtype=np.int64))
    ptrs = ", ".join(f"(const void *){em.ptr(i)}" for i in node.inputs)
    dts = ", ".join(DTYPE_CODES[_dt(graph, i)] for i in node.inputs)
    body = [
        f"const void *const xs[{n}] = {{{ptrs}}};",
        f"static const int dts[{n}] = {{{dts}}};",
        f"static const int64_t im[{n}] = {{{', '.join(_c_int(v) for v in lst('in_mul', 1))}}};",
        f"static const int64_t ia[{n}] = {{{', '.join(_c_int(v) for v in lst('in_add', 0))}}};",
        f"static const int ish[{n}] = {{{', '.join(str(v) for v in lst('in_shift', 0))}}};",
        f"static const int irq[{n}] = {{{', '.join(str(v) for v in lst('in_rq', 0))}}};",
        f"const eq_hadd p = {{{n}, xs, dts, im, ia, ish, irq, {_c_int(int(a.get('out_mul', 1)))}, "
        f"{_c_int(int(a.get('out_add', 0)))}, {int(a.get('out_shift', 0))}, "
        f"{int(a.get('out_rq', 0))}, {_c_int(int(a['lo']))}, {_c_int(int(a['hi']))}}};",
        f"eq_harmonised_add(&p, {numel}, {em.ptr(out)}, {DTYPE_CODES[_dt(graph, out)]});",
    ]
    shifts = lst("in_shift", 0) + [int(a.get("out_shift", 0))]
    if any(not 0 <= s <= 62 for s in shifts):
        raise _unsupported(node, "shift outside [0, 62]")
    em.layer(node, body)


# -- pools -------------------------------------------------------------------------------
def _pool_geometry(graph: Graph, node: Node) -> dict:
    n, c, h, w = _nchw(graph, node, node.inputs[0])
    _, _, oh, ow = _nchw(graph, node, node.outputs[0])
    a = node.attrs
    if node.op.startswith("Global"):
        return dict(n=n, c=c, h=h, w=w, oh=1, ow=1, kh=h, kw=w, sh=1, sw=1, dh=1, dw=1,
                    pt=0, pl=0)
    kh, kw = a["kernel_shape"]
    return dict(n=n, c=c, h=h, w=w, oh=oh, ow=ow, kh=kh, kw=kw,
                **_window(a, h, w, oh, ow, kh, kw))


def _emit_pool(em: _Emitter, node: Node) -> None:
    graph = em.graph
    g = _pool_geometry(graph, node)
    x, out = node.inputs[0], node.outputs[0]
    shape = f"&(const eq_pool_shape){_shape_struct(g, 'pool')}"
    if node.attrs.get("layout") == "NHWC":
        _nhwc_module().emit_maxpool(em, node, shape)
        return
    if node.op in ("MaxPool", "GlobalMaxPool"):
        em.layer(node, [f"eq_maxpool({shape}, {em.ptr(x)}, {DTYPE_CODES[_dt(graph, x)]}, "
                        f"{em.ptr(out)});"])
        return
    count_pad = int(node.attrs.get("count_include_pad", 0))
    em.layer(node, [f"eq_avgpool({shape}, {em.ptr(x)}, {DTYPE_CODES[_dt(graph, x)]}, "
                    f"{count_pad}, {em.ptr(out)}, {DTYPE_CODES[_dt(graph, out)]});"])


# -- elementwise and data movement --------------------------------------------------------
def _numel(graph: Graph, name: str) -> int:
    return int(np.prod(_shape(graph, name), dtype=np.int64))


def _emit_clip(em: _Emitter, node: Node) -> None:
    graph = em.graph
    x, out = node.inputs[0], node.outputs[0]
    x_dt, y_dt = _dt(graph, x), _dt(graph, out)
    lo, hi = _clip_bounds(graph, node, x_dt)
    n = _numel(graph, out)
    if _is_float(x_dt):
        bounds = f"{_c_float(lo, 'double')}, {_c_float(hi, 'double')}"
        em.layer(node, [f"eq_clip_f({em.ptr(x)}, {DTYPE_CODES[x_dt]}, {n}, {bounds}, "
                        f"{em.ptr(out)}, {DTYPE_CODES[y_dt]});"])
        return
    em.layer(node, [f"eq_clip_i({em.ptr(x)}, {DTYPE_CODES[x_dt]}, {n}, {_c_int(int(lo))}, "
                    f"{_c_int(int(hi))}, {em.ptr(out)}, {DTYPE_CODES[y_dt]});"])


def _clip_bounds(graph: Graph, node: Node, x_dt) -> tuple:
    if _is_float(x_dt):
        lo, hi = -np.inf, np.inf
    else:
        info = np.iinfo(x_dt)
        lo, hi = int(info.min), int(info.max)
    if node.op == "Relu":
        return 0, hi
    a = node.attrs
    if "min" in a:
        lo = a["min"]
    if "max" in a:
        hi = a["max"]
    if len(node.inputs) > 1 and node.inputs[1]:
        lo = graph.const(node.inputs[1]).item()
    if len(node.inputs) > 2 and node.inputs[2]:
        hi = graph.const(node.inputs[2]).item()
    if not _is_float(x_dt):
        info = np.iinfo(x_dt)
        lo = max(int(np.ceil(lo)), int(info.min)) if lo > info.min else int(info.min)
        hi = min(int(np.floor(hi)), int(info.max)) if hi < info.max else int(info.max)
    return lo, hi


def _emit_sigmoid(em: _Emitter, node: Node) -> None:
    graph = em.graph
    x, out = node.inputs[0], node.outputs[0]
    em.layer(node, [f"eq_sigmoid({em.ptr(x)}, {DTYPE_CODES[_dt(graph, x)]}, {_numel(graph, out)}, "
                    f"{em.ptr(out)}, {DTYPE_CODES[_dt(graph, out)]});"])


def _strides6(shape: tuple, out_shape: tuple) -> list[int]:
    """Element strides of ``shape`` broadcast to ``out_shape`` (both padded to rank 6)."""
    shape = (1,) * (6 - len(shape)) + tuple(shape)
    out6 = (1,) * (6 - len(out_shape)) + tuple(out_shape)
    strides, acc = [0] * 6, 1
    for i in range(5, -1, -1):
        strides[i] = 0 if shape[i] == 1 and out6[i] != 1 else acc
        acc *= shape[i]
    return strides


def _emit_binary(em: _Emitter, node: Node) -> None:
    graph = em.graph
    out = node.outputs[0]
    out_shape = _shape(graph, out)
    op = {"Add": 0, "Sub": 1, "Mul": 2}[node.op]
    args = []
    for i, name in enumerate(node.inputs[:2]):
        v = graph.values[name]
        if v.is_const:
            cname = em.const(C_TYPES[np.dtype(v.dtype)], v.data, f"{node.name}_in{i}")
            p = cname
        else:
            p = em.ptr(name)
        st = _strides6(_shape(graph, name), out_shape)
        args.append((p, DTYPE_CODES[np.dtype(v.dtype)], st))
    o6 = (1,) * (6 - len(out_shape)) + out_shape
    body = [
        f"static const long sa[6] = {{{', '.join(map(str, args[0][2]))}}};",
        f"static const long sb[6] = {{{', '.join(map(str, args[1][2]))}}};",
        f"static const long sh[6] = {{{', '.join(map(str, o6))}}};",
        f"eq_binary({op}, {args[0][0]}, {args[0][1]}, sa, {args[1][0]}, {args[1][1]}, sb, sh, "
        f"{em.ptr(out)}, {DTYPE_CODES[_dt(graph, out)]});",
    ]
    em.layer(node, body)


def _emit_view(em: _Emitter, node: Node) -> None:
    graph = em.graph
    x, out = node.inputs[0], node.outputs[0]
    if em.offset(x) == em.offset(out):
        return  # a view: the planner aliased the bytes
    nbytes = _numel(graph, out) * _dt(graph, out).itemsize
    em.layer(node, [f"memmove({em.ptr(out)}, {em.ptr(x)}, {nbytes});"])


def _emit_concat(em: _Emitter, node: Node) -> None:
    graph = em.graph
    out = node.outputs[0]
    out_shape = _shape(graph, out)
    axis = int(node.attrs.get("axis", 0)) % len(out_shape)
    outer = int(np.prod(out_shape[:axis], dtype=np.int64))
    row = int(np.prod(out_shape[axis:], dtype=np.int64))
    y_dt = _dt(graph, out)
    body, col = [], 0
    for i, name in enumerate(node.inputs):
        shape = _shape(graph, name)
        inner = int(np.prod(shape[axis:], dtype=np.int64))
        v = graph.values[name]
        if v.is_const:
            src = em.const(C_TYPES[np.dtype(v.dtype)], v.data, f"{node.name}_in{i}")
        else:
            src = em.ptr(name)
        aliased = (not v.is_const and np.dtype(v.dtype) == y_dt
                   and em.offset(name) == em.offset(out) + col * y_dt.itemsize and outer == 1)
        if not aliased:
            body.append(f"eq_copy_block({src}, {DTYPE_CODES[np.dtype(v.dtype)]}, {outer}, {inner}, "
                        f"{em.ptr(out)}, {DTYPE_CODES[y_dt]}, {row}, {col});")
        col += inner
    if body:
        em.layer(node, body)


def _emit_gather(em: _Emitter, node: Node) -> None:
    graph = em.graph
    x, out = node.inputs[0], node.outputs[0]
    shape = _shape(graph, x)
    axis = int(node.attrs.get("axis", 0)) % len(shape)
    idx = np.asarray(graph.const(node.inputs[1])).astype(np.int64).reshape(-1)
    idx = np.where(idx < 0, idx + shape[axis], idx)
    if idx.size and (idx.min() < 0 or idx.max() >= shape[axis]):
        raise _unsupported(node, "index out of range")
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    iname = em.const("int64_t", idx, node.name + "_idx")
    em.layer(node, [f"eq_gather({em.ptr(x)}, {DTYPE_CODES[_dt(graph, x)]}, {outer}, {shape[axis]}, "
                    f"{inner}, {iname}, {idx.size}, {em.ptr(out)});"])


_EMIT = {
    **{op: _emit_view for op in VIEW_OPS},
    "Conv": _emit_conv,
    "ConvRequant": _emit_conv,
    "Gemm": _emit_gemm,
    "GemmRequant": _emit_gemm,
    "MatMul": _emit_gemm,
    "MatMulRequant": _emit_gemm,
    "RequantShift": _emit_requant,
    "HarmonisedAdd": _emit_hadd,
    "MaxPool": _emit_pool,
    "GlobalMaxPool": _emit_pool,
    "AveragePool": _emit_pool,
    "GlobalAveragePool": _emit_pool,
    "Relu": _emit_clip,
    "Clip": _emit_clip,
    "Sigmoid": _emit_sigmoid,
    "Add": _emit_binary,
    "Sub": _emit_binary,
    "Mul": _emit_binary,
    "Concat": _emit_concat,
    "LayoutConvert": lambda em, node: _nhwc_module().emit_layout_convert(em, node),
    "Gather": _emit_gather,
}


# ---------------------------------------------------------------------------------
# third-party formats (NEMO, onnxruntime QDQ/QOperator, QONNX): kernels in
# eq_thirdparty.c, the twins of reference/thirdparty.py. All read and write NCHW.
# ---------------------------------------------------------------------------------
QONNX_ROUND_CODES = {"ROUND": 0, "HALF_EVEN": 0, "CEIL": 1, "FLOOR": 2, "DOWN": 3, "UP": 4,
                     "HALF_UP": 5, "HALF_DOWN": 6}
DIV_ROUND_CODES = {"floor": 0, "trunc": 1, "half_even": 2}
# op -> indices of its inputs that must be constants (scales, zero points, constants)
_TP_PARAMS = {
    "QLinearRequant": (1, 2),
    "QLinearAddOrt": (1, 2, 4, 5, 6, 7),
    "QLinearAvgPoolOrt": (1, 2, 3, 4),
    "QuantizeLinear": (1, 2),
    "DequantizeLinear": (1, 2),
    "RequantDiv": (1, 2),
    "Quant": (1, 2, 3),
    "IntQuant": (1, 2, 3),
    "BipolarQuant": (1,),
    "Trunc": (1, 2, 3, 4, 5),
    "Cast": (),
    "Pad": (1, 2),
}
THIRDPARTY_OPS = frozenset(_TP_PARAMS)
# the layouts the kernels read and write: NCHW (the layout pass converts around them),
# except QLinearRequant, elementwise with per-channel constants, which follows its input
# (passes/layout.py FOLLOW_OPS) so an NHWC convolution's accumulator is not transposed
THIRDPARTY_LAYOUT = {op: ("NCHW", "NHWC") if op == "QLinearRequant" else ("NCHW",)
                     for op in THIRDPARTY_OPS}


def _static_data(graph: Graph, name: str) -> np.ndarray | None:
    """A constant's data; or, for the output of a quantiser of constants (QDQ and QONNX
    weights), the value prepare_graph's constant folding will give it; else None."""
    data = graph.const(name)
    if data is not None:
        return data
    from edgeq.engine.passes.fold import FOLDABLE, fold_node

    node = graph.producer(name)
    if node is None or node.op not in FOLDABLE:
        return None
    if not all(graph.values[i].is_const for i in node.inputs if i):
        return None
    return np.asarray(fold_node(graph, node)[node.outputs.index(name)])


def _tp_params(node: Node) -> list[str]:
    return [node.inputs[i] for i in _TP_PARAMS[node.op] if i < len(node.inputs) and node.inputs[i]]


def _tp_const_inputs(node: Node) -> set[str]:
    """Parameters; and the data of a quantiser that prepare_graph's constant folding
    (passes/fold.py) evaluates before the generator runs."""
    from edgeq.engine.passes.fold import FOLDABLE

    extra = {node.inputs[0]} if node.op in FOLDABLE else set()
    return set(_tp_params(node)) | extra


def _tp_check(graph: Graph, node: Node) -> None:
    """UnsupportedOpError for what eq_thirdparty.c does not implement."""
    for name in _tp_params(node):
        if graph.const(name) is None:
            raise _unsupported(node, f"input '{name}' must be a constant")
    x_dt, y_dt = _dt(graph, node.inputs[0]), _dt(graph, node.outputs[0])
    op, a = node.op, node.attrs
    if op in ("Quant", "IntQuant", "BipolarQuant", "Trunc"):
        if x_dt != np.float32 or y_dt != np.float32:
            raise _unsupported(node, "QONNX ops on float32 carriers only")
        if op in ("Quant", "IntQuant") and graph.const(node.inputs[3]).size != 1:
            raise _unsupported(node, "a per-channel bit width")
        if op == "Trunc" and any(graph.const(n).size != 1 for n in node.inputs[1:] if n):
            raise _unsupported(node, "per-channel Trunc constants")
        if op == "Trunc" and len(node.inputs) not in (5, 6):
            raise _unsupported(node, f"{len(node.inputs)} inputs")
    if op == "DequantizeLinear" and (a.get("block_size") or y_dt != np.float32):
        raise _unsupported(node, "blocked or non-float32 DequantizeLinear")
    if op == "QuantizeLinear" and (a.get("block_size") or a.get("output_dtype")):
        raise _unsupported(node, "blocked QuantizeLinear or output_dtype")
    if op == "QLinearAddOrt":
        out = _shape(graph, node.outputs[0])
        if _shape(graph, node.inputs[0]) != out or _shape(graph, node.inputs[3]) != out:
            raise _unsupported(node, "QLinearAdd with broadcasting")
    if op == "Pad":
        _tp_pad_geometry(graph, node)
    if op == "RequantDiv" and DIV_ROUND_CODES.get(a.get("rounding", "floor")) is None:
        raise _unsupported(node, f"rounding {a.get('rounding')!r}")
    if op in ("Quant", "IntQuant", "Trunc"):
        mode = str(a.get("rounding_mode", "ROUND" if op != "Trunc" else "FLOOR")).upper()
        if mode not in QONNX_ROUND_CODES:
            raise _unsupported(node, f"rounding_mode {mode!r}")
    if op in ("QLinearRequant", "QuantizeLinear", "DequantizeLinear", "RequantDiv", "Quant",
              "IntQuant", "BipolarQuant"):
        _tp_split(graph, node, _tp_params(node)[:2])


def _tp_axis_of(graph: Graph, node: Node, names: list[str], rank: int) -> int | None:
    """The one axis along which the constants ``names`` vary, numpy-broadcast against
    the output (QuantizeLinear/DequantizeLinear: their ``axis`` attribute); None if all
    are scalars."""
    sizes = [np.asarray(graph.const(n)) for n in names]
    if all(a.size == 1 for a in sizes):
        return None
    if node.op in ("QuantizeLinear", "DequantizeLinear"):
        return int(node.attrs.get("axis", 1)) % rank
    axes = set()
    for a in sizes:
        if a.size > 1:
            shape = (1,) * (rank - a.ndim) + a.shape
            axes |= {i for i, d in enumerate(shape) if d != 1}
    if len(axes) != 1:
        raise _unsupported(node, "constants that vary along several axes")
    return axes.pop()


def _tp_split(graph: Graph, node: Node, names: list[str]) -> tuple[int, int, int, int | None]:
    """(outer, channels, inner, axis) of the output seen as [outer][channels][inner]."""
    shape = _shape(graph, node.outputs[0])  # physical: [N, H, W, C] for an NHWC node
    nhwc = node.attrs.get("layout") == "NHWC" and len(shape) == 4
    logical = tuple(shape[p] for p in (0, 3, 1, 2)) if nhwc else shape
    axis = _tp_axis_of(graph, node, names, len(logical))
    if axis is None:
        return int(np.prod(shape, dtype=np.int64)), 1, 1, None
    for n in names:
        a = np.asarray(graph.const(n))
        if a.size not in (1, logical[axis]):
            raise _unsupported(node, f"constant '{n}' of shape {a.shape} against {logical}")
    if nhwc:  # constants keep their NCHW meaning: logical axis -> its physical position
        axis = (0, 2, 3, 1).index(axis)
    return (int(np.prod(shape[:axis], dtype=np.int64)), shape[axis],
            int(np.prod(shape[axis + 1:], dtype=np.int64)), axis)


def _tp_vec(em: _Emitter, node: Node, name: str | None, channels: int, ctype: str,
            default=0):
    """One value per channel (a scalar repeated) as a const C array; returns its name."""
    a = np.full(1, default) if name is None else np.asarray(em.graph.const(name)).reshape(-1)
    a = np.broadcast_to(a, (channels,)) if a.size == 1 else a
    dt = np.float32 if ctype == "float" else np.int64
    return em.const(ctype, a.astype(dt), f"{node.name}_{ctype}")


def _tp_scalar(graph: Graph, name: str | None, dtype=np.float32):
    return dtype(0) if not name else np.asarray(graph.const(name)).reshape(-1)[0].astype(dtype)


def _tp_f(v) -> str:
    return _c_float(float(np.float32(v)), "float")


def _tp_io(em: _Emitter, node: Node) -> tuple[str, str, str, str]:
    g = em.graph
    x, y = node.inputs[0], node.outputs[0]
    return em.ptr(x), DTYPE_CODES[_dt(g, x)], em.ptr(y), DTYPE_CODES[_dt(g, y)]


def _emit_qlinear_requant(em: _Emitter, node: Node) -> None:
    x, xc, y, yc = _tp_io(em, node)
    outer, ch, inner, _ = _tp_split(em.graph, node, node.inputs[1:3])
    m = _tp_vec(em, node, node.inputs[1], ch, "float")
    z = _tp_vec(em, node, node.inputs[2], ch, "int64_t")
    lo, hi = _c_int(int(node.attrs["lo"])), _c_int(int(node.attrs["hi"]))
    em.layer(node, [f"eq_qlinear_requant({x}, {xc}, {outer}, {ch}, {inner}, {m}, {z}, {lo}, "
                    f"{hi}, {y}, {yc});"])


def _emit_qlinear_add_ort(em: _Emitter, node: Node) -> None:
    g, ins = em.graph, node.inputs
    a, b, y = ins[0], ins[3], node.outputs[0]
    sa, sb, sc = (_tp_f(_tp_scalar(g, ins[i])) for i in (1, 4, 6))
    za, zb, zc = (_c_int(int(_tp_scalar(g, ins[i], np.int64))) for i in (2, 5, 7))
    lo, hi = _c_int(int(node.attrs["lo"])), _c_int(int(node.attrs["hi"]))
    em.layer(node, [f"eq_qlinear_add_ort({em.ptr(a)}, {DTYPE_CODES[_dt(g, a)]}, {em.ptr(b)}, "
                    f"{DTYPE_CODES[_dt(g, b)]}, {_numel(g, y)}, {sa}, {za}, {sb}, {zb}, {sc}, "
                    f"{zc}, {int(node.attrs.get('u8_shift', 0))}, {lo}, {hi}, {em.ptr(y)}, "
                    f"{DTYPE_CODES[_dt(g, y)]});"])


def _emit_qlinear_gavg_ort(em: _Emitter, node: Node) -> None:
    g, ins = em.graph, node.inputs
    x, xc, y, yc = _tp_io(em, node)
    shape = _shape(g, ins[0])
    nc, hw = shape[0] * shape[1], int(np.prod(shape[2:], dtype=np.int64))
    sx, sy = _tp_f(_tp_scalar(g, ins[1])), _tp_f(_tp_scalar(g, ins[3]))
    zx, zy = (_c_int(int(_tp_scalar(g, ins[i], np.int64))) for i in (2, 4))
    lo, hi = _c_int(int(node.attrs["lo"])), _c_int(int(node.attrs["hi"]))
    em.layer(node, [f"eq_qlinear_gavg_ort({x}, {xc}, {nc}, {hw}, {sx}, {zx}, {sy}, {zy}, {lo}, "
                    f"{hi}, {y}, {yc});"])


def _emit_quantize_linear(em: _Emitter, node: Node) -> None:
    from edgeq.engine.backends.reference.thirdparty import INT_TYPE_RANGES

    g = em.graph
    x, xc, y, yc = _tp_io(em, node)
    zp_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    zp_dt = np.dtype(np.uint8) if zp_name is None else np.asarray(g.const(zp_name)).dtype
    lo, hi = INT_TYPE_RANGES[zp_dt.name]
    outer, ch, inner, _ = _tp_split(g, node, _tp_params(node))
    s = _tp_vec(em, node, node.inputs[1], ch, "float")
    z = _tp_vec(em, node, zp_name, ch, "int64_t")
    em.layer(node, [f"eq_quantize_linear({x}, {xc}, {outer}, {ch}, {inner}, {s}, {z}, "
                    f"{_c_int(lo)}, {_c_int(hi)}, {y}, {yc});"])


def _emit_dequantize_linear(em: _Emitter, node: Node) -> None:
    x, xc, y, _ = _tp_io(em, node)
    zp_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    outer, ch, inner, _ = _tp_split(em.graph, node, _tp_params(node))
    s = _tp_vec(em, node, node.inputs[1], ch, "float")
    z = _tp_vec(em, node, zp_name, ch, "int64_t")
    em.layer(node, [f"eq_dequantize_linear({x}, {xc}, {outer}, {ch}, {inner}, {s}, {z}, "
                    f"(float *){y});"])


def _emit_requant_div(em: _Emitter, node: Node) -> None:
    x, xc, y, yc = _tp_io(em, node)
    a = node.attrs
    div = int(a.get("div", 1))
    if not 1 <= div < 2**62:
        raise _unsupported(node, f"div={div} outside [1, 2^62)")
    outer, ch, inner, _ = _tp_split(em.graph, node, node.inputs[1:3])
    m = _tp_vec(em, node, node.inputs[1], ch, "int64_t")
    ad = _tp_vec(em, node, node.inputs[2], ch, "int64_t")
    rnd = DIV_ROUND_CODES[a.get("rounding", "floor")]
    em.layer(node, [f"eq_requant_div({x}, {xc}, {outer}, {ch}, {inner}, {m}, {ad}, {_c_int(div)}, "
                    f"{rnd}, {_c_int(int(a['lo']))}, {_c_int(int(a['hi']))}, {y}, {yc});"])


def _emit_qonnx_quant(em: _Emitter, node: Node) -> None:
    from edgeq.engine.backends.reference.thirdparty import qonnx_bounds

    g, a = em.graph, node.attrs
    x, _, y, _ = _tp_io(em, node)
    outer, ch, inner, _ = _tp_split(g, node, node.inputs[1:3])
    s = _tp_vec(em, node, node.inputs[1], ch, "float")
    z = _tp_vec(em, node, node.inputs[2], ch, "float")
    bits = np.asarray(g.const(node.inputs[3]))
    signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 1))
    bipolar = int(bool(np.all(bits == 1) and signed))
    lo, hi = (np.asarray(v).reshape(-1)[0] for v in qonnx_bounds(signed, narrow, bits))
    mode = QONNX_ROUND_CODES[str(a.get("rounding_mode", "ROUND")).upper()]
    em.layer(node, [f"eq_qonnx_quant((const float *){x}, {outer}, {ch}, {inner}, {s}, {z}, "
                    f"{_tp_f(lo)}, {_tp_f(hi)}, {bipolar}, {mode}, (float *){y});"])


def _emit_qonnx_bipolar(em: _Emitter, node: Node) -> None:
    x, _, y, _ = _tp_io(em, node)
    outer, ch, inner, _ = _tp_split(em.graph, node, node.inputs[1:2])
    s = _tp_vec(em, node, node.inputs[1], ch, "float")
    em.layer(node, [f"eq_qonnx_bipolar((const float *){x}, {outer}, {ch}, {inner}, {s}, "
                    f"(float *){y});"])


def _emit_qonnx_trunc(em: _Emitter, node: Node) -> None:
    """The divisor and output constants are evaluated here with the reference's own
    float32 NumPy expressions (constant folding), the per-element work in C."""
    from edgeq.engine.backends.reference.thirdparty import qonnx_bounds

    g, a = em.graph, node.attrs
    x, _, y, _ = _tp_io(em, node)
    scale, zp, in_bits, *rest = (np.asarray(g.const(n)) for n in node.inputs[1:])
    clamp, lo, hi = 0, np.float32(0), np.float32(0)
    if len(rest) == 1:
        k = 2.0 ** (in_bits - rest[0])
        out_zp, out_scale = zp, scale
    else:
        out_s, out_bits = rest
        k = 2 ** np.round(np.log2(out_s / scale))
        signed = bool(1 if a.get("signed") is None else a["signed"])
        lo, hi = qonnx_bounds(signed, bool(a.get("narrow") or 0), out_bits)
        clamp, out_zp, out_scale = 1, zp / k, out_s
    mode = QONNX_ROUND_CODES[str(a.get("rounding_mode", "FLOOR")).upper()]
    vals = [_tp_f(np.asarray(v).reshape(-1)[0]) for v in (scale, zp, k)]
    tail = [_tp_f(np.asarray(v).reshape(-1)[0]) for v in (lo, hi)]
    outs = [_tp_f(np.asarray(v).reshape(-1)[0]) for v in (out_zp, out_scale)]
    em.layer(node, [f"eq_qonnx_trunc((const float *){x}, {_numel(g, node.outputs[0])}, "
                    f"{', '.join(vals)}, {clamp}, {', '.join(tail)}, {mode}, {', '.join(outs)}, "
                    f"(float *){y});"])


def _emit_cast(em: _Emitter, node: Node) -> None:
    x, xc, y, yc = _tp_io(em, node)
    em.layer(node, [f"eq_cast({x}, {xc}, {_numel(em.graph, node.outputs[0])}, {y}, {yc});"])


def _tp_pad_geometry(graph: Graph, node: Node) -> tuple[list[int], int]:
    """(pads top, left, bottom, right; fill) of a constant Pad of the spatial axes of a
    4-D tensor (what absorb_input_zero_point writes); UnsupportedOpError otherwise."""
    mode = node.attrs.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    shape = _shape(graph, node.inputs[0])
    if mode != "constant" or len(shape) != 4 or len(node.inputs) < 2 or "axes" in node.attrs:
        raise _unsupported(node, "only a constant Pad of a 4-D tensor")
    if len(node.inputs) > 3 and node.inputs[3]:
        raise _unsupported(node, "Pad with axes")
    pads = [int(p) for p in np.ravel(graph.const(node.inputs[1]))]
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
        raise _unsupported(node, f"pads {pads}: only non-negative pads of H and W")
    value = _tp_scalar(graph, node.inputs[2] if len(node.inputs) > 2 else None, np.float64)
    if value != int(value):
        raise _unsupported(node, f"fill value {value} is not an integer")
    return [pads[2], pads[3], pads[6], pads[7]], int(value)


def _emit_pad(em: _Emitter, node: Node) -> None:
    x, xc, y, _ = _tp_io(em, node)
    (pt, pl, pb, pr), value = _tp_pad_geometry(em.graph, node)
    n, c, h, w = _shape(em.graph, node.inputs[0])
    em.layer(node, [f"eq_pad_const({x}, {xc}, {n * c}, {h}, {w}, {pt}, {pl}, {pb}, {pr}, "
                    f"{_c_int(value)}, {y});"])


THIRDPARTY_EMIT = {
    "Pad": _emit_pad,
    "QLinearRequant": _emit_qlinear_requant,
    "QLinearAddOrt": _emit_qlinear_add_ort,
    "QLinearAvgPoolOrt": _emit_qlinear_gavg_ort,
    "QuantizeLinear": _emit_quantize_linear,
    "DequantizeLinear": _emit_dequantize_linear,
    "RequantDiv": _emit_requant_div,
    "Quant": _emit_qonnx_quant,
    "IntQuant": _emit_qonnx_quant,
    "BipolarQuant": _emit_qonnx_bipolar,
    "Trunc": _emit_qonnx_trunc,
    "Cast": _emit_cast,
}
SUPPORTED_OPS = SUPPORTED_OPS | THIRDPARTY_OPS
_EMIT.update(THIRDPARTY_EMIT)
