"""The integer IR of a resolved PTQ config, in our dialect (DESIGN §3, §8).

- a graph input becomes an integer tensor at ε = 2^−FL (``Model.run`` quantises a float
  input by the input rule, round half up);
- a linear layer becomes ``Conv/Gemm/MatMul(x̂, ŵ, b̂) → acc`` (int64, exact) then
  ``RequantShift(acc, mul, add)`` with ``shift = d = max_c d_c``, ``mul_c = 2^(d − d_c)``,
  ``add = 2^(d−1)`` (round half up) where ``d_c = FL_x + FL_w[c] − FL_out``: a pure shift
  for per-tensor weights (mul = 1) — and ``lo = 0`` when a Relu was fused;
- an add layer becomes a HarmonisedAdd whose inputs are shifted to the output FL;
- a global average pool becomes an exact sum — a depthwise all-ones ``Conv`` over an
  NCHW input (so the C backend runs it), ``ReduceSum`` otherwise — and a RequantShift by
  ``mul/2^d ≈ 2^(FL_out − FL_x)/count`` (:func:`pool_requant`);
- a clustered weight is its decoded integers with the codebook in its QuantInfo;
- a clustered activation is requantised to its codebook's grid, then decoded by
  threshold steps (:func:`_requant_target`), the codebook in the output's QuantInfo;
- a float node reads its integer inputs through ``Cast → Mul(ε)``.
"""

from __future__ import annotations

import numpy as np
import onnx

from edgeq.engine.ir import EDGEQ_DOMAIN, Graph, Node, QuantInfo, Value
from edgeq.engine.ptq.config import PTQConfig, VarQuant
from edgeq.engine.ptq.emulate import act_range, activation_quant
from edgeq.engine.ptq.plan import Layer, Plan
from edgeq.engine.ptq.resolve import thresholds, weight_integers, weight_range
from edgeq.errors import IntegerOverflowError
from edgeq.numerics import IntRange, narrowest_dtype


def act_info(vq: VarQuant) -> tuple[QuantInfo, np.dtype]:
    """An activation's QuantInfo (a clustered one: its grid's range and its codebook)."""
    rng = act_range(vq)
    book = None if vq.codebook is None else tuple(sorted(int(c) for c in vq.codebook))
    return QuantInfo(rng, float(np.exp2(-vq.fl)), None, book), narrowest_dtype(rng.lo, rng.hi)


def _requant_target(g: Graph, output: str, aq: VarQuant) -> tuple[str, list[Node]]:
    """Where a layer's requantiser writes, and the nodes that then decode it.

    A plain activation: the layer's output itself. A clustered one (DESIGN §3.8): the
    requantiser writes the integers on the codebook's grid to a new value, and the
    decoder maps each to its codebook entry, ``book[#{j : q ≥ t_j}]``, with existing
    integer ops only (so the file exports, imports and compiles like any other): one
    ``RequantShift(q, mul=1, add=1−t_j, lo=0, hi=1)`` per threshold — the step
    ``[q ≥ t_j]`` — and one ``HarmonisedAdd`` summing the steps times the codebook's
    increments ``c_j − c_{j−1}`` plus ``c_0`` (its output requantiser, mul 1, shift 0),
    clipped to [c_0, c_last]: exact integer arithmetic, equal to the emulation's
    lookup. The output value holds the decoded integers and carries the codebook, so
    memory accounting counts the index width.
    """
    q, dtype = act_info(aq)
    out = g.values[output]
    out.quant, out.dtype = q, np.dtype(dtype)
    if aq.codebook is None:
        return output, []
    fine = g.fresh_name(f"{output}.grid")
    g.values[fine] = Value(fine, out.shape, np.dtype(dtype), QuantInfo(q.range, q.eps))
    book = [int(c) for c in q.codebook]
    if len(book) == 1:  # a constant: mul 0, add c_0
        return fine, [_rq_node(g, fine, output, 0, book[0], book[0], book[0])]
    nodes, steps = [], []
    for j, t in enumerate(thresholds(book)):
        step = g.fresh_name(f"{output}.step{j}")
        g.values[step] = Value(step, out.shape, np.dtype(np.uint8),
                               QuantInfo(IntRange.unsigned(2), 1.0))
        nodes.append(_rq_node(g, fine, step, 1, 1 - int(t), 0, 1))
        steps.append(step)
    n = len(steps)
    attrs = {"in_mul": [b - a for a, b in zip(book[:-1], book[1:], strict=True)],
             "in_add": [0] * n, "in_shift": [0] * n, "in_rq": [1] * n,
             "out_mul": 1, "out_add": book[0], "out_shift": 0, "out_rq": 1,
             "lo": book[0], "hi": book[-1]}
    nodes.append(Node("HarmonisedAdd", g.fresh_name(f"{output}.decode"), steps, [output], attrs,
                      EDGEQ_DOMAIN))
    return fine, nodes


