"""IR -> ONNX, in one of two dialects (docs/onnx-export.md).

- ``dory``: the QuantLab/DORY dialect exactly as QuantLab writes it (opset 10 by default):
  ``RequantShift`` -> ``Mul -> Add -> Div(2^d) -> Floor -> Clip`` and ``HarmonisedAdd``
  -> one ``Add`` carrying the adder attributes, plus the bit-width attributes DORY reads.
- ``edgeq`` (default): standard ONNX only, so that the checker and onnxruntime accept
  the file; the same chains without custom attributes, and the quantisation annotations
  as JSON in ``metadata_props`` (:mod:`edgeq.engine.onnx.edgeq_dialect` reads them back).

In an integer graph, integer tensors are *carried* in float32, as QuantLab does, so that
any ONNX runtime can execute the file. Which values are carried follows the ONNX type
constraints: a value bound (through the ops' type variables) to an index-only input
such as ``Gather.indices`` or ``Reshape.shape`` keeps its integer type. Every carried
constant is checked to be exactly representable in float32.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import defs, helper, numpy_helper

import edgeq
from edgeq.engine.ir import EDGEQ_DOMAIN, IR_OPS, Graph, Node
from edgeq.engine.onnx import edgeq_dialect
from edgeq.engine.onnx.quantlab import LINEAR_OPS, NO_CLIP
from edgeq.engine.tensor_io import write_atomic
from edgeq.errors import (
    ConfigError,
    EdgeqError,
    IntegerOverflowError,
    ModelFileError,
    UnsupportedOpError,
    ValidationError,
)
from edgeq.numerics import IntRange

DIALECTS = ("edgeq", "dory")
DEFAULT_OPSET = 17
DORY_OPSET = 10
DORY_CODE_RESERVED = 195000  # bytes of L2 DORY keeps for code (QuantLab's export default)
MIN_EDGEQ_INTEGER_OPSET = 11
MIN_OPSET = 7
MIN_IR_VERSION = 7  # what QuantLab's exporter (PyTorch 1.10) wrote
F32 = np.dtype(np.float32)
FLOAT_TYPE = "tensor(float)"
# Ops whose definition changes across opsets 7..21 only widen the types or move
# attributes to inputs (which the checker catches): safe to re-target to another opset.
PORTABLE_OPS = frozenset({
    "Add", "Sub", "Mul", "Div", "Floor", "Relu", "Sigmoid", "Tanh", "Conv", "MatMul", "Gemm",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape",
    "Transpose", "Concat", "Identity", "Gather", "Squeeze", "Unsqueeze", "Pad", "Clip",
})
# Integer Div/Mod truncate; carried in float32 they would not: no exact float form.
NO_FLOAT_FORM = ("Div", "Mod")


# -- public API ----------------------------------------------------------------------------
def export_onnx(
    graph: Graph,
    path: str | os.PathLike,
    dialect: str = "edgeq",
    opset: int | None = None,
    producer: str = "edgeq",
) -> onnx.ModelProto:
    """Write ``graph`` to ``path`` as ONNX in ``dialect`` ("edgeq" or "dory").

    The file is written atomically (a temporary file in the same directory, renamed
    over ``path``): on any error nothing is left behind. Returns the written model.
    """
    target = Path(path)
    _check_directory(target)  # fail before the work, not after it
    model = to_onnx(graph, dialect, opset, producer)
    config = dory_config(model, graph, target.name) if dialect == "dory" else None
    write_model(model, target)
    if config is not None:  # DORY's side file: input precision and requant width
        text = (json.dumps(config, indent=4) + "\n").encode()
        cfg = target.with_name(f"config_{target.stem}.json")
        try:
            write_atomic(cfg, lambda f: f.write(text))
        except EdgeqError as exc:
            raise ModelFileError(str(exc)) from None
    return model


def to_onnx(
    graph: Graph, dialect: str = "edgeq", opset: int | None = None, producer: str = "edgeq"
) -> onnx.ModelProto:
    """Build the ONNX model of ``graph`` in ``dialect`` without writing it."""
    if dialect not in DIALECTS:
        raise ConfigError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
    integer = is_integer_graph(graph)
    if dialect == "dory" and not integer:
        raise ConfigError(
            f"graph '{graph.name}': the dory dialect carries integer networks, and this "
            "graph has no quantisation annotations nor integer ops; use dialect='edgeq'"
        )
    version = _target_opset(graph, dialect, opset, integer)
    _check_ops(graph, version)
    types = file_types(graph, version) if integer else _own_types(graph)
    em = Emitter(dialect, version, _Names(graph).fresh)
    records = [_lower(node, em, graph, types) for node in graph.nodes]
    model = _assemble(graph, em, types, version, producer)
    _check_model(model, graph, version, strict=dialect == "edgeq")
    if dialect == "dory":
        _annotate_dory(model, graph, em)
    elif integer:
        edgeq_dialect.attach_annotations(model, graph, types, [r for r in records if r])
    return model


def is_integer_graph(graph: Graph) -> bool:
    """True when any value has a quantisation annotation or any node is an IR integer op."""
    return any(v.quant is not None for v in graph.values.values()) or any(
        n.domain == EDGEQ_DOMAIN for n in graph.nodes
    )


def write_model(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Serialise ``model`` to ``path`` atomically (temp file + ``os.replace``)."""
    target = Path(path)
    _check_directory(target)
    try:
        data = model.SerializeToString()
    except ValueError as exc:  # protobuf refuses messages over 2 GiB
        raise ModelFileError(f"{target}: cannot serialise the model ({exc})") from None
    try:
        write_atomic(target, lambda f: f.write(data))
    except EdgeqError as exc:  # write_atomic reports OS errors naming the file
        raise ModelFileError(str(exc)) from None


