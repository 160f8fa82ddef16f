"""The armcl backend's part of a generated program: the layers ACL runs exactly.

ACL 20.08 gives S32 products only through ``NEGEMMLowpMatrixMultiplyCore`` with output
stage NONE (DESIGN §7, ``reference/deployment-backends.md`` §C), so a layer is an
armcl layer when it is one integer GEMM: a Conv with ``group == 1`` (k×k through our
im2col; a 1×1 stride-1 unpadded one reads NHWC u8 activations in place), a Gemm or a
MatMul with constant weights. Both operands go to ACL as u8 (+128 with offset -128 for
signed values) so ACL takes its exact u8·u8 kernel; bias and RequantShift run in our
own C code (``kernels/eqa_kernels.c``) on the S32 result, so the layer is bit-exact.

:func:`why_not` says why a node cannot run exactly (``None`` when it can); the code of
a layer goes into the C backend's ``_Emitter`` so both backends share one arena, one
``weights.c`` and one call sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeq.engine.backends.c import generator as cgen
from edgeq.engine.ir import Graph, Node
from edgeq.engine.passes.layout import NHWC, layout_of, logical_shape
from edgeq.errors import UnsupportedOpError

CONV_OPS = frozenset({"Conv", "ConvRequant"})
GEMM_OPS = frozenset({"Gemm", "GemmRequant", "MatMul", "MatMulRequant"})
ARMCL_OPS = CONV_OPS | GEMM_OPS
# u8·u8 sums in ACL's 32-bit lanes: K·255² < 2^31 keeps even the raw sums exact.
MAX_TAPS = (2**31 - 1) // (255 * 255)
EIGHT_BIT = (np.dtype(np.uint8), np.dtype(np.int8))


def supports(graph: Graph, node: Node) -> bool:
    """True when ACL can run ``node`` exactly (the per-node predicate of BackendSpec)."""
    return why_not(graph, node) is None


def why_not(graph: Graph, node: Node) -> str | None:
    """Why ACL cannot run ``node`` bit-exactly, or None when it can."""
    if node.op not in ARMCL_OPS:
        return f"op {node.op} has no exact ACL path (only Conv, Gemm and MatMul)"
    x = graph.values.get(node.inputs[0])
    if x is None or x.dtype is None or np.dtype(x.dtype) not in EIGHT_BIT:
        return "the input is not an 8-bit integer tensor"
    y = graph.values.get(node.outputs[0])
    if y is None or y.dtype is None or not np.issubdtype(np.dtype(y.dtype), np.integer):
        return "the output is not an integer tensor"
    w = graph.const(node.inputs[1])
    if w is None:
        return "the weights are not constant"
    if not _integral(w) or w.size == 0 or w.min() < -128 or w.max() > 127:
        return "the weights are not integers in [-128, 127]"
    if node.op in CONV_OPS:
        reason = _conv_reason(graph, node, w)
    else:
        reason = _gemm_reason(graph, node)
    if reason:
        return reason
    bias = _bias(graph, node)
    if bias is not None and not _integral(bias):
        return "the bias is not integral"
    if _taps(graph, node) > MAX_TAPS:
        return f"{_taps(graph, node)} taps per output exceed {MAX_TAPS} (u8·u8 sums in int32)"
    return _requant_reason(graph, node)


def _integral(a: np.ndarray) -> bool:
    a = np.asarray(a)
    return np.issubdtype(a.dtype, np.integer) or bool(np.all(np.isfinite(a) & (a == np.floor(a))))


def _conv_reason(graph: Graph, node: Node, w: np.ndarray) -> str | None:
    if w.ndim != 4 or len(logical_shape(graph, node, node.inputs[0])) != 4:
        return "only 2-D convolutions"
    if int(node.attrs.get("group", 1)) != 1:
        return "grouped/depthwise convolution (ACL has no S32 output for it)"
    return None


def _gemm_reason(graph: Graph, node: Node) -> str | None:
    a = node.attrs
    if node.op.startswith("Gemm"):
        scaled = float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0
        if a.get("transA", 0) or scaled:
            return "Gemm with transA or alpha/beta != 1"
        if len(node.inputs) > 2 and node.inputs[2] and node.op == "Gemm" and graph.const(
                node.inputs[2]) is None:
            return "Gemm with a non-constant C"
    if graph.const(node.inputs[1]).ndim != 2:
        return "the weights are not a matrix"
    try:
        _gemm_matrix(graph, node)
    except ValueError as exc:
        return str(exc)
    return None


def _requant_reason(graph: Graph, node: Node) -> str | None:
    """The requantisation must be per output channel and fit int64 with the bias folded in."""
    try:
        mul, add, shift, lo, hi = requant_params(graph, node)
    except ValueError as exc:
        return str(exc)
    if not 0 <= shift <= 62:
        return f"shift={shift} outside [0, 62]"
    acc = _taps(graph, node) * 255 * 128
    worst = int(np.abs(mul).max(initial=0)) * acc + int(np.abs(add).max(initial=0))
    if worst >= 2**63:
        return "acc·mul + add (bias folded in) may overflow int64"
    return None


# ---------------------------------------------------------------------------------
# the GEMM of a layer
# ---------------------------------------------------------------------------------
def _taps(graph: Graph, node: Node) -> int:
    w = graph.const(node.inputs[1])
    if node.op in CONV_OPS:
        return int(np.prod(w.shape[1:]))
    return int(_gemm_matrix(graph, node).shape[0])


def _bias(graph: Graph, node: Node) -> np.ndarray | None:
    if node.op.startswith("MatMul") or len(node.inputs) < 3 or not node.inputs[2]:
        return None
    return graph.const(node.inputs[2])


def _gemm_matrix(graph: Graph, node: Node) -> np.ndarray:
    """The weights as ACL's B matrix [k][n]."""
    w = graph.const(node.inputs[1])
    if node.op.startswith("Gemm") and node.attrs.get("transB", 0):
        w = w.T
    k = cgen._shape(graph, node.inputs[0])[-1]
    if w.shape[0] != k:
        raise ValueError(f"operand shapes {cgen._shape(graph, node.inputs[0])} and {w.shape}")
    return w


