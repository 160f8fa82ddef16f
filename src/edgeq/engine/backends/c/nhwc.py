"""C emitters for the layout pass's nodes: NHWC 8-bit convolutions and LayoutConvert.

Kernel choice for a ``Conv``/``ConvRequant`` with ``layout="NHWC"`` (the layout pass
puts only those :func:`generator.nhwc_conv_ok` accepts there):

- depthwise -> ``eq_dw_nhwc`` (weights ``[kh*kw][c]`` int16, channel loop innermost);
- 1x1, stride 1, no padding -> ``eq_gemm_nhwc`` straight on the input tensor (pixels x
  channels is already the GEMM's row-major A);
- any other group-1 convolution -> ``eq_conv_nhwc`` (im2col, taps (ky, kx, c)).

Threads: the kernels run on the persistent pool of ``eq_threads.c`` (GEMM and the
vector depthwise in 4 claimed shares per thread, so a preempted worker holds back little;
a stalled join sends the next regions to the caller alone); a layer under
:data:`MIN_MACS_PER_THREAD` multiply-adds per thread runs on one.
"""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.c import generator as gen
from edgeq.engine.ir import Node

# A wake-up of the spinning pool costs ~1-2 us (measured); below ~0.1M MACs per thread
# (~5 us of depthwise work, less of pointwise) splitting does not pay.
MIN_MACS_PER_THREAD = 100_000


def layer_threads(em, macs: int) -> int:
    return max(1, min(em.threads, macs // MIN_MACS_PER_THREAD))


def emit_conv(em, node: Node) -> None:
    graph = em.graph
    if not gen.nhwc_conv_ok(graph, node):
        raise gen._unsupported(node, "NHWC only for the 8-bit depthwise / group-1 path")
    g = gen._conv_geometry(graph, node)
    x, out = node.inputs[0], node.outputs[0]
    xc, yc = gen.DTYPE_CODES[gen._dt(graph, x)], gen.DTYPE_CODES[gen._dt(graph, out)]
    w = graph.const(node.inputs[1]).astype(np.int64)
    m, c, kh, kw = g["m"], g["c"], g["kh"], g["kw"]
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    bias = graph.const(b_name).astype(np.int64) if b_name else np.zeros(m, np.int64)
    rq = gen._rq_expr(em, node, m, 4, 1)  # mul/add keep their NCHW (per-channel) meaning
    shape = f"&(const eq_conv_shape){gen._shape_struct(g, 'conv')}"
    pixels = g["n"] * g["oh"] * g["ow"]
    if g["group"] > 1:  # depthwise (nhwc_conv_ok): no +128 shift, signed products
        wn = em.const("int16_t", w.reshape(m, kh * kw).T, node.name + "_w")
        bn = em.const("int32_t", bias, node.name + "_b")
        t = layer_threads(em, pixels * m * kh * kw)
        em.need("acc32", t * c)
        em.layer(node, [f"eq_dw_nhwc({shape}, {em.ptr(x)}, {xc}, {wn}, {bn}, {rq}, "
                        f"{em.ptr(out)}, {yc}, s_acc32, {t});"])
        return
    # taps in (ky, kx, c) order: the order of an NHWC im2col row
    wt = w.transpose(0, 2, 3, 1).reshape(m, kh * kw * c)
    k = wt.shape[1]
    kp = -(-k // 4) * 4
    bias32 = bias - 128 * wt.sum(axis=1) if xc == "EQ_S8" else bias
    wn = em.const("int8_t", gen.pack_q8(wt, 1, kp), node.name + "_w")
    bn = em.const("int32_t", bias32, node.name + "_b")
    t = layer_threads(em, pixels * m * k)
    if _pointwise(g):
        em.layer(node, [f"eq_gemm_nhwc({pixels}, {m}, {k}, {em.ptr(x)}, {xc}, {wn}, {kp}, "
                        f"{bn}, {rq}, {em.ptr(out)}, {yc}, {t});"])
        return
    em.need("cols8", t * nhwc_block(kp) * kp)
    em.layer(node, [f"eq_conv_nhwc({shape}, {em.ptr(x)}, {xc}, {wn}, {kp}, {bn}, {rq}, "
                    f"{em.ptr(out)}, {yc}, s_cols8, {t});"])


def _pointwise(g: dict) -> bool:
    return (g["kh"] == g["kw"] == 1 and g["sh"] == g["sw"] == 1 and g["pt"] == g["pl"] == 0
            and g["oh"] == g["h"] and g["ow"] == g["w"])


def nhwc_block(kp: int) -> int:
    """Mirror of eq_nhwc_block() in eq_nhwc.c (im2col rows per block)."""
    pb = 32768 // max(kp, 1)
    return 4 if pb < 4 else pb & ~3


def emit_gemm_q8(em, node: Node, rows: int, cols: int, k: int, wi: np.ndarray,
                 bias32: np.ndarray, rq: str, a: str, ac: str, y: str, yc: str) -> None:
    """An 8-bit Gemm/MatMul on eq_gemm_nhwc (a is rows x k, row-major, u8/s8)."""
    kp = -(-k // 4) * 4
    wn = em.const("int8_t", gen.pack_q8(wi, 1, kp), node.name + "_w")
    bn = em.const("int32_t", bias32, node.name + "_b")
    t = layer_threads(em, rows * cols * k)
    em.layer(node, [f"eq_gemm_nhwc({rows}, {cols}, {k}, {a}, {ac}, {wn}, {kp}, {bn}, {rq}, "
                    f"{y}, {yc}, {t});"])


def emit_layout_convert(em, node: Node) -> None:
    graph = em.graph
    x, out = node.inputs[0], node.outputs[0]
    shape = gen._shape(graph, x)
    perm = [int(p) for p in node.attrs["perm"]]
    if len(shape) != 4 or sorted(perm) != [0, 1, 2, 3]:
        raise gen._unsupported(node, f"LayoutConvert of rank {len(shape)} / perm {perm}")
    if em.offset(x) == em.offset(out):
        return  # the byte order is kept (e.g. C == 1): the planner aliased the bytes
    es = gen._dt(graph, x).itemsize
    em.layer(node, [f"static const int sh[4] = {{{', '.join(map(str, shape))}}};",
                    f"static const int pm[4] = {{{', '.join(map(str, perm))}}};",
                    f"eq_transpose4({em.ptr(x)}, {es}, sh, pm, {em.ptr(out)});"])


def maxpool_ok(graph, node: Node) -> bool:
    """An 8-bit 2-D MaxPool without indices output: eq_maxpool_nhwc."""
    if node.op != "MaxPool" or (len(node.outputs) > 1 and node.outputs[1]):
        return False
    v = graph.values[node.inputs[0]]
    return (v.shape is not None and len(v.shape) == 4 and v.dtype is not None
            and np.dtype(v.dtype) in (np.dtype(np.uint8), np.dtype(np.int8))
            and not node.attrs.get("storage_order", 0))


def emit_maxpool(em, node: Node, shape: str) -> None:
    graph = em.graph
    if not maxpool_ok(graph, node):
        raise gen._unsupported(node, "NHWC pooling only for an 8-bit MaxPool")
    x, out = node.inputs[0], node.outputs[0]
    em.layer(node, [f"eq_maxpool_nhwc({shape}, {em.ptr(x)}, "
                    f"{gen.DTYPE_CODES[gen._dt(graph, x)]}, {em.ptr(out)});"])