def _check_directory(target: Path) -> None:
    if not target.parent.is_dir():
        raise ModelFileError(f"{target}: the directory {target.parent} does not exist")
    if target.is_dir():
        raise ModelFileError(f"{target}: is a directory")


# -- opset and op checks -------------------------------------------------------------------
def _target_opset(graph: Graph, dialect: str, opset: int | None, integer: bool) -> int:
    if opset is None and dialect == "dory":
        opset = DORY_OPSET
    elif opset is None:
        opset = graph.opset or DEFAULT_OPSET
        if integer:  # opset-10 QuantLab graphs use negative Unsqueeze axes: legal from 11
            opset = max(opset, MIN_EDGEQ_INTEGER_OPSET)
    newest = defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ConfigError(f"opset must be an integer in [{MIN_OPSET}, {newest}], got {opset!r}")
    return opset


def _schema(node: Node, opset: int) -> defs.OpSchema:
    try:
        return defs.get_schema(node.op, opset, "")
    except defs.SchemaError:
        raise UnsupportedOpError(node.op, node.name, opset, "no standard ONNX schema") from None


def _check_ops(graph: Graph, opset: int) -> None:
    """IR ops are known; standard ops exist at ``opset`` and mean the same there."""
    for node in graph.nodes:
        if node.domain == EDGEQ_DOMAIN:
            if node.op not in IR_OPS:
                raise UnsupportedOpError(node.op, node.name, opset, "unknown edgeq-domain op")
            continue
        schema = _schema(node, opset)
        if graph.opset and opset != graph.opset and node.op not in PORTABLE_OPS:
            old = _schema(node, graph.opset).since_version
            if old != schema.since_version:
                raise UnsupportedOpError(
                    node.op, node.name, opset,
                    f"its definition changed between opset {graph.opset} and {opset}; "
                    f"export at opset {graph.opset}",
                )


# -- which values are carried in float32 ---------------------------------------------------
def file_types(graph: Graph, opset: int) -> dict[str, np.dtype]:
    """The ONNX element type of every value of an integer graph (module docstring).

    Values are grouped by the ops' type variables (all values bound to one type
    variable of one node must share a type). A group holding an integer value is
    carried in float32, unless one of its members sits where ONNX admits no float
    (an index, a shape): then the whole group keeps its own integer types.
    """
    groups = _UnionFind()
    index_only: set[str] = set()
    for node in graph.nodes:
        for names, float_ok in _type_bindings(node, opset):
            groups.union(names)
            if not float_ok:
                index_only.update(names)
    types = _own_types(graph)
    for members in groups.classes(graph.values):
        if not any(graph.values[m].is_integer for m in members):
            continue
        if index_only.isdisjoint(members):
            types.update(dict.fromkeys(members, F32))
        else:
            _check_index_group(graph, members, index_only)
    return types


