"""DORY's ONNX -> DORY-graph parsing rules, re-stated from its public code (test helper).

DORY cannot run in the tests, so this module states, as checks, what its Quantlab
frontend does with a file (pulp-platform/dory: ``dory/Parsers/Parser_ONNX_to_DORY.py``,
``DORY_node.py``, ``Layer_node.py``, ``Frontend_frameworks/Quantlab/Parser.py``,
``Pattern_rewriter.py``, ``rules.json``). Where DORY's versions differ, the strictest
is taken: the older parser orders nodes by ``int(node.output[0])``. Every rule that would
make DORY stop (an exception, ``sys.exit``, an ``assert``) raises :class:`DoryRuleError`
with the rule's name. :func:`dory_parse` returns the fused DORY graph as a list of dicts.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

ACCEPTED = {"Conv", "Pad", "Mul", "Add", "Div", "Constant", "AveragePool",
            "GlobalAveragePool", "MaxPool", "Cast", "Clip", "Floor", "Flatten", "Gemm",
            "MatMul", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Reshape",
            "Sigmoid", "LogSoftmax"}
NEGLECTED = {"Cast", "Floor", "Flatten", "Shape", "Gather", "Unsqueeze", "Concat", "Reshape",
             "Sigmoid", "LogSoftmax", "Squeeze"}
LAYER_NAMES = {"AveragePool": "Pooling", "MaxPool": "Pooling", "GlobalAveragePool": "Pooling",
               "Conv": "Convolution", "Gemm": "FullyConnected", "MatMul": "FullyConnected",
               "Add": "Addition"}
FRONTEND_IR = {"Convolution", "Pooling", "FullyConnected", "Addition", "QAddition", "Relu",
               "BNRelu", "Requant"}
# rules.json: name -> op chain, each node feeding the next
CHAINS = {"BNRelu_requant": ["Mul", "Add", "Div", "Clip"], "Relu": ["Mul", "Div", "Clip"],
          "PadConvolution": ["Pad", "Convolution"], "PadPooling": ["Pad", "Pooling"]}
ADDER_KEYS = [f"{p}_{k}" for p in ("in1", "in2") for k in ("mul", "add", "shift", "n_levels",
                                                            "rq")] + [
    "out_mul", "out_add", "out_shift", "out_rq", "out_n_levels", "add_bits"]


class DoryRuleError(AssertionError):
    """A rule DORY's parser enforces (by crashing or exiting) does not hold."""


def _need(cond: bool, rule: str, detail: str) -> None:
    if not cond:
        raise DoryRuleError(f"{rule}: {detail}")


def _attr(a: onnx.AttributeProto):
    """DORY_node.add_special_attributes: i, else int(f), else ints, else 0."""
    if a.i:
        return int(a.i)
    if a.f:
        return int(a.f)
    if a.ints:
        return list(a.ints)
    return 0


def _dims(model: onnx.ModelProto) -> dict[str, list[int]]:
    g = model.graph
    return {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in list(g.input) + list(g.value_info) + list(g.output)}


def _order_key(name: str, rule: str) -> int:
    try:
        return int(name)
    except ValueError:
        raise DoryRuleError(f"{rule}: tensor name {name!r} is not a decimal integer "
                            "(DORY compares int(node.output[0]))") from None


def dory_parse(model: onnx.ModelProto, config: dict) -> list[dict]:
    """The DORY graph DORY's Quantlab frontend would build, or :class:`DoryRuleError`."""
    _need("BNRelu_bits" in config, "config", "BNRelu_bits missing (KeyError in DORY)")
    model = shape_inference.infer_shapes(model)  # DORY does the same first
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t)
              for n in g.node if n.op_type == "Constant"}
    dims = _dims(model)
    graph: list[dict] = []
    for proto in g.node:
        _need(proto.op_type in ACCEPTED, "layers_accepted", f"{proto.op_type} not supported")
        if proto.op_type in NEGLECTED:
            # the older parser: attach to the last DORY node if this output comes later
            last = next((n for n in reversed(graph) if n["name"] != "Constant"), None)
            _need(last is not None, "neglected", f"{proto.name} has no DORY node before it")
            if (_order_key(proto.output[0], "neglected")
                    > _order_key(last["output_index"], "neglected")):
                last["output_index"] = proto.output[0]
            continue
        graph.append(_node(proto, inits, consts, dims))
    graph = [n for n in graph if n["name"] != "Constant"]
    graph = _fuse(graph)
    _adders(graph, g)
    _precision(graph, config)
    for n in graph:
        _need(n["name"] in FRONTEND_IR, "check_graph",
              f"node {n['name']} is not accepted inside the DORY Frontend IR")
    return graph


def _node(proto, inits, consts, dims) -> dict:
    name = LAYER_NAMES.get(proto.op_type, proto.op_type)
    inputs = [i for i in proto.input if i not in inits and i not in consts]
    constants = {i: (inits[i] if i in inits else consts[i]) for i in proto.input
                 if i in inits or i in consts}
    if name == "Addition" and len(inputs) == 1:
        name = "Add"
    node = {"name": name, "op": proto.op_type, "input_indexes": inputs,
            "output_index": proto.output[0], "constants": constants,
            "attrs": {a.name: _attr(a) for a in proto.attribute}}
    if name in ("Convolution", "Pooling", "FullyConnected", "Addition"):
        _layer(node, proto, dims)
    return node


