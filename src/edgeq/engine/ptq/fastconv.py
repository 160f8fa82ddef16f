"""Float kernels for the search (calibration, FL searches, exploration): the ONNX ops of
a float network computed by vectorised NumPy in the inputs' float dtype.

The reference kernels are the specification and compute a convolution as im2col plus
one batched matmul per group: exact for integers, but slow for a depthwise layer (one
tiny matmul per channel) and a pointwise one (a copy of the input). Here a depthwise
2-D convolution is a sum over its k·k taps of strided slices times a per-channel weight,
a pointwise convolution (1×1, stride 1, no pads) one BLAS matmul, and anything else falls
back to the reference kernel. Float arithmetic only: results equal the reference's up to
float rounding (summation order), which the searches tolerate and the exactness
contract (docs/ptq.md) does not rely on — the integer IR is checked by the reference
kernels.
"""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference._window import geometry, pad_spatial
from edgeq.engine.backends.reference.registry import KERNELS


def conv(x, w, b=None, **attrs):
    """ONNX Conv in float (see the module docstring for the fast cases)."""
    if x.ndim == 4 and np.issubdtype(x.dtype, np.floating) and \
            attrs.get("auto_pad", "NOTSET") in ("NOTSET", b"NOTSET"):
        y = _fast(x, w, attrs)
        if y is not None:
            return y if b is None else y + b.astype(y.dtype).reshape(1, -1, 1, 1)
    return KERNELS["Conv"].fn(x, w, b, **attrs)


def _fast(x: np.ndarray, w: np.ndarray, attrs: dict) -> np.ndarray | None:
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    group = int(attrs.get("group", 1))
    if any(d != 1 for d in (attrs.get("dilations") or (1, 1))):
        return None
    w = w.astype(x.dtype, copy=False)
    g = geometry("Conv", (h, wd), (kh, kw), attrs.get("strides"), None, attrs.get("pads"))
    if group == 1 and (kh, kw) == (1, 1) and g.strides == (1, 1) and not any(
            g.pads_begin + g.pads_end):
        return np.matmul(w.reshape(m, c), x.reshape(n, c, h * wd)).reshape(n, m, h, wd)
    if group == c == m and cg == 1:  # depthwise
        xp = pad_spatial(x, g, 0)
        (oh, ow), (sh, sw) = g.out, g.strides
        y = np.zeros((n, c, oh, ow), x.dtype)
        for i in range(kh):
            for j in range(kw):
                tap = xp[:, :, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw]
                y += tap * w[:, 0, i, j].reshape(1, c, 1, 1)
        return y
    return None


BLAS_THREADS = 1


def blas_limited():
    """A context in which BLAS runs on BLAS_THREADS threads. The searches make many small
    matmuls (a pointwise layer on a few samples): OpenBLAS's worker threads then cost more
    than they give — measured on 2 loaded cores, a 32→64 pointwise layer at 60×60 on 32
    samples took 0.23 CPU s with the default threads and 0.02 with one."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=BLAS_THREADS, user_api="blas")


def kernel(op: str):
    """The function computing ``op`` on float inputs: the fast Conv, else the reference's."""
    return conv if op == "Conv" else KERNELS[op].fn


def run_float(graph, feeds: dict, observe=None, dtype=np.float32) -> dict:
    """The float graph on ``feeds`` with these kernels (``observe(name, array)`` per node
    output, as the reference executor's hook); float constants are cast to ``dtype``."""
    env = {n: np.asarray(feeds[n], dtype) for n in graph.inputs}
    for v in graph.constants():
        floating = np.issubdtype(v.data.dtype, np.floating)
        env[v.name] = v.data.astype(dtype, copy=False) if floating else v.data
    for node in graph.nodes:
        args = [env[i] if i else None for i in node.inputs]
        while args and args[-1] is None:
            args.pop()
        attrs = dict(node.attrs)
        if KERNELS[node.op].opset_aware:
            attrs["opset"] = graph.opset
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            res = kernel(node.op)(*args, **attrs)
        res = res if isinstance(res, tuple) else (res,)
        for name, a in zip(node.outputs, res, strict=False):
            if name:
                env[name] = a
                if observe is not None:
                    observe(name, a)
    return {n: env[n] for n in graph.outputs}
