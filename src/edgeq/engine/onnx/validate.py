"""Structural validation of an ONNX model, before anything runs on it.

:func:`validate_model` runs on the parsed protobuf before ONNX shape inference (which
propagates data and can allocate for absurd declared shapes) and before any trial
execution. It checks what the later stages assume, so that a malformed file fails with a
one-line :class:`~edgeq.errors.ModelFileError` naming the file and the node, tensor or
attribute, instead of a ``KeyError``, ``MemoryError`` or ``RecursionError`` deep inside:

- names: graph inputs, initializers and node outputs are unique, and none is produced
  twice; every node input exists and is produced *before* the node (topological order,
  hence no cycles); every graph output exists;
- tensors (initializers, ``Constant`` values, tensor attributes): a numeric data type,
  non-negative dims, at most :data:`MAX_TENSOR_ELEMENTS` elements, no external or segment
  data, and exactly as much data as the dims need;
- declared shapes (inputs, outputs, ``value_info``): no negative dim, no dim over
  :data:`MAX_DIM`, and at most :data:`MAX_TENSOR_ELEMENTS` elements;
- attributes: the type the op's schema states; kernel/stride/pad/dilation/group ranges
  (at most :data:`MAX_GEOMETRY`);
  finite ``Gemm`` ``alpha``/``beta``; QuantLab/DORY annotations as integers in their range
  (bit widths 1..32, shifts >= 0, ``n_levels`` >= 2, flags 0/1) and the requantisation
  ``Div`` of a QuantLab file by a power of two;
- the edgeq annotation record: size and nesting depth before it is parsed.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, defs

from edgeq.errors import ModelFileError

MAX_TENSOR_ELEMENTS = 2**27  # per tensor: 1 GiB of int64
MAX_DIM = 2**31 - 1
MAX_NODES = 1_000_000
MAX_ANNOTATION_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 32
MAX_ATTR_LIST = 4096
MAX_GEOMETRY = 2**16  # kernel sizes, strides, pads, dilations: beyond this only allocation bombs

A = onnx.AttributeProto
# element type -> (bytes per element in raw_data, or None for packed 4-bit, the typed field)
_NUMERIC = {
    TensorProto.FLOAT: (4, "float_data"), TensorProto.DOUBLE: (8, "double_data"),
    TensorProto.FLOAT16: (2, "int32_data"), TensorProto.BFLOAT16: (2, "int32_data"),
    TensorProto.INT8: (1, "int32_data"), TensorProto.UINT8: (1, "int32_data"),
    TensorProto.INT16: (2, "int32_data"), TensorProto.UINT16: (2, "int32_data"),
    TensorProto.INT32: (4, "int32_data"), TensorProto.INT64: (8, "int64_data"),
    TensorProto.UINT32: (4, "uint64_data"), TensorProto.UINT64: (8, "uint64_data"),
    TensorProto.BOOL: (1, "int32_data"),
    TensorProto.INT4: (None, "int32_data"), TensorProto.UINT4: (None, "int32_data"),
}
# QuantLab/DORY annotations: key -> (lo, hi) for their integer value
_BITS = (1, 32)
_QUANTLAB_ATTRS = {
    "weight_bits": _BITS, "bias_bits": _BITS, "out_bits": _BITS, "mult_bits": _BITS,
    "add_bits": _BITS,
    "out_signed": (0, 1), "in1_signed": (0, 1), "in2_signed": (0, 1),
}
for _p in ("in1", "in2", "out"):
    _QUANTLAB_ATTRS.update({
        f"{_p}_mul": (-(2**62), 2**62), f"{_p}_add": (-(2**62), 2**62),
        f"{_p}_shift": (0, 62), f"{_p}_n_levels": (2, 2**32), f"{_p}_rq": (0, 1),
    })
_GEOMETRY = {"kernel_shape": 1, "strides": 1, "dilations": 1, "pads": 0}  # key -> minimum


def validate_model(model: onnx.ModelProto, source: str) -> None:
    """Raise :class:`ModelFileError` naming ``source`` and the culprit; see module doc."""
    g = model.graph
    if len(g.node) > MAX_NODES:
        raise ModelFileError(f"{source}: {len(g.node)} nodes, more than the {MAX_NODES} allowed")
    _check_text(g, source)
    opset = _opset(model)
    _check_names(g, source)
    for t in g.initializer:
        check_tensor(t, f"{source}: initializer '{t.name}'")
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        check_declared_shape(vi, source)
    quantlab = any(a.name in _QUANTLAB_ATTRS for n in g.node for a in n.attribute)
    for i, node in enumerate(g.node):
        _check_node(node, i, opset, quantlab, source)
    if quantlab:
        _check_quantlab_divisors(g, source)
    for prop in model.metadata_props:
        if prop.key == "edgeq.annotations":
            check_json_text(prop.value, f"{source}: metadata 'edgeq.annotations'")


def _check_text(g: onnx.GraphProto, source: str) -> None:
    """Every name is text: protobuf hands back ``bytes`` for invalid UTF-8."""
    names = [v.name for v in list(g.input) + list(g.output) + list(g.value_info)]
    names += [t.name for t in g.initializer]
    for n in g.node:
        names += [n.name, n.op_type, n.domain, *n.input, *n.output]
        names += [a.name for a in n.attribute]
    bad = next((x for x in names if not isinstance(x, str)), None)
    if bad is not None:
        raise ModelFileError(f"{source}: a name or op type is not UTF-8 text ({bad[:40]!r})")


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def _node_name(node: onnx.NodeProto, i: int) -> str:
    return node.name or f"{node.op_type}_{i}"


# -- names and topology ---------------------------------------------------------------------
def _check_names(g: onnx.GraphProto, source: str) -> None:
    known: set[str] = set()
    for kind, names in (("graph input", [v.name for v in g.input]),
                        ("initializer", [t.name for t in g.initializer])):
        seen: set[str] = set()
        for name in names:
            if not name:
                raise ModelFileError(f"{source}: a {kind} has an empty name")
            if name in seen:
                raise ModelFileError(f"{source}: {kind} '{name}' is declared twice")
            seen.add(name)
        known |= seen
    produced_by: dict[str, str] = {}
    for i, node in enumerate(g.node):
        where = f"{source}: node '{_node_name(node, i)}' ({node.op_type})"
        for name in node.input:
            if name and name not in known:
                later = _producer_after(g, i, name)
                why = (f"is produced only later, by node '{later}' (the nodes are not in "
                       "topological order, or form a cycle)" if later else
                       "is produced by no node and is no graph input or initializer")
                raise ModelFileError(f"{where}: input '{name}' {why}")
        for name in node.output:
            if not name:
                continue
            if name in known:
                first = produced_by.get(name, "a graph input or initializer")
                raise ModelFileError(f"{where}: output '{name}' is already produced by "
                                     f"{first if first.startswith('a ') else repr(first)}")
            known.add(name)
            produced_by[name] = _node_name(node, i)
    for out in g.output:
        if out.name not in known:
            raise ModelFileError(f"{source}: graph output '{out.name}' is produced by no node")


def _producer_after(g: onnx.GraphProto, i: int, name: str) -> str | None:
    for j in range(i, len(g.node)):
        if name in g.node[j].output:
            return _node_name(g.node[j], j)
    return None


# -- tensors and shapes -----------------------------------------------------------------------
def check_tensor(t: onnx.TensorProto, what: str) -> None:
    """A tensor the reader may convert to NumPy: type, dims, size cap, data length."""
    if t.data_type not in _NUMERIC:
        name = TensorProto.DataType.Name(t.data_type) if t.data_type in \
            TensorProto.DataType.values() else str(t.data_type)
        raise ModelFileError(f"{what}: unsupported data type {name}")
    if any(d < 0 for d in t.dims):
        raise ModelFileError(f"{what}: negative dimension in {list(t.dims)}")
    n = math.prod(t.dims)
    if n > MAX_TENSOR_ELEMENTS:
        raise ModelFileError(f"{what}: {n} elements {list(t.dims)}, more than the "
                             f"{MAX_TENSOR_ELEMENTS} allowed per tensor")
    if t.data_location == TensorProto.EXTERNAL or t.external_data:
        raise ModelFileError(f"{what}: external data is not supported (or its file is missing)")
    if t.HasField("segment"):
        raise ModelFileError(f"{what}: segmented tensors are not supported")
    size, field = _NUMERIC[t.data_type]
    if t.HasField("raw_data"):
        need = (n + 1) // 2 if size is None else n * size
        if len(t.raw_data) != need:
            raise ModelFileError(f"{what}: {len(t.raw_data)} bytes of raw data, but "
                                 f"{list(t.dims)} needs {need}")
        return
    have = len(getattr(t, field))
    need = (n + 1) // 2 if size is None else n
    if have != need:
        raise ModelFileError(f"{what}: {have} values, but {list(t.dims)} needs {need}")


def check_declared_shape(vi: onnx.ValueInfoProto, source: str) -> None:
    """No negative or absurd dims in a declared shape (they drive allocation later)."""
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return
    dims = [d.dim_value for d in vi.type.tensor_type.shape.dim if d.HasField("dim_value")]
    where = f"{source}: value '{vi.name}'"
    if any(d < 0 for d in dims):
        raise ModelFileError(f"{where}: negative dimension in its declared shape {dims}")
    if any(d > MAX_DIM for d in dims) or math.prod(dims) > MAX_TENSOR_ELEMENTS:
        raise ModelFileError(f"{where}: declared shape {dims} is larger than the "
                             f"{MAX_TENSOR_ELEMENTS} elements allowed per tensor")


def check_shapes_after_inference(model: onnx.ModelProto, source: str) -> None:
    """The same caps on the shapes ONNX shape inference produced."""
    g = model.graph
    for vi in list(g.value_info) + list(g.output):
        check_declared_shape(vi, source)


# -- attributes -------------------------------------------------------------------------------
def _check_node(node: onnx.NodeProto, i: int, opset: int, quantlab: bool, source: str) -> None:
    where = f"{source}: node '{_node_name(node, i)}' ({node.op_type})"
    schema = _schema(node, opset)
    seen: set[str] = set()
    for a in node.attribute:
        if a.name in seen:
            raise ModelFileError(f"{where}: attribute '{a.name}' given twice")
        seen.add(a.name)
        _check_attribute(a, where, schema)
    if node.domain in ("", "ai.onnx"):
        _check_op_ranges(node, where)


def _schema(node: onnx.NodeProto, opset: int):
    if node.domain not in ("", "ai.onnx"):
        return None
    try:
        return defs.get_schema(node.op_type, opset, "")
    except defs.SchemaError:
        return None  # unknown ops are reported by the op check, naming op and opset


def _check_attribute(a: onnx.AttributeProto, where: str, schema) -> None:
    what = f"{where}: attribute '{a.name}'"
    if a.type == A.UNDEFINED:
        raise ModelFileError(f"{what} has no type")
    if len(a.ints) > MAX_ATTR_LIST or len(a.floats) > MAX_ATTR_LIST:
        raise ModelFileError(f"{what}: a list of more than {MAX_ATTR_LIST} values")
    if a.type == A.TENSOR:
        check_tensor(a.t, what)
    elif a.type == A.TENSORS:
        for t in a.tensors:
            check_tensor(t, what)
    elif a.type == A.FLOAT and math.isnan(a.f):
        raise ModelFileError(f"{what} is NaN")
    spec = schema.attributes.get(a.name) if schema is not None else None
    if spec is not None and int(spec.type) != a.type:
        raise ModelFileError(f"{what} has type {A.AttributeType.Name(a.type)}, the "
                             f"{schema.name} schema says {A.AttributeType.Name(int(spec.type))}")
    if a.name in _QUANTLAB_ATTRS:
        lo, hi = _QUANTLAB_ATTRS[a.name]
        if a.type != A.INT:
            raise ModelFileError(f"{what} (QuantLab/DORY annotation) must be an integer, "
                                 f"got type {A.AttributeType.Name(a.type)}")
        if not lo <= a.i <= hi:
            raise ModelFileError(f"{what} = {a.i} is outside [{lo}, {hi}]")


def _check_op_ranges(node: onnx.NodeProto, where: str) -> None:
    attrs = {a.name: a for a in node.attribute}
    for key, minimum in _GEOMETRY.items():
        if key in attrs and any(v < minimum for v in attrs[key].ints):
            raise ModelFileError(f"{where}: attribute '{key}' = {list(attrs[key].ints)} "
                                 f"has a value below {minimum}")
        if key in attrs and any(v > MAX_GEOMETRY for v in attrs[key].ints):
            raise ModelFileError(f"{where}: attribute '{key}' = {list(attrs[key].ints)} "
                                 f"has a value above {MAX_GEOMETRY}")
    if "kernel_shape" in attrs:
        rank = len(attrs["kernel_shape"].ints)
        if rank == 0:
            raise ModelFileError(f"{where}: attribute 'kernel_shape' is empty")
        for key, factor in (("strides", 1), ("dilations", 1), ("pads", 2)):
            if key in attrs and len(attrs[key].ints) != factor * rank:
                raise ModelFileError(f"{where}: attribute '{key}' has "
                                     f"{len(attrs[key].ints)} values for a rank-{rank} kernel")
    if "group" in attrs and attrs["group"].i < 1:
        raise ModelFileError(f"{where}: attribute 'group' = {attrs['group'].i} is below 1")
    if node.op_type == "Gemm":
        for key in ("alpha", "beta"):
            if key in attrs and not math.isfinite(attrs[key].f):
                raise ModelFileError(f"{where}: attribute '{key}' = {attrs[key].f} is not finite")


# -- QuantLab requantisation divisors ---------------------------------------------------------
def _check_quantlab_divisors(g: onnx.GraphProto, source: str) -> None:
    """In a QuantLab file, a Div feeding Floor/Clip is a requantisation: D must be 2^d."""
    consts = {t.name: t for t in g.initializer}
    consts.update({n.output[0]: a.t for n in g.node if n.op_type == "Constant" and n.output
                   for a in n.attribute if a.name == "value"})
    readers: dict[str, list[str]] = {}
    for n in g.node:
        for x in n.input:
            readers.setdefault(x, []).append(n.op_type)
    for i, n in enumerate(g.node):
        if n.op_type != "Div" or len(n.input) != 2 or n.input[1] not in consts:
            continue
        if not set(readers.get(n.output[0], [])) & {"Floor", "Clip"}:
            continue
        data = onnx.numpy_helper.to_array(consts[n.input[1]])
        if data.size != 1 or not np.issubdtype(data.dtype, np.number):
            continue
        d = float(np.ravel(data)[0])
        if not (math.isfinite(d) and d >= 1 and d == 2.0 ** round(math.log2(d))):
            raise ModelFileError(
                f"{source}: node '{_node_name(n, i)}' (Div): a QuantLab requantisation "
                f"divides by a power of two, got {d!r}")


# -- JSON -------------------------------------------------------------------------------------
def check_json_text(text: str, what: str) -> None:
    """Size and nesting depth of a JSON text, checked before ``json.loads`` recurses."""
    if not isinstance(text, str):  # protobuf hands back bytes for invalid UTF-8
        raise ModelFileError(f"{what}: not UTF-8 text")
    if len(text) > MAX_ANNOTATION_BYTES:
        raise ModelFileError(f"{what}: {len(text)} bytes, more than {MAX_ANNOTATION_BYTES}")
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    if deepest > MAX_JSON_DEPTH:
        raise ModelFileError(f"{what}: JSON nested {deepest} levels deep (at most "
                             f"{MAX_JSON_DEPTH})")