def _own_types(graph: Graph) -> dict[str, np.dtype]:
    return {n: (None if v.dtype is None else np.dtype(v.dtype)) for n, v in graph.values.items()}


def _type_bindings(node: Node, opset: int):
    """(value names bound to one type variable, whether that variable admits float32)."""
    if node.domain == EDGEQ_DOMAIN:  # lowered to Mul/Add/Div/Floor/Clip: one type T
        return [([n for n in node.inputs + node.outputs if n], True)]
    schema = _schema(node, opset)
    allowed = {tc.type_param_str: set(tc.allowed_type_strs) for tc in schema.type_constraints}
    bound: dict[str, list[str]] = {}
    for formals, names in ((schema.inputs, node.inputs), (schema.outputs, node.outputs)):
        for i, name in enumerate(names):
            formal = _formal(formals, i)
            if name and formal is not None:
                bound.setdefault(formal.type_str, []).append(name)
    return [(names, FLOAT_TYPE in allowed.get(t, {t})) for t, names in bound.items()]


def _formal(formals, i: int):
    if i < len(formals):
        return formals[i]
    last = formals[-1] if formals else None
    variadic = last is not None and last.option == defs.OpSchema.FormalParameterOption.Variadic
    return last if variadic else None


def _check_index_group(graph: Graph, members: list[str], index_only: set[str]) -> None:
    """An index-typed group must not touch a value that is carried in float32."""
    for node in graph.nodes:
        touched = set(node.inputs + node.outputs) & set(members)
        if node.domain == EDGEQ_DOMAIN and touched:
            name = sorted(touched & index_only or touched)[0]
            raise UnsupportedOpError(
                node.op, node.name, None,
                f"value '{name}' is both integer data of this op and an ONNX index/shape "
                "input elsewhere; it cannot be carried in float32",
            )


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, names: list[str]) -> None:
        for name in names[1:]:
            self.parent[self.find(name)] = self.find(names[0])

    def classes(self, universe) -> list[list[str]]:
        out: dict[str, list[str]] = {}
        for name in universe:
            out.setdefault(self.find(name), []).append(name)
        return list(out.values())


def carry_float32(data: np.ndarray, what: str) -> np.ndarray:
    """``data`` as float32; IntegerOverflowError (naming ``what``) unless exact."""
    data = np.asarray(data)
    f = data.astype(F32)
    if np.issubdtype(data.dtype, np.integer):
        # 2^63 itself rounds in from int64's top: compare only what int64 can hold
        inside = np.abs(f.astype(np.float64)) < 2.0**63
        exact = inside & (np.where(inside, f, 0).astype(np.int64) == data)
    else:
        exact = (f.astype(data.dtype) == data) | np.isnan(data)
    if not np.all(exact):
        idx = tuple(int(i) for i in np.argwhere(~exact)[0])
        raise IntegerOverflowError(
            f"{what} holds {data[idx].item()!r} at index {idx}, which float32 cannot "
            "represent exactly (an integer graph is carried in float32: integers are exact "
            "up to 2^24)"
        )
    return f


# -- lowering ------------------------------------------------------------------------------
class _Names:
    """Fresh names, unique among the graph's values and nodes and each other."""

    def __init__(self, graph: Graph) -> None:
        self.taken = set(graph.values) | {n.name for n in graph.nodes}

    def fresh(self, base: str) -> str:
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name