def _rq_node(g: Graph, x: str, y: str, mul: int, add: int, lo: int, hi: int) -> Node:
    """``y = clip(x·mul + add, lo, hi)`` (a RequantShift with shift 0)."""
    return Node("RequantShift", g.fresh_name(f"{y}.rq"),
                [x, _const(g, f"{y}.mul", np.asarray(mul, np.int64)),
                 _const(g, f"{y}.add", np.asarray(add, np.int64))],
                [y], {"shift": 0, "lo": lo, "hi": hi}, EDGEQ_DOMAIN)


def lower(graph: Graph, plan: Plan, cfg: PTQConfig) -> Graph:
    """A new, validated integer graph; ``graph`` is not modified."""
    from edgeq.engine.backends.reference import supported_ops
    from edgeq.engine.passes.shapes import complete_shapes

    g = graph.copy()
    acts = activation_quant(plan, graph, cfg)
    for name in g.inputs:
        _set_act(g.values[name], acts[name])
    layers = {x.node.name: x for x in plan.layers}
    fused = {x.relu.name for x in plan.layers if x.relu is not None}
    nodes: list[Node] = []
    dequantised: dict[str, str] = {}
    for node in g.nodes:
        if node.name in fused:
            continue
        if node.name in plan.index_nodes:
            nodes.append(node)
        elif node.name in plan.float_nodes:
            node.inputs = [_dequantise(g, i, acts, dequantised, nodes) for i in node.inputs]
            nodes.append(node)
        elif node.name in layers:
            layer = layers[node.name]
            lq = cfg.layers[layer.name]
            if layer.kind == "linear":
                nodes += _linear(g, layer, acts[node.inputs[0]], lq.weights, lq.activations)
            elif layer.kind == "pool":
                nodes += _pool(g, layer, acts[node.inputs[0]], lq.activations)
            else:
                nodes += _add(g, layer, [acts[i] for i in node.inputs], lq.activations)
        else:  # pass-through: same quantisation as its input
            nodes.append(node)
            src, out = g.values[node.inputs[0]], g.values[node.outputs[0]]
            out.dtype, out.quant = src.dtype, src.quant
    g.nodes = _static_reshapes(g, nodes, plan.index_nodes)
    g.remove_unused()
    g.meta = {**g.meta, "ptq": "edgeq"}
    g = complete_shapes(g)
    g.validate(supported_ops())
    return g


def _static_reshapes(g: Graph, nodes: list[Node], index_nodes) -> list[Node]:
    """A Reshape whose target is computed from shapes (torch's ``x.view(x.size(0), -1)``:
    Shape → Gather → Unsqueeze → Concat) gets the constant target ``[-1, *rest]`` when
    its output's shape is known after the batch axis; the shape computation, then unused,
    is dropped (integer backends such as the C one need no Shape op)."""
    targets = _index_values(g, [n for n in nodes if n.name in index_nodes])
    for node in nodes:
        t = targets.get(node.inputs[1]) if node.op == "Reshape" else None
        if t is None or t.ndim != 1 or not t.size or t[0] != BATCH_PROBE or \
                np.count_nonzero(t == BATCH_PROBE) != 1:
            continue
        rest = t[1:].copy()
        if np.count_nonzero(rest == -1) == 1:  # the inferred axis, from the input's size
            size = g.values[node.inputs[0]].shape
            if not size or not all(isinstance(d, int) for d in size[1:]):
                continue
            rest[rest == -1] = int(np.prod(size[1:])) // int(np.prod(rest[rest != -1]))
        if np.any(rest <= 0):
            continue
        node.inputs[1] = _const(g, f"{node.name}.shape", np.concatenate([[-1], rest]))
    while True:  # drop the shape computations nothing reads any more
        read = {i for n in nodes for i in n.inputs if i} | set(g.outputs)
        dead = {n.name for n in nodes
                if n.name in index_nodes and not any(o in read for o in n.outputs)}
        if not dead:
            return nodes
        nodes = [n for n in nodes if n.name not in dead]


BATCH_PROBE = 7919  # a batch size no real dimension equals: marks where the batch went


def _index_values(g: Graph, index: list[Node]) -> dict[str, np.ndarray]:
    """The values of the shape computations for a batch of BATCH_PROBE (a Shape of a
    tensor whose other dimensions are known); values that cannot be computed are left
    out."""
    from edgeq.engine.backends.reference.registry import KERNELS

    env = {v.name: v.data for v in g.constants()}
    for node in index:
        if node.op == "Shape":
            shape = g.values[node.inputs[0]].shape
            if shape and all(isinstance(d, int) for d in shape[1:]) and not node.attrs:
                env[node.outputs[0]] = np.asarray([BATCH_PROBE, *shape[1:]], np.int64)
            continue
        if any(i and i not in env for i in node.inputs) or node.op not in KERNELS:
            continue
        attrs = dict(node.attrs)
        if KERNELS[node.op].opset_aware:
            attrs["opset"] = g.opset
        res = KERNELS[node.op].fn(*[env[i] if i else None for i in node.inputs], **attrs)
        for name, a in zip(node.outputs, res if isinstance(res, tuple) else (res,), strict=False):
            env[name] = np.asarray(a)
    return env


