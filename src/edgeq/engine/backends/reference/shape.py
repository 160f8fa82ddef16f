"""Data movement: Concat, Flatten, Reshape, Transpose, Gather, Squeeze, Unsqueeze,
Identity, Shape.

None of these computes: values and dtypes pass through unchanged (integers stay
integers), so there is no rounding and no overflow.
"""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference._common import norm_axis, reject_unknown
from edgeq.engine.backends.reference.registry import register


def _prod(dims) -> int:
    return int(np.prod(dims, dtype=np.int64))


def _int_list(v, what, op):
    """An int64 tensor input or an ints attribute as a list of Python ints."""
    if v is None:
        return None
    a = np.asarray(v)
    if not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise ValueError(f"{op}: {what} must be integers, got dtype {a.dtype}")
    return [int(i) for i in a.reshape(-1)]


@register("Concat")
def concat(*xs, axis=None, **extra):
    """ONNX Concat along ``axis`` (required; negative counts from the back).

    Pure data movement: no rounding, no overflow; dtype as NumPy concatenation gives.
    """
    reject_unknown("Concat", extra)
    if axis is None:
        raise ValueError("Concat: the axis attribute is required")
    xs = [x for x in xs if x is not None]
    if not xs:
        raise ValueError("Concat: needs at least one input")
    return np.concatenate(xs, axis=norm_axis(axis, xs[0].ndim, "Concat"))


@register("Flatten")
def flatten(x, *, axis=1, **extra):
    """ONNX Flatten to 2-D ``(prod(shape[:axis]), prod(shape[axis:]))``; axis in [-r, r].

    Pure data movement: no rounding, no overflow.
    """
    reject_unknown("Flatten", extra)
    if not -x.ndim <= axis <= x.ndim:
        raise ValueError(f"Flatten: axis {axis} out of range for rank {x.ndim}")
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(_prod(x.shape[:axis]), _prod(x.shape[axis:]))


@register("Reshape")
def reshape(x, shape=None, *, allowzero=0, **extra):
    """ONNX Reshape: ``0`` copies the input dim (unless ``allowzero=1``, then it is a
    literal 0), ``-1`` is inferred. The target comes from the ``shape`` input (opset >= 5)
    or, for old files, the ``shape`` attribute.

    Pure data movement: no rounding, no overflow.
    """
    reject_unknown("Reshape", extra)
    target = _int_list(shape, "shape", "Reshape")
    if target is None:
        raise ValueError("Reshape: no target shape (input or attribute)")
    return x.reshape(_resolve_shape(x.shape, target, allowzero))


def _resolve_shape(src, target, allowzero):
    dims = list(target)
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise ValueError(f"Reshape: invalid target shape {target}")
    if allowzero and 0 in dims and -1 in dims:
        raise ValueError(f"Reshape: allowzero=1 forbids 0 together with -1 in {target}")
    if not allowzero:
        for i, d in enumerate(dims):
            if d == 0:
                if i >= len(src):
                    raise ValueError(f"Reshape: 0 at position {i} but input has rank {len(src)}")
                dims[i] = src[i]
    if -1 in dims:
        known = _prod([d for d in dims if d != -1])
        total = _prod(src)
        if known == 0 or total % known:
            raise ValueError(f"Reshape: cannot infer -1 reshaping {tuple(src)} to {target}")
        dims[dims.index(-1)] = total // known
    if _prod(dims) != _prod(src):
        raise ValueError(f"Reshape: cannot reshape {tuple(src)} to {target}")
    return tuple(dims)


@register("Transpose")
def transpose(x, *, perm=None, **extra):
    """ONNX Transpose (default: reverse the axes). Pure data movement: no rounding, no overflow."""
    reject_unknown("Transpose", extra)
    if perm is not None and sorted(perm) != list(range(x.ndim)):
        raise ValueError(f"Transpose: perm {list(perm)} is not a permutation of rank {x.ndim}")
    return np.transpose(x, None if perm is None else tuple(perm))


@register("Gather")
def gather(data, indices, *, axis=0, **extra):
    """ONNX Gather along ``axis``; negative indices count from the end.

    Pure indexing: no rounding, no overflow; an index out of range raises ValueError.
    """
    reject_unknown("Gather", extra)
    axis = norm_axis(axis, data.ndim, "Gather")
    size = data.shape[axis]
    idx = np.asarray(indices)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"Gather: indices must be integers, got {idx.dtype}")
    if idx.size and (idx.min() < -size or idx.max() >= size):
        raise ValueError(f"Gather: index out of range [-{size}, {size - 1}]")
    return np.take(data, np.where(idx < 0, idx + size, idx), axis=axis)


@register("Squeeze")
def squeeze(x, axes=None, **extra):
    """ONNX Squeeze: axes from the attribute (opset < 13) or the input (>= 13); without
    axes every size-1 axis goes. Pure data movement: no rounding, no overflow.
    """
    axes = _int_list(axes, "axes", "Squeeze")
    reject_unknown("Squeeze", extra)
    if axes is None:
        return x.reshape([d for d in x.shape if d != 1])
    axes = sorted({norm_axis(a, x.ndim, "Squeeze") for a in axes})
    if any(x.shape[a] != 1 for a in axes):
        raise ValueError(f"Squeeze: axes {axes} of shape {x.shape} are not all size 1")
    return x.reshape([d for i, d in enumerate(x.shape) if i not in axes])


@register("Unsqueeze")
def unsqueeze(x, axes=None, **extra):
    """ONNX Unsqueeze: insert size-1 axes at ``axes`` (positions in the output); axes from
    the attribute (opset < 13) or the input (>= 13). Pure data movement: no rounding,
    no overflow.
    """
    axes = _int_list(axes, "axes", "Unsqueeze")
    reject_unknown("Unsqueeze", extra)
    if not axes:
        raise ValueError("Unsqueeze: axes are required")
    rank = x.ndim + len(axes)
    axes = [norm_axis(a, rank, "Unsqueeze") for a in axes]
    if len(set(axes)) != len(axes):
        raise ValueError(f"Unsqueeze: repeated axes {axes}")
    dims = iter(x.shape)
    return x.reshape([1 if i in axes else next(dims) for i in range(rank)])


@register("Identity")
def identity(x, **extra):
    """ONNX Identity: returns the input array itself. No rounding, no overflow."""
    reject_unknown("Identity", extra)
    return x


@register("Shape")
def shape_of(x, *, start=0, end=None, **extra):
    """ONNX Shape as int64, sliced ``[start:end]`` (opset 15; clamped like Python).

    No arithmetic: no rounding, no overflow.
    """
    reject_unknown("Shape", extra)
    return np.array(x.shape[start:end], dtype=np.int64)