class Emitter:
    """Collects the ONNX nodes and float32 constants that the IR ops lower to.

    ``fresh(base)`` supplies new names; every name it hands out is kept in ``names``
    (in order), so that the edgeq importer can replay a lowering and compare.
    """

    def __init__(self, dialect: str, opset: int, fresh: Callable[[str], str]) -> None:
        self.dialect, self.opset, self._fresh = dialect, opset, fresh
        self.nodes: list[onnx.NodeProto] = []
        self.consts: list[onnx.TensorProto] = []
        self.dory_attrs: dict[str, dict] = {}
        self.names: list[str] = []

    def fresh(self, base: str) -> str:
        name = self._fresh(base)
        self.names.append(name)
        return name

    def op(self, op_type: str, inputs: list[str], base: str, *, output: str | None = None,
           name: str | None = None, dory: dict | None = None, **attrs) -> str:
        """Append one node; its name doubles as its output's name unless given."""
        name = name or self.fresh(f"{base}.{op_type.lower()}")
        output = output or name
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        if dory:
            self.dory_attrs[name] = dory
        return output

    def scalar(self, base: str, value: int) -> str:
        """A float32 scalar constant (a Constant node in dory, as QuantLab writes it)."""
        data = carry_float32(np.asarray(value, dtype=np.int64), f"constant '{base}'")
        name = self.fresh(base)
        tensor = numpy_helper.from_array(data, name)
        if self.dialect == "dory":
            self.nodes.append(helper.make_node("Constant", [], [name], name=name, value=tensor))
        else:
            self.consts.append(tensor)
        return name

    def clip(self, x: str, lo: int, hi: int, base: str, output: str, name: str) -> str:
        """Clip to [lo, hi]: attributes before opset 11, constant inputs from 11 on."""
        dory = {"out_bits": _out_bits(lo, hi)}
        if self.opset < 11:
            b = carry_float32(np.array([lo, hi], dtype=np.int64), f"node '{name}' clip bounds")
            return self.op("Clip", [x], base, output=output, name=name, dory=dory,
                           min=float(b[0]), max=float(b[1]))
        bounds = [self.scalar(f"{base}.lo", lo), self.scalar(f"{base}.hi", hi)]
        return self.op("Clip", [x, *bounds], base, output=output, name=name, dory=dory)

    def requant(self, x: str, mul: str, add: str, shift: int, base: str) -> str:
        """``floor((x*mul + add) / 2^shift)`` as Mul -> Add -> Div -> Floor."""
        m = self.op("Mul", [x, mul], base, dory={"mult_bits": 32})
        a = self.op("Add", [m, add], base, dory={"add_bits": 32})
        d = self.op("Div", [a, self.scalar(f"{base}.div_by", 2 ** int(shift))], base)
        return self.op("Floor", [d], base)

    def requant_by(self, x: str, mul: int, add: int, shift: int, base: str) -> str:
        """The same with integer ``mul``/``add`` (HarmonisedAdd attributes) as constants."""
        mul_c, add_c = self.scalar(f"{base}.mul_by", mul), self.scalar(f"{base}.add_by", add)
        return self.requant(x, mul_c, add_c, shift, base)


def _out_bits(lo: int, hi: int) -> int:
    """QuantLab's ``out_bits``: round(log2(levels)), and 32 for anything over 8 bits."""
    if lo <= -NO_CLIP or hi >= NO_CLIP:
        return 32
    bits = round(math.log2(hi - lo + 1))
    return bits if bits <= 8 else 32


def lower_ir_node(node: Node, em: Emitter, graph: Graph | None = None) -> None:
    """Append the standard-op form of one IR op (``graph`` gives dory its input levels)."""
    missing = [k for k in ("lo", "hi") if k not in node.attrs]
    shifts = [node.attrs.get("shift", 0), node.attrs.get("out_shift", 0),
              *node.attrs.get("in_shift", [])]
    if missing or min(shifts) < 0:
        detail = f"missing attributes {missing}" if missing else f"negative shift in {shifts}"
        raise UnsupportedOpError(node.op, node.name, em.opset, detail)
    if node.op == "RequantShift":
        _lower_requant(node, em)
    elif em.dialect == "dory":
        _lower_adder_dory(node, em, graph)
    else:
        _lower_adder(node, em)


def _lower_requant(node: Node, em: Emitter) -> None:
    x, mul, add = node.inputs
    a = node.attrs
    y = em.requant(x, mul, add, a.get("shift", 0), node.name)
    em.clip(y, a["lo"], a["hi"], node.name, node.outputs[0], node.name)


def _adder_attrs(node: Node) -> dict:
    """HarmonisedAdd attributes with the reference kernel's defaults filled in."""
    n, a = len(node.inputs), node.attrs
    per_input = {"in_mul": 1, "in_add": 0, "in_shift": 0, "in_rq": 0}
    out = {k: [int(v) for v in a.get(k, [d] * n)] for k, d in per_input.items()}
    for k, d in {"out_mul": 1, "out_add": 0, "out_shift": 0, "out_rq": 0}.items():
        out[k] = int(a.get(k, d))
    out["lo"], out["hi"] = int(a["lo"]), int(a["hi"])
    return out