def _layer(node: dict, proto, dims) -> None:
    """Layer_node.populate_Layer_node: kernel, group, dimensions from value_info."""
    a, name = node["attrs"], node["name"]
    if name in ("FullyConnected", "Addition"):
        a.setdefault("kernel_shape", [1, 1])
        a.setdefault("strides", [1, 1])
        a.setdefault("group", 1)
    if name == "Pooling":
        a.setdefault("group", 1)
    if "Global" in proto.name:
        a["kernel_shape"] = dims.get(node["input_indexes"][0], [0, 0, 0, 0])[2:]
        a["strides"] = [1, 1]
    _need("group" in a, "Layer_node", f"{proto.name}: no 'group' attribute (KeyError)")
    for key in ("kernel_shape", "strides"):
        _need(key in a, "Layer_node", f"{proto.name}: no '{key}' attribute")
    out = dims.get(proto.output[0])
    _need(out is not None and len(out) >= 2, "Layer_node",
          f"{proto.name}: no shape of rank >= 2 for output {proto.output[0]!r} in value_info")
    node["output_channels"] = out[1]
    if a["group"] > 1:
        inp = dims.get(node["input_indexes"][0])
        _need(inp is not None and a["group"] == out[1] == inp[1], "Layer_node",
              f"{proto.name}: grouped conv that is not depthwise")


def _fuse(graph: list[dict]) -> list[dict]:
    """rules.json patterns (chains), longest match first, as pattern_matching does."""
    i = 0
    while i < len(graph):
        for rule, ops in sorted(CHAINS.items(), key=lambda kv: -len(kv[1])):
            chain = _chain(graph, i, ops)
            if chain is not None:
                graph[i:i + 1] = [_rewrite(rule, [graph[j] for j in chain])]
                for j in sorted(chain[1:], reverse=True):
                    del graph[j]
                break
        i += 1
    return graph


def _chain(graph: list[dict], start: int, ops: list[str]) -> list[int] | None:
    if graph[start]["name"] != ops[0]:
        return None
    found, node = [start], graph[start]
    for op in ops[1:]:
        nxt = next((j for j, n in enumerate(graph)
                    if n["name"] == op and node["output_index"] in n["input_indexes"]), None)
        if nxt is None:
            return None
        found.append(nxt)
        node = graph[nxt]
    return found


def _rewrite(rule: str, nodes: list[dict]) -> dict:
    first, last = nodes[0], nodes[-1]
    if rule.startswith("Pad"):
        fused = dict(last)
        fused["input_indexes"] = first["input_indexes"]
        return fused
    clip = last["attrs"]
    for key in ("min", "max", "out_bits"):
        _need(key in clip, rule, f"Clip without '{key}' attribute")
    div = nodes[-2]["constants"]
    _need(len(div) == 1, rule, "Div without one constant divisor")
    d = float(np.ravel(next(iter(div.values())))[0])
    _need(d > 0 and 2 ** round(math.log2(d)) == d, rule, f"divisor {d} is not a power of two")
    fused = {"name": "BNRelu" if rule == "BNRelu_requant" else "Relu",
             "input_indexes": first["input_indexes"], "output_index": last["output_index"],
             "outshift": round(math.log2(d)), "min": clip["min"], "max": clip["max"],
             "output_activation_bits": clip["out_bits"],
             "output_activation_type": "int" if clip["min"] < 0 else "uint",
             "attrs": {}}
    if rule == "BNRelu_requant":
        for node, vec, scalar in ((nodes[0], "k", "outmul"), (nodes[1], "l", "outadd")):
            _need(len(node["constants"]) == 1, rule, f"{node['op']} needs one constant operand")
            value = next(iter(node["constants"].values()))
            if np.shape(value):
                fused[vec] = value
            else:
                fused["name"] = "Requant" if vec == "k" else fused["name"]
                fused[scalar] = value
    return fused


def _adders(graph: list[dict], g: onnx.GraphProto) -> None:
    """Quantlab Parser.frontend_mapping_to_DORY_nodes on Addition nodes."""
    schedule = {n.output[0]: i for i, n in enumerate(g.node)}
    for node in graph:
        if node["name"] != "Addition":
            continue
        missing = [k for k in ADDER_KEYS if k not in node["attrs"]]
        _need(not missing, "Addition", f"attributes {missing} missing (AttributeError)")
        for x in node["input_indexes"][:2]:
            _need(x in schedule, "Addition", f"input {x!r} is not a node output "
                  "(pos_in_schedule returns None)")


def _precision(graph: list[dict], config: dict) -> None:
    """add_nodes_precision: input precision from the config, output bits per node."""
    for i, node in enumerate(graph):
        if i == 0:
            node["input_activation_bits"] = config.get("input_bits", 8)
            node["input_activation_type"] = "int" if config.get("input_signed") else "uint"
        else:
            prev = next((p for p in graph if p["output_index"] == node["input_indexes"][0]),
                        None)
            if prev is not None:
                node["input_activation_bits"] = prev.get("output_activation_bits")
                node["input_activation_type"] = prev.get("output_activation_type")
        if node["name"] == "Addition":
            levels = node["attrs"]["out_n_levels"]
            node["output_activation_bits"] = int(np.log2(levels))
            signed = node["attrs"].get("out_signed")
            node["output_activation_type"] = "int" if signed else "uint"
        elif node["name"] in ("Convolution", "FullyConnected"):
            node["output_activation_bits"], node["output_activation_type"] = 32, "int"
        elif node["name"] == "Pooling":
            node["output_activation_bits"] = node.get("input_activation_bits")
            node["output_activation_type"] = node.get("input_activation_type")


def dangling(graph: list[dict], model: onnx.ModelProto) -> list[dict]:
    """DORY nodes whose output no DORY node reads and that are not a graph output.

    Not a crash in DORY, but a lost branch: what a neglected op (e.g. ``Concat``, which
    DORY treats as a pass-through) does to a network that needs it.
    """
    outputs = {o.name for o in model.graph.output}
    read = {i for n in graph for i in n["input_indexes"]}
    return [n for n in graph if n["output_index"] not in read | outputs]
