"""The edgeq dialect: standard ONNX plus our annotations in ``metadata_props``.

The exporter (:mod:`edgeq.engine.onnx.exporter`) writes an integer graph as standard ops
only, with integers carried in float32, and stores what standard ONNX cannot say as
JSON under the metadata key ``edgeq.annotations`` (format in docs/onnx-export.md):

- ``inputs``: the quantisation (range, ε, axis) of every graph input;
- ``values``: for every value that is annotated or carried in float32, its IR dtype
  and its ``QuantInfo.to_json()``;
- ``opset``: the IR graph's own opset (the file's may be higher: see the exporter);
- ``ops``: every IR op (RequantShift, HarmonisedAdd) with its name, inputs, outputs,
  integer attributes and the names of the ONNX nodes/constants it was lowered to;
- ``eps`` (optional): ``graph.meta["eps"]`` and ``graph.meta["eps_axis"]`` for the values
  in the file — the ε of accumulators (conv/linear outputs, which have no IntRange and so
  no QuantInfo), above all a network output such as 3DDFA's 62 parameters.

:func:`import_edgeq` runs on a freshly read graph (:func:`edgeq.engine.onnx.reader.to_graph`)
and restores the exported IR exactly, as passes validated one by one:

1. :func:`restore_constants`  carried constants back to their integer dtype (checked);
2. :func:`collapse_ir_ops`    each recorded lowering back into its IR op, after checking
   that the file still holds exactly what the exporter wrote for it;
3. :func:`restore_quant`      every recorded value's dtype and QuantInfo (and Cast targets).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import numpy_helper

from edgeq.engine.ir import EDGEQ_DOMAIN, IR_OPS, Graph, Node, QuantInfo
from edgeq.engine.passes.base import run_passes
from edgeq.errors import ConfigError, EdgeqError, ModelFileError
from edgeq.numerics import IntRange, to_integers

ANNOTATIONS_KEY = "edgeq.annotations"
FORMAT = "edgeq.annotations"
FORMAT_VERSION = 1
OP_KEYS = ("op", "name", "inputs", "outputs", "attrs", "names")


# -- writing (called by the exporter) ------------------------------------------------------
def op_record(node: Node, names: list[str]) -> dict:
    """What the importer needs to rebuild ``node``: itself and its lowering's names."""
    return {"op": node.op, "name": node.name, "inputs": list(node.inputs),
            "outputs": list(node.outputs), "attrs": node.attrs, "names": list(names)}


def attach_annotations(model: onnx.ModelProto, graph: Graph, types: dict, ops: list) -> None:
    """Store the annotations of ``graph`` as JSON in ``model.metadata_props``."""
    in_file = _file_value_names(model)
    values = {}
    for name, v in graph.values.items():
        carried = types.get(name) is not None and v.dtype is not None and types[name] != v.dtype
        if name in in_file and (v.quant is not None or carried):
            values[name] = {"dtype": np.dtype(v.dtype).name, "quant": _quant_json(v.quant)}
    data = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "opset": graph.opset,
        "inputs": {n: _quant_json(graph.values[n].quant) for n in graph.inputs},
        "values": values,
        "ops": ops,
    }
    eps = _meta_eps(graph, in_file)
    if eps is not None:
        data["eps"] = eps
    entry = model.metadata_props.add()
    entry.key, entry.value = ANNOTATIONS_KEY, json.dumps(data, default=_json_scalar)


def _meta_eps(graph: Graph, in_file: set[str]) -> dict | None:
    """``{"values": {name: eps}, "axis": {name: axis}}`` for the ε that ``graph.meta``
    records (F2T's accumulators), restricted to values the file holds; None if none."""
    eps = graph.meta.get("eps") or {}
    axes = graph.meta.get("eps_axis") or {}
    values = {n: e for n, e in eps.items() if n in in_file}
    if not values:
        return None
    return {"values": values, "axis": {n: int(a) for n, a in axes.items() if n in values}}


def _file_value_names(model: onnx.ModelProto) -> set[str]:
    g = model.graph
    names = {i.name for i in g.input} | {i.name for i in g.initializer}
    for n in g.node:
        names.update(n.input)
        names.update(n.output)
    return names


def _quant_json(q: QuantInfo | None) -> dict | None:
    return None if q is None else q.to_json()