def _lower_adder(node: Node, em: Emitter) -> None:
    """Per input [Mul -> Add -> Div -> Floor] when rq, an Add chain, [output rq], Clip."""
    a, base = _adder_attrs(node), node.name
    terms = []
    for i, x in enumerate(node.inputs):
        if a["in_rq"][i]:
            p = f"{base}.in{i + 1}"
            x = em.requant_by(x, a["in_mul"][i], a["in_add"][i], a["in_shift"][i], p)
        terms.append(x)
    total = terms[0]
    for t in terms[1:]:
        total = em.op("Add", [total, t], f"{base}.sum")
    if a["out_rq"]:
        total = em.requant_by(total, a["out_mul"], a["out_add"], a["out_shift"], f"{base}.out")
    em.clip(total, a["lo"], a["hi"], base, node.outputs[0], node.name)


def _lower_adder_dory(node: Node, em: Emitter, graph: Graph | None) -> None:
    """One ``Add`` carrying QuantLab's DORYAdder attributes (two inputs only)."""
    if len(node.inputs) != 2:
        raise UnsupportedOpError(
            node.op, node.name, em.opset,
            f"the dory dialect's adder takes exactly 2 inputs, this one has {len(node.inputs)}; "
            "use dialect='edgeq'",
        )
    a = _adder_attrs(node)
    out = _dory_out_range(node, a["lo"], a["hi"])
    attrs: dict[str, int] = {}
    for i, x in enumerate(node.inputs):
        p = f"in{i + 1}"
        attrs.update({f"{p}_mul": a["in_mul"][i], f"{p}_add": a["in_add"][i],
                      f"{p}_shift": a["in_shift"][i], f"{p}_rq": a["in_rq"][i],
                      f"{p}_n_levels": _levels(graph, x, out.n_levels)})
    attrs.update({"out_mul": a["out_mul"], "out_add": a["out_add"], "out_shift": a["out_shift"],
                  "out_n_levels": out.n_levels, "out_rq": a["out_rq"],
                  "out_signed": int(out.is_signed), "add_bits": 8})
    em.op("Add", list(node.inputs), node.name, output=node.outputs[0], name=node.name,
          dory=attrs)


def _dory_out_range(node: Node, lo: int, hi: int) -> IntRange:
    """The adder's clip as QuantLab states it: ``out_n_levels`` and ``out_signed``."""
    rng = IntRange.from_levels(hi - lo + 1, lo < 0) if hi > lo else None
    if rng is None or (rng.lo, rng.hi) != (lo, hi):
        raise UnsupportedOpError(
            node.op, node.name, None,
            f"output clip [{lo}, {hi}] is not a QuantLab range (unsigned [0, K-1] or signed "
            "[-K/2, K/2-1]); the dory adder cannot state it",
        )
    return rng


def _levels(graph: Graph | None, name: str, default: int) -> int:
    v = graph.values.get(name) if graph is not None else None
    return default if v is None or v.quant is None else int(v.quant.range.n_levels)


def _lower(node: Node, em: Emitter, graph: Graph, types: dict) -> dict | None:
    """Emit one IR node; for IR ops return the record the edgeq importer needs."""
    if node.domain != EDGEQ_DOMAIN:
        _check_float_form(node, types, graph)
        em.nodes.append(_standard_node(node, em.opset, types))
        return None
    start = len(em.names)
    lower_ir_node(node, em, graph)
    return edgeq_dialect.op_record(node, em.names[start:])


def _check_float_form(node: Node, types: dict, graph: Graph) -> None:
    carried = [n for n in node.inputs if n and types.get(n) == F32 and graph.values[n].is_integer]
    if node.op in NO_FLOAT_FORM and carried:
        raise UnsupportedOpError(
            node.op, node.name, None,
            f"integer {node.op} truncates; with its operands carried in float32 it would "
            "not, so it has no exact ONNX form here",
        )


def _standard_node(node: Node, opset: int, types: dict) -> onnx.NodeProto:
    schema = _schema(node, opset)
    attrs = dict(node.attrs)
    if node.op == "Cast" and types.get(node.outputs[0]) is not None:  # follows the carrier
        attrs["to"] = helper.np_dtype_to_tensor_dtype(types[node.outputs[0]])
    proto = helper.make_node(node.op, node.inputs, node.outputs, name=node.name)
    proto.attribute.extend(_attribute(schema, k, v, node) for k, v in attrs.items())
    return proto


