"""Run one ONNX node in onnxruntime (the peer the reference kernels are compared with).

Float tolerance used by the kernel tests for float32 results: rtol=1e-5, atol=1e-6
(:func:`assert_matches`); integer and shape results must match exactly, dtype included.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import helper

from edgeq.engine.backends.reference import KERNELS

RTOL, ATOL = 1e-5, 1e-6


def _ir_version(opset: int) -> int:
    # The IR version each opset first shipped with; onnxruntime refuses newer IR versions.
    return 7 if opset <= 12 else 8 if opset <= 18 else 9 if opset <= 20 else 10


def _elem(dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def run_ort(op, inputs, attrs=None, opset=17, out_dtypes=None, n_outputs=1):
    """Outputs of a single ``op`` node on ``inputs`` (``None`` = omitted optional input).

    ``out_dtypes`` declares the output element types (default: the first input's).
    """
    attrs = attrs or {}
    names = ["" if a is None else f"in{i}" for i, a in enumerate(inputs)]
    while names and not names[-1]:
        names.pop()
    outs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outs, **attrs)
    feeds = {n: a for n, a in zip(names, inputs, strict=False) if n}
    first = next((a for a in inputs if a is not None), np.zeros(0, np.float32))
    out_dtypes = out_dtypes or [first.dtype] * n_outputs
    graph = helper.make_graph(
        [node],
        "single",
        [helper.make_tensor_value_info(n, _elem(a.dtype), a.shape) for n, a in feeds.items()],
        [
            helper.make_tensor_value_info(o, _elem(d), None)
            for o, d in zip(outs, out_dtypes, strict=True)
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=_ir_version(opset)
    )
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def run_kernel(op, inputs, attrs=None, opset=17):
    """Call the registered kernel the way the executor does (trailing Nones dropped)."""
    entry = KERNELS[op]
    args = list(inputs)
    while args and args[-1] is None:
        args.pop()
    kwargs = dict(attrs or {})
    if entry.opset_aware:
        kwargs["opset"] = opset
    out = entry.fn(*args, **kwargs)
    return list(out) if isinstance(out, tuple) else [out]


def assert_matches(got, expected, rtol=RTOL, atol=ATOL):
    """Same shape and dtype; floats within tolerance, everything else exactly equal."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    if np.issubdtype(expected.dtype, np.floating):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(got, expected)


def check_against_ort(op, inputs, attrs=None, opset=17, out_dtypes=None, n_outputs=1):
    """Kernel output(s) equal onnxruntime's (floats within RTOL/ATOL)."""
    expected = run_ort(op, inputs, attrs, opset, out_dtypes, n_outputs)
    got = run_kernel(op, inputs, attrs, opset)
    assert len(got) >= n_outputs
    for g, e in zip(got, expected, strict=False):
        assert_matches(g, e)


def dyadic(rng, shape, dtype=np.float32, scale=16, high=64):
    """Random multiples of 1/scale in [-high/scale, high/scale): sums and products of a
    few of them are exact in float32, so accumulation order cannot cause differences."""
    return (rng.integers(-high, high, shape) / scale).astype(dtype)