def _set_act(v: Value, vq: VarQuant) -> None:
    v.quant, v.dtype = act_info(vq)
    v.dtype = np.dtype(v.dtype)


def _const(g: Graph, base: str, data: np.ndarray, quant: QuantInfo | None = None) -> str:
    name = g.fresh_name(base)
    g.values[name] = Value(name, tuple(data.shape), data.dtype, quant, data)
    return name


def _linear(g: Graph, layer: Layer, x_q: VarQuant, wq: VarQuant, aq: VarQuant) -> list[Node]:
    node, axis = layer.node, layer.channel_axis
    wv = g.values[layer.weight]
    w_int = weight_integers(wv.data, wq, axis)
    rng = weight_range(wq)
    w_fl = np.asarray(wq.channel_fl if wq.channel_fl is not None else wq.fl, dtype=np.int64)
    eps = tuple(float(e) for e in np.exp2(-w_fl)) if w_fl.ndim else float(np.exp2(-w_fl))
    quant = QuantInfo(rng, eps, axis if w_fl.ndim else None, wq.codebook)
    wv.data = w_int.astype(narrowest_dtype(rng.lo, rng.hi))
    wv.dtype, wv.quant = wv.data.dtype, quant
    inputs = [node.inputs[0], layer.weight]
    if layer.bias is not None:
        inputs.append(_bias(g, layer, x_q.fl + w_fl))
    acc = g.fresh_name(f"{node.name}.acc")
    g.values[acc] = Value(acc, None, np.dtype(np.int64))
    linear = Node(node.op, node.name, inputs, [acc], dict(node.attrs), node.domain)
    d_c = x_q.fl + w_fl - aq.fl  # per-channel (or scalar) right shift
    d = max(int(np.max(d_c)), 0)
    mul = np.exp2(d - d_c).astype(np.int64)
    if mul.ndim:  # per channel: along axis 1 of the output
        out_rank = len(g.values[node.outputs[0]].shape or (0, 0))
        mul = mul.reshape((1, -1) + (1,) * (out_rank - 2))
    add = np.asarray(2 ** (d - 1) if d > 0 else 0, dtype=np.int64)
    dst, decoder = _requant_target(g, layer.output, aq)
    rng = act_range(aq)
    lo = 0 if layer.relu is not None else rng.lo
    rq = Node("RequantShift", g.fresh_name(f"{node.name}.requant"),
              [acc, _const(g, f"{node.name}.mul", mul), _const(g, f"{node.name}.add", add)],
              [dst], {"shift": d, "lo": lo, "hi": rng.hi}, EDGEQ_DOMAIN)
    return [linear, rq, *decoder]


def _bias(g: Graph, layer: Layer, fl) -> str:
    """The bias as integers at ε_x·ε_w (round half up), in the narrowest signed width."""
    b = g.values[layer.bias].data.astype(np.float64)
    q = np.floor(b * np.exp2(np.asarray(fl, dtype=np.float64)) + 0.5).astype(np.int64)
    m = int(np.max(np.abs(q))) if q.size else 0
    bits = max(32, m.bit_length() + 1)
    if bits > 62:
        raise IntegerOverflowError(
            f"node '{layer.name}': the integer bias needs {bits} bits at ε_x·ε_w = 2^-{np.max(fl)} "
            "(the layer's input and weight FLs are very large: are its activations all ~0?)")
    eps = np.exp2(-np.asarray(fl, dtype=np.float64))
    eps = tuple(float(e) for e in eps) if eps.ndim else float(eps)
    rng = IntRange(1 << bits, -(1 << (bits - 1)))  # from_bits stops at 32; biases need up to 62
    quant = QuantInfo(rng, eps, q.ndim - 1 if isinstance(eps, tuple) else None)
    return _const(g, f"{layer.name}.bias_q", q.astype(np.int32 if bits == 32 else np.int64), quant)


def _add(g: Graph, layer: Layer, ins: list[VarQuant], aq: VarQuant) -> list[Node]:
    attrs = {"in_mul": [], "in_add": [], "in_shift": [], "in_rq": []}
    for vq in ins:
        d = vq.fl - aq.fl
        mul, add, shift = (1, 2 ** (d - 1), d) if d > 0 else (2**-d, 0, 0)
        for k, v in zip(attrs, (mul, add, shift, int(d != 0)), strict=True):
            attrs[k].append(v)
    dst, decoder = _requant_target(g, layer.output, aq)
    rng = act_range(aq)
    attrs.update(lo=0 if layer.relu is not None else rng.lo, hi=rng.hi)
    return [Node("HarmonisedAdd", layer.node.name, list(layer.node.inputs), [dst],
                 attrs, EDGEQ_DOMAIN), *decoder]