def _attribute(schema: defs.OpSchema, key: str, value, node: Node) -> onnx.AttributeProto:
    """An attribute typed by the schema (the IR may hold ints where ONNX wants floats)."""
    if isinstance(value, np.ndarray):
        value = numpy_helper.from_array(value)
    elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        value = [numpy_helper.from_array(v) for v in value]
    elif isinstance(value, np.generic):
        value = value.item()
    spec = schema.attributes.get(key)
    kind = None if spec is None else int(spec.type)
    casts = {onnx.AttributeProto.FLOAT: float, onnx.AttributeProto.INT: int}
    lists = {onnx.AttributeProto.FLOATS: float, onnx.AttributeProto.INTS: int}
    if kind in casts:
        value = casts[kind](value)
    elif kind in lists:
        value = [lists[kind](v) for v in value]
    try:
        return helper.make_attribute(key, value, attr_type=kind)
    except (TypeError, ValueError) as exc:
        raise UnsupportedOpError(node.op, node.name, None, f"attribute '{key}': {exc}") from None


# -- assembling and checking the model -----------------------------------------------------
def _assemble(graph: Graph, em: Emitter, types: dict, opset: int, producer: str):
    used = {i for n in em.nodes for i in n.input if i}
    inits = [_initializer(graph, name, types[name]) for name, v in graph.values.items()
             if v.is_const and name in used]
    io = set(graph.inputs) | set(graph.outputs)
    produced = [o for n in graph.nodes for o in n.outputs if o and o not in io]
    g = helper.make_graph(
        em.nodes, graph.name,
        [_value_info(graph, n, types, required=True) for n in graph.inputs],
        [_value_info(graph, n, types, required=True) for n in graph.outputs],
        inits + em.consts,
        value_info=[vi for n in produced if (vi := _value_info(graph, n, types)) is not None],
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(g, opset_imports=opsets, producer_name=producer,
                              producer_version=edgeq.__version__)
    model.ir_version = max(MIN_IR_VERSION, helper.find_min_ir_version_for(opsets))
    return model


def _initializer(graph: Graph, name: str, dtype: np.dtype) -> onnx.TensorProto:
    data = graph.values[name].data
    if dtype == F32 and data.dtype != F32:
        data = carry_float32(data, f"graph '{graph.name}': constant '{name}'")
    return numpy_helper.from_array(np.asarray(data, order="C"), name)  # keeps 0-d


def _value_info(graph: Graph, name: str, types: dict, required: bool = False):
    dtype, v = types.get(name), graph.values[name]
    if dtype is None:
        if required:
            raise ValidationError(f"graph '{graph.name}': value '{name}' has no dtype to export")
        return None
    shape = None if v.shape is None else [d if isinstance(d, int | str) else None for d in v.shape]
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(dtype), shape)


def _check_model(model: onnx.ModelProto, graph: Graph, opset: int, strict: bool) -> None:
    """The standard part must be valid ONNX before writing; ``strict`` adds types and shapes.

    The dory dialect is checked structurally only: QuantLab's own opset-10 files fail
    strict shape inference (PyTorch writes negative ``Unsqueeze`` axes, legal from 11).
    """
    try:
        onnx.checker.check_model(model, full_check=strict)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValidationError(
            f"graph '{graph.name}': the exported ONNX (opset {opset}) is not valid: {first}"
        ) from None


def _annotate_dory(model: onnx.ModelProto, graph: Graph, em: Emitter) -> None:
    """QuantLab's extra attributes, added after the check (the checker refuses them)."""
    extra = dict(em.dory_attrs)
    for node in graph.nodes:
        if node.op in LINEAR_OPS and node.domain != EDGEQ_DOMAIN:
            w = graph.values.get(node.inputs[1]) if len(node.inputs) > 1 else None
            bits = w.quant.bits if w is not None and w.quant is not None else 8
            extra[node.name] = {"weight_bits": bits, "bias_bits": 32}
        elif node.op in ("Mul", "Add") and node.domain != EDGEQ_DOMAIN:
            # QuantLab marks every Mul; an Add with a constant operand is a requant add
            const = any(graph.values[i].is_const for i in node.inputs if i)
            extra[node.name] = {"mult_bits": 32} if node.op == "Mul" else {
                "add_bits": 32 if const else 8}
    for proto in model.graph.node:
        for key, value in extra.get(proto.name, {}).items():
            proto.attribute.append(helper.make_attribute(key, value))
        _explicit_defaults(proto, graph)
    _dory_names(model)