def weight_matrix(graph: Graph, node: Node) -> np.ndarray:
    """B [k][n] as ACL's u8 operand (w + 128); conv taps are ordered (ky, kx, c)."""
    w = graph.const(node.inputs[1]).astype(np.int64)
    if node.op in CONV_OPS:
        m = w.shape[0]
        b = w.transpose(2, 3, 1, 0).reshape(-1, m)
    else:
        b = _gemm_matrix(graph, node).astype(np.int64)
    return (b + 128).astype(np.uint8)


def requant_params(graph: Graph, node: Node):
    """(mul[n], add[n] with the bias folded in, shift, lo, hi) of the layer's output
    stage: y = clip(floor((acc·mul + add) / 2^shift)) with acc = Σ x·w (no bias)."""
    out = node.outputs[0]
    shape = logical_shape(graph, node, out)
    n = shape[1] if node.op in CONV_OPS else shape[-1]
    axis = 1 if node.op in CONV_OPS else len(shape) - 1
    bias = _bias(graph, node)
    if bias is not None:
        if bias.size not in (1, n):
            raise ValueError(f"bias of shape {bias.shape} is not per output channel")
        bias = np.broadcast_to(np.asarray(bias).reshape(-1), (n,)).astype(np.int64)
    else:
        bias = np.zeros(n, dtype=np.int64)
    if node.op.endswith("Requant"):
        nin = len(node.inputs)
        vec = []
        for name in node.inputs[nin - 2:]:
            data = graph.const(name)
            if data is None or not _integral(data):
                raise ValueError("requantisation constants are not integer constants")
            vec.append(cgen._channel_vector(data, n, len(shape), axis))
        mul, add = vec
        shift = int(node.attrs.get("shift", 0))
        lo, hi = int(node.attrs["lo"]), int(node.attrs["hi"])
    else:
        mul, add, shift = np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64), 0
        info = np.iinfo(np.dtype(graph.values[out].dtype))
        lo, hi = int(info.min), int(info.max)
    if any(abs(int(m)) * abs(int(b)) >= 2**62 for m, b in zip(mul, bias, strict=True)):
        raise ValueError("mul·bias does not fit int64")
    return mul, add + mul * bias, shift, lo, hi


def conv_geometry(graph: Graph, node: Node) -> dict:
    """Logical (NCHW-order) geometry of a convolution, whatever layout it computes in."""
    n, c, h, w = logical_shape(graph, node, node.inputs[0])
    _, m, oh, ow = logical_shape(graph, node, node.outputs[0])
    kh, kw = graph.const(node.inputs[1]).shape[2:]
    a = node.attrs
    sh, sw = a.get("strides") or (1, 1)
    dh, dw = a.get("dilations") or (1, 1)
    pt, pl = (a.get("pads") or (0, 0, 0, 0))[:2]
    auto = a.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pt = cgen._same_begin(h, oh, kh, sh, dh, auto)
        pl = cgen._same_begin(w, ow, kw, sw, dw, auto)
    elif auto == "VALID":
        pt = pl = 0
    return dict(n=n, c=c, h=h, w=w, m=m, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw, dh=dh,
                dw=dw, pt=pt, pl=pl)