POOL_MUL_BITS = 16


def pool_requant(count: int, fl_x: int, fl_y: int) -> tuple[int, int]:
    """``(mul, d)`` with ``mul/2^d ≈ 2^(fl_y − fl_x)/count``: exact when ``count`` is a
    power of two (mul a power of two), else ``mul`` keeps 16 significant bits."""
    k = (count - 1).bit_length()  # ceil(log2 count)
    if count == 1 << k:
        mul, d = 1, k + fl_x - fl_y
    else:
        s = POOL_MUL_BITS - 1 + k
        mul, d = (2 * (1 << s) + count) // (2 * count), s + fl_x - fl_y  # round(2^s / count)
    if d < 0:
        mul, d = mul << -d, 0
    return mul, d


def apply_requant(acc: np.ndarray, mul: int, d: int, lo: int, hi: int) -> np.ndarray:
    """``clip(floor((acc·mul + 2^(d−1)) / 2^d), lo, hi)`` in int64 (round half up)."""
    add = (1 << (d - 1)) if d > 0 else 0
    return np.clip((np.asarray(acc, np.int64) * mul + add) >> d, lo, hi)


def _pool(g: Graph, layer: Layer, x_q: VarQuant, aq: VarQuant) -> list[Node]:
    from edgeq.engine.ptq.plan import pool_count

    node = layer.node
    x = g.values[node.inputs[0]]
    mul, d = pool_requant(pool_count(g, node), x_q.fl, aq.fl)
    acc = g.fresh_name(f"{node.name}.sum")
    g.values[acc] = Value(acc, None, np.dtype(np.int64))
    axes = np.arange(2, len(x.shape), dtype=np.int64)
    if len(x.shape) == 4 and all(isinstance(d, int) for d in x.shape[1:]):
        total = _sum_conv(g, node, x, acc)  # the C backend's depthwise kernel runs it
    elif g.opset >= 13:
        total = Node("ReduceSum", node.name, [x.name, _const(g, f"{node.name}.axes", axes)],
                     [acc], {"keepdims": 1})
    else:
        total = Node("ReduceSum", node.name, [x.name], [acc],
                     {"axes": axes.tolist(), "keepdims": 1})
    dst, decoder = _requant_target(g, layer.output, aq)
    rng = act_range(aq)
    add = np.asarray(2 ** (d - 1) if d > 0 else 0, dtype=np.int64)
    lo = 0 if layer.relu is not None else rng.lo
    rq = Node("RequantShift", g.fresh_name(f"{node.name}.requant"),
              [acc, _const(g, f"{node.name}.mul", np.asarray(mul, np.int64)),
               _const(g, f"{node.name}.add", add)],
              [dst], {"shift": d, "lo": lo, "hi": rng.hi}, EDGEQ_DOMAIN)
    return [total, rq, *decoder]


def _sum_conv(g: Graph, node: Node, x: Value, acc: str) -> Node:
    """The exact spatial sum of an NCHW tensor as a depthwise Conv whose weights are all
    ones (integers at ε = 1): the same int64 sum as ReduceSum, in an op every backend
    (the C backend's depthwise kernel included) runs."""
    c, h, w = x.shape[1:]
    ones = np.ones((c, 1, h, w), dtype=np.uint8)
    wname = _const(g, f"{node.name}.ones", ones, QuantInfo(IntRange.unsigned(2), 1.0))
    return Node("Conv", node.name, [x.name, wname], [acc],
                {"kernel_shape": [h, w], "group": c, "strides": [1, 1], "pads": [0, 0, 0, 0],
                 "dilations": [1, 1]})


def _dequantise(g: Graph, name: str, acts: dict, done: dict, nodes: list) -> str:
    """An integer value as float32 for a float node: Cast, then Mul by its ε."""
    if not name or name not in acts or g.values[name].is_const:
        return name
    if name not in done:
        cast = g.fresh_name(f"{name}.float")
        g.values[cast] = Value(cast, g.values[name].shape, np.dtype(np.float32))
        nodes.append(Node("Cast", cast, [name], [cast], {"to": onnx.TensorProto.FLOAT}))
        eps = _const(g, f"{name}.eps", np.asarray(np.exp2(-acts[name].fl), np.float32))
        real = g.fresh_name(f"{name}.real")
        g.values[real] = Value(real, g.values[name].shape, np.dtype(np.float32))
        nodes.append(Node("Mul", real, [cast, eps], [real]))
        done[name] = real
    return done[name]