def _json_scalar(x):
    """NumPy scalars (e.g. an ε stored as np.float64 in a tuple) as Python numbers."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


# -- reading -------------------------------------------------------------------------------
def has_annotations(model: onnx.ModelProto) -> bool:
    return any(p.key == ANNOTATIONS_KEY for p in model.metadata_props)


def read_annotations(model: onnx.ModelProto, source: str) -> dict:
    """The parsed and shape-checked annotations; ModelFileError naming the file if bad."""
    text = next(p.value for p in model.metadata_props if p.key == ANNOTATIONS_KEY)
    where = f"{source}: metadata '{ANNOTATIONS_KEY}'"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ModelFileError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFileError(f"{where}: not an edgeq annotation record")
    if data.get("version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{where}: format version {data.get('version')!r}, this edgeq reads {FORMAT_VERSION}"
        )
    for key, kind in (("opset", int), ("inputs", dict), ("values", dict), ("ops", list)):
        if not isinstance(data.get(key), kind):
            raise ModelFileError(f"{where}: key '{key}' missing or not a {kind.__name__}")
    for i, op in enumerate(data["ops"]):
        if not isinstance(op, dict) or set(OP_KEYS) - set(op) or op["op"] not in IR_OPS:
            raise ModelFileError(f"{where}: ops[{i}] is not a RequantShift/HarmonisedAdd record")
    if "eps" in data:
        data["eps"] = _check_eps(data["eps"], where)
    return data


def _check_eps(rec, where: str) -> dict:
    """The optional ``eps`` record: every ε a positive finite number or a non-empty list of
    them, every axis an int naming a value that has a list ε."""
    if not isinstance(rec, dict) or not isinstance(rec.get("values"), dict) \
            or not isinstance(rec.get("axis", {}), dict):
        raise ModelFileError(f"{where}: key 'eps' must hold the dicts 'values' and 'axis'")
    values = {}
    for name, e in rec["values"].items():
        flat = e if isinstance(e, list) else [e]
        ok = bool(flat) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                and np.isfinite(v) and v > 0 for v in flat)
        if not ok:
            raise ModelFileError(f"{where}: eps of '{name}' is not a positive finite number "
                                 "or a list of them")
        values[name] = [float(v) for v in e] if isinstance(e, list) else float(e)
    axes = rec.get("axis", {})
    for name, a in axes.items():
        if not isinstance(a, int) or isinstance(a, bool) or not isinstance(values.get(name), list):
            raise ModelFileError(f"{where}: eps axis of '{name}' must be an int for a "
                                 "value with one ε per channel")
    return {"values": values, "axis": dict(axes)}


def import_edgeq(graph: Graph, model: onnx.ModelProto, input_range: IntRange | None = None):
    """Restore the exported IR from a graph read from an edgeq-dialect file."""
    source = graph.meta.get("source", graph.name)
    ann = read_annotations(model, source)

    def restore_constants_(g: Graph) -> Graph:
        return restore_constants(g, ann, source)

    def collapse_ir_ops_(g: Graph) -> Graph:
        return collapse_ir_ops(g, ann, model, source)

    def restore_quant_(g: Graph) -> Graph:
        return restore_quant(g, ann, source, input_range)

    restore_constants_.__name__ = "restore_constants"
    collapse_ir_ops_.__name__ = "collapse_ir_ops"
    restore_quant_.__name__ = "restore_quant"
    graph = run_passes(graph, [restore_constants_, collapse_ir_ops_, restore_quant_])
    # the lowering was checked at the file's opset; the IR's nodes mean the same at its own
    graph.opset = ann["opset"]
    graph.meta["dialect"] = "edgeq"
    if "eps" in ann:  # the accumulators' ε, as F2T's to_ir() recorded them
        missing = [n for n in ann["eps"]["values"] if n not in graph.values]
        if missing:
            raise ModelFileError(f"{source}: eps recorded for '{missing[0]}', which is not "
                                 "in the graph")
        graph.meta["eps"] = dict(ann["eps"]["values"])
        graph.meta["eps_axis"] = dict(ann["eps"]["axis"])
    return graph


# -- 1. constants --------------------------------------------------------------------------
def restore_constants(graph: Graph, ann: dict, source: str) -> Graph:
    """Carried constants back to their recorded dtype; integers are checked to be exact."""
    for name, rec in ann["values"].items():
        v = graph.values.get(name)
        if v is None or not v.is_const:
            continue
        dtype = _dtype(rec, name, source)
        what = f"{source}: constant '{name}'"
        if np.issubdtype(dtype, np.integer):
            v.data = to_integers(v.data, what, dtype=dtype)
        else:
            v.data = v.data.astype(dtype)
        v.dtype = v.data.dtype
    return graph


def _dtype(rec: dict, name: str, source: str) -> np.dtype:
    try:
        return np.dtype(rec["dtype"])
    except (KeyError, TypeError) as exc:
        raise ModelFileError(
            f"{source}: annotation of '{name}' has no valid dtype ({exc})"
        ) from None


# -- 2. IR ops -----------------------------------------------------------------------------
def collapse_ir_ops(graph: Graph, ann: dict, model: onnx.ModelProto, source: str) -> Graph:
    """Replace each recorded lowering by its IR op, once the file is checked against it."""
    protos = {n.name: n for n in model.graph.node}
    consts = {t.name: t for t in model.graph.initializer}
    for rec in ann["ops"]:
        node = Node(rec["op"], rec["name"], list(rec["inputs"]), list(rec["outputs"]),
                    dict(rec["attrs"]), EDGEQ_DOMAIN)
        lowered = _replay(node, graph.opset, rec["names"], source)
        _check_lowering(node, lowered, protos, consts, source)
        _replace(graph, node, {p.name for p in lowered.nodes})
    graph.remove_unused()
    return graph


def _replay(node: Node, opset: int, names: list[str], source: str):
    """Lower ``node`` again with the recorded names: what the exporter must have written."""
    # the exporter imports this module, so it is imported here, at use
    from edgeq.engine.onnx.exporter import Emitter, lower_ir_node

    pending = iter(names)

    def next_name(base: str) -> str:
        try:
            return next(pending)
        except StopIteration:
            raise ModelFileError(
                f"{source}: op '{node.name}' records too few names for its lowering"
            ) from None

    em = Emitter("edgeq", opset, next_name)
    try:
        lower_ir_node(node, em)
    except (EdgeqError, KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(
            f"{source}: op '{node.name}' has unusable attributes ({exc})"
        ) from None
    if len(em.names) != len(names):
        raise ModelFileError(f"{source}: op '{node.name}' records too many names")
    return em


def _check_lowering(node: Node, lowered, protos: dict, consts: dict, source: str) -> None:
    """Every node and constant of the lowering must be in the file, unchanged."""
    stale = f"{source}: op '{node.name}' ({node.op}) does not match its edgeq annotation"
    for expected in lowered.nodes:
        if protos.get(expected.name) != expected:
            raise ModelFileError(f"{stale}: node '{expected.name}' differs or is missing "
                                 "(was the file edited after export?)")
    for expected in lowered.consts:
        got = consts.get(expected.name)
        if got is None or not _same_tensor(got, expected):
            raise ModelFileError(f"{stale}: constant '{expected.name}' differs or is missing")


def _same_tensor(a: onnx.TensorProto, b: onnx.TensorProto) -> bool:
    x, y = numpy_helper.to_array(a), numpy_helper.to_array(b)
    return x.dtype == y.dtype and x.shape == y.shape and bool(np.array_equal(x, y))


def _replace(graph: Graph, node: Node, chain: set[str]) -> None:
    """Put ``node`` where the first node of its chain was; drop the chain."""
    at = next(i for i, n in enumerate(graph.nodes) if n.name in chain)
    graph.nodes = [n for n in graph.nodes if n.name not in chain]
    graph.nodes.insert(at, node)


# -- 3. dtypes and quantisation ------------------------------------------------------------
def restore_quant(graph: Graph, ann: dict, source: str, input_range: IntRange | None) -> Graph:
    """Every recorded value gets its IR dtype and QuantInfo back (and a Cast its ``to``);
    graph inputs get their recorded quantisation, checked against ``input_range``."""
    for name, rec in ann["values"].items():
        v = graph.values.get(name)
        if v is None:
            raise ModelFileError(f"{source}: annotated value '{name}' is not in the graph")
        v.dtype = _dtype(rec, name, source)
        v.quant = _quant(rec.get("quant"), name, source)
    for node in graph.nodes:  # a Cast to a carried integer type was written to float32
        rec = ann["values"].get(node.outputs[0]) if node.op == "Cast" else None
        if rec is not None:
            node.attrs["to"] = onnx.helper.np_dtype_to_tensor_dtype(_dtype(rec, node.name, source))
    for name in graph.inputs:
        q = _quant(ann["inputs"].get(name), name, source)
        graph.values[name].quant = q
        if input_range is not None and (q is None or q.range != input_range):
            raise ConfigError(
                f"{source}: input '{name}' is recorded with range "
                f"{None if q is None else q.range}, not the requested {input_range}"
            )
    return graph


def _quant(data, name: str, source: str) -> QuantInfo | None:
    if data is None:
        return None
    try:
        return QuantInfo.from_json(data)
    except (EdgeqError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{source}: annotation of '{name}' is not a QuantInfo ({exc})"
        ) from None