# ---------------------------------------------------------------------------------
# emission
# ---------------------------------------------------------------------------------
@dataclass
class ArmclLayers:
    """What the armcl layers add to model.c: GEMM handles and their creation."""

    creates: list[str] = field(default_factory=list)
    fused_conversions: int = 0  # NCHW convs: the transposes im2col / requant do

    def prelude(self) -> list[str]:
        """model.c lines after the arena: handles, and eqa_init() creating them all."""
        n = len(self.creates)
        if not n:
            return []
        lines = ['#include "eqa_kernels.h"', f"static eqa_gemm *eqa_g[{n}];",
                 "static void eqa_init(void) {", "    static int done;",
                 "    if (done) return;", "    done = 1;"]
        lines += [f"    eqa_g[{i}] = {c};" for i, c in enumerate(self.creates)]
        return lines + ["}"]


def emit_layer(em: cgen._Emitter, acl: ArmclLayers, node: Node) -> None:
    """Append ``node``'s armcl layer to ``em`` (its handle creation to ``acl``). A conv
    the layout pass put in NHWC reads and writes NHWC (a 1×1 stride-1 u8 one reads the
    arena in place); an NCHW one transposes in its im2col and its requantisation."""
    graph = em.graph
    reason = why_not(graph, node)
    if reason:
        raise UnsupportedOpError(node.op, node.name, detail=f"armcl backend: {reason}")
    x, out = node.inputs[0], node.outputs[0]
    x_signed = int(np.dtype(graph.values[x].dtype) == np.dtype(np.int8))
    bmat = weight_matrix(graph, node)
    k, n = bmat.shape
    mul, add, shift, lo, hi = requant_params(graph, node)
    mn = em.const("int64_t", mul, node.name + "_mul")
    an = em.const("int64_t", add, node.name + "_add")
    rq = f"&(const eq_rq){{{mn}, {an}, {shift}, {cgen._c_int(lo)}, {cgen._c_int(hi)}}}"
    bn = em.const("uint8_t", bmat, node.name + "_b")
    h = f"eqa_g[{len(acl.creates)}]"
    y_dt = cgen.DTYPE_CODES[np.dtype(graph.values[out].dtype)]
    if node.op in CONV_OPS:
        g = conv_geometry(graph, node)
        imgs, positions = g["n"], g["oh"] * g["ow"]
        in_nhwc = out_nhwc = layout_of(node) == NHWC
        acl.fused_conversions += 2 * int(not in_nhwc)
        direct = (in_nhwc and not x_signed and g["kh"] == g["kw"] == 1 and g["sh"] == g["sw"] == 1
                  and g["pt"] == g["pl"] == 0 and (g["oh"], g["ow"]) == (g["h"], g["w"]))
        a_ptr = f"(const uint8_t *){em.ptr(x)}" if direct else "NULL"
        acl.creates.append(
            f"eqa_gemm_create({imgs * positions}, {n}, {k}, {a_ptr}, {x_signed}, {bn})")
        geo = ", ".join(str(int(g[key])) for key in ("c", "h", "w", "oh", "ow", "kh", "kw", "sh",
                                                      "sw", "dh", "dw", "pt", "pl"))
        chw = g["c"] * g["h"] * g["w"]
        body = [
            "eqa_init();",
            f"uint8_t *a = eqa_gemm_a({h});",
            f"const size_t as = eqa_gemm_a_stride({h});",
            f"if (a != (uint8_t *){em.ptr(x)})",
            f"    for (int i = 0; i < {imgs}; i++)",
            f"        eqa_im2col((const uint8_t *){em.ptr(x)} + (size_t)i * {chw}, {x_signed}, "
            f"{int(in_nhwc)}, &(const eqa_conv){{{geo}}}, a + (size_t)i * {positions} * as, as);",
            f"eqa_gemm_run({h});",
            f"eqa_requant(eqa_gemm_d({h}), eqa_gemm_d_stride({h}), {imgs}, {positions}, {n}, "
            f"{rq}, {int(out_nhwc)}, {em.ptr(out)}, {y_dt});",
        ]
    else:
        rows = int(np.prod(cgen._shape(graph, x)[:-1], dtype=np.int64))
        a_ptr = "NULL" if x_signed else f"(const uint8_t *){em.ptr(x)}"
        acl.creates.append(f"eqa_gemm_create({rows}, {n}, {k}, {a_ptr}, {x_signed}, {bn})")
        body = [
            "eqa_init();",
            f"uint8_t *a = eqa_gemm_a({h});",
            f"if (a != (uint8_t *){em.ptr(x)})",
            f"    eqa_copy_rows({em.ptr(x)}, {x_signed}, {rows}, {k}, a, eqa_gemm_a_stride({h}));",
            f"eqa_gemm_run({h});",
            f"eqa_requant(eqa_gemm_d({h}), eqa_gemm_d_stride({h}), 1, {rows}, {n}, {rq}, 1, "
            f"{em.ptr(out)}, {y_dt});",
        ]
    em.layer(node, body)
