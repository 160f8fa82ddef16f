"""Tensor creation and conversion: Constant, Cast."""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference._common import is_int, reject_unknown
from edgeq.engine.backends.reference.registry import register
from edgeq.errors import IntegerOverflowError

# ONNX TensorProto.DataType codes of the numeric types NumPy holds natively.
ONNX_DTYPES = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    4: np.uint16,
    5: np.int16,
    6: np.int32,
    7: np.int64,
    9: np.bool_,
    10: np.float16,
    11: np.float64,
    12: np.uint32,
    13: np.uint64,
}


@register("Constant")
def constant(**attrs):
    """ONNX Constant: exactly one of ``value`` (array), ``value_float(s)`` (float32),
    ``value_int(s)`` (int64), ``value_string(s)`` (object array).

    No arithmetic: no rounding, no overflow. ``sparse_value`` is not supported.
    """
    kinds = {
        "value": lambda v: np.asarray(v),
        "value_float": lambda v: np.array(v, dtype=np.float32),
        "value_floats": lambda v: np.array(v, dtype=np.float32).reshape(-1),
        "value_int": lambda v: np.array(v, dtype=np.int64),
        "value_ints": lambda v: np.array(v, dtype=np.int64).reshape(-1),
        "value_string": lambda v: np.array(v, dtype=object),
        "value_strings": lambda v: np.array(list(v), dtype=object),
    }
    given = {k: v for k, v in attrs.items() if k in kinds}
    reject_unknown("Constant", {k: v for k, v in attrs.items() if k not in kinds})
    if len(given) != 1:
        raise ValueError(f"Constant: needs exactly one value attribute, got {sorted(given)}")
    ((key, v),) = given.items()
    return kinds[key](v)


@register("Cast")
def cast(x, *, to=None, saturate=1, **extra):
    """ONNX Cast to the TensorProto type ``to`` (numeric types and bool).

    To an integer type: float values are rounded toward zero (C/ONNX truncation);
    a value outside the target range (or NaN/inf) raises IntegerOverflowError instead
    of wrapping. To a float type: IEEE round-to-nearest-even, overflow gives inf. To
    bool: nonzero is true. ``saturate`` only concerns float8 types (unsupported) and
    is ignored.
    """
    reject_unknown("Cast", extra)
    if to not in ONNX_DTYPES:
        raise ValueError(f"Cast: target type {to!r} is not supported (numeric and bool only)")
    target = np.dtype(ONNX_DTYPES[to])
    if x.dtype == object or x.dtype.kind in "USV":
        raise ValueError("Cast: string tensors are not supported")
    if target.kind in "iu":
        return _to_int(x, target)
    if target == np.bool_:
        return x != 0
    with np.errstate(over="ignore"):
        return x.astype(target)


def _to_int(x, target):
    if x.dtype == np.bool_:
        return x.astype(target)
    info = np.iinfo(target)
    if x.size == 0:
        return x.astype(target)
    if is_int(x):
        lo, hi = int(x.min()), int(x.max())
    else:
        if not np.all(np.isfinite(x)):
            raise IntegerOverflowError(f"Cast: NaN or inf cannot become {target}")
        x = np.trunc(x)
        lo, hi = float(x.min()), float(x.max())
    if lo < info.min or hi > info.max:
        raise IntegerOverflowError(f"Cast: values in [{lo}, {hi}] do not fit {target}")
    return x.astype(target)