# DORY's Layer_node reads these from the node (a missing `group` is a KeyError there).
_LAYER_DEFAULTS = {
    "Conv": ("kernel_shape", "strides", "pads", "dilations", "group"),
    "MaxPool": ("strides", "pads"),
    "AveragePool": ("strides", "pads"),
}


def _explicit_defaults(proto: onnx.NodeProto, graph: Graph) -> None:
    """Write the ONNX defaults DORY does not assume: kernel shape, strides, pads..."""
    keys = _LAYER_DEFAULTS.get(proto.op_type, ())
    have = {a.name: a for a in proto.attribute}
    if not keys:
        return
    if "kernel_shape" in have:
        rank = len(have["kernel_shape"].ints)
    else:
        w = graph.values.get(proto.input[1]) if len(proto.input) > 1 else None
        if w is None or w.shape is None or len(w.shape) < 3:
            return  # the checker has accepted it; nothing to make explicit
        rank = len(w.shape) - 2
    defaults = {"strides": [1] * rank, "pads": [0] * (2 * rank), "dilations": [1] * rank,
                "group": 1}
    if "kernel_shape" not in have and "kernel_shape" in keys:
        defaults["kernel_shape"] = [int(d) for d in graph.values[proto.input[1]].shape[2:]]
    for key in keys:
        if key not in have and key in defaults:
            proto.attribute.append(helper.make_attribute(key, defaults[key]))


def _dory_names(model: onnx.ModelProto) -> None:
    """Name tensors and nodes as PyTorch 1.10 did for QuantLab (what DORY relies on).

    Every tensor a node produces gets a decimal integer name, increasing in the
    (topological) node order: DORY's ONNX parser orders nodes by ``int(output[0])``.
    Nodes are named ``<op>_<index>``: DORY recognises a global pooling by ``'Global' in
    node.name``. Graph inputs and initializers keep their names (QuantLab's are module
    paths), unless one is itself a decimal integer, which the numbering then skips.
    Each node's ``doc_string`` keeps the IR name of its output (``edgeq: <name>``).
    """
    g = model.graph
    kept = {v.name for v in g.input} | {t.name for t in g.initializer}
    rename: dict[str, str] = {}
    number = len(g.input) + len(g.initializer)
    for i, proto in enumerate(g.node):
        proto.doc_string = f"edgeq: {proto.output[0]}"  # the IR name, for people and tests
        proto.name = f"{proto.op_type}_{i}"
        for j, out in enumerate(proto.output):
            if not out:
                continue
            while str(number) in kept:
                number += 1
            rename[out] = str(number)
            proto.output[j] = str(number)
            number += 1
    for proto in g.node:
        for j, name in enumerate(proto.input):
            proto.input[j] = rename.get(name, name)
    for vi in list(g.output) + list(g.value_info):
        vi.name = rename.get(vi.name, vi.name)


def dory_config(model: onnx.ModelProto, graph: Graph, onnx_file: str) -> dict:
    """DORY's ``config_<name>.json``: input precision and the requant constants' width.

    ``BNRelu_bits`` is the width DORY stores the requantisation ``mul``/``add`` (k, l)
    in: 32 when every one fits int32, else 64.
    """
    first = graph.values[graph.inputs[0]] if graph.inputs else None
    rng = first.quant.range if first is not None and first.quant is not None else None
    wide = False
    for node in graph.nodes:
        if node.op == "RequantShift":
            for name in node.inputs[1:]:
                data = graph.values[name].data if name in graph.values else None
                if data is not None and data.size and np.abs(data.astype(np.int64)).max() >= 2**31:
                    wide = True
    return {
        "BNRelu_bits": 64 if wide else 32,
        "onnx_file": onnx_file,
        "code reserved space": DORY_CODE_RESERVED,
        "n_inputs": 1,
        "input_bits": int(rng.bits) if rng is not None else 8,
        "input_signed": bool(rng.is_signed) if rng is not None else False,
    }
