"""Graphs for the pass tests: small hand-built integer graphs and the F2T families.

``tq_graph(name)`` builds a TQ graph once per session: the model is F2F-converted (8-bit
PACT, 8-bit unit input), observed and BN-calibrated on random inputs, then F2T-converted
(no training: the passes care about shapes, dtypes and integer ranges, not accuracy).
"""

from __future__ import annotations

import functools

import numpy as np

from edgeq.engine.backends.reference.executor import _run_node, _store, run_graph
from edgeq.engine.ir import Graph, Node, QuantInfo, Value
from edgeq.numerics import IntRange


def value(name, shape, dtype, rng: IntRange | None = None, data=None) -> Value:
    quant = QuantInfo(rng) if rng is not None else None
    return Value(name, tuple(shape), np.dtype(dtype), quant, data)


def const(name, data, rng: IntRange | None = None) -> Value:
    data = np.asarray(data)
    return value(name, data.shape, data.dtype, rng, data)


def graph(nodes, values, inputs, outputs) -> Graph:
    g = Graph(nodes, {v.name: v for v in values}, inputs, outputs, name="t")
    g.validate()
    return g


def node(op, name, inputs, outputs, **attrs) -> Node:
    domain = "edgeq" if op in ("RequantShift", "HarmonisedAdd") else ""
    return Node(op, name, list(inputs), list(outputs), attrs, domain)


U8, S8 = IntRange.from_bits(8, False), IntRange.from_bits(8, True)


def conv_rq_graph(w, b, mul, add, shift, lo, hi, tail=None, pads=(0, 0, 0, 0), group=1,
                  extra=()):
    """x -> Conv -> RequantShift [-> tail op] -> y."""
    m, cg, kh, kw = w.shape
    c = cg * group
    nodes = [node("Conv", "conv", ["x", "w", "b"] if b is not None else ["x", "w"], ["acc"],
                  pads=list(pads), group=group, kernel_shape=[kh, kw]),
             node("RequantShift", "rq", ["acc", "mul", "add"], ["q"], shift=shift, lo=lo, hi=hi)]
    h = 6 + pads[0] + pads[2] - kh + 1
    wd = 6 + pads[1] + pads[3] - kw + 1
    q_dtype = np.result_type(np.min_scalar_type(lo), np.min_scalar_type(hi))
    vals = [value("x", ("N", c, 6, 6), np.uint8, U8), const("w", w, S8),
            value("acc", ("N", m, h, wd), np.int64),
            const("mul", mul), const("add", add),
            value("q", ("N", m, h, wd), q_dtype, IntRange.from_bounds(lo, hi))]
    if b is not None:
        vals.append(const("b", b))
    out = "q"
    if tail is not None:
        op, extra_inputs, attrs = tail
        nodes.append(node(op, "tail", ["q", *extra_inputs], ["y"], **attrs))
        vals.append(value("y", ("N", m, h, wd), q_dtype))
        out = "y"
    return graph(nodes, vals + list(extra), ["x"] + [v.name for v in extra if not v.is_const],
                 [out])


@functools.cache
def tq_graph(name: str, significant_bits: int | None = None) -> Graph:
    """The TQ graph of an F2T model family ("mobilenet" is 3DDFA width 1.0, 120 px).

    ``significant_bits=24`` rounds the requant multipliers so that the graph can be
    exported to ONNX (integers carried in float32)."""
    import torch

    from edgeq.models import DigitsConcatNet, DigitsResNet, mobilenet_v1_3ddfa
    from edgeq.train.controller import calibrate_and_start
    from edgeq.train.f2f import Policy, f2f, unit_input_spec
    from edgeq.train.f2t import f2t

    torch.manual_seed(0)
    make = {
        "mobilenet": lambda: (mobilenet_v1_3ddfa(1.0), torch.rand(2, 3, 120, 120)),
        "resnet": lambda: (DigitsResNet(width=8), torch.rand(4, 1, 8, 8)),
        "concat": lambda: (DigitsConcatNet(width=8), torch.rand(4, 1, 8, 8)),
    }
    net, x = make[name]()
    gm, _ = f2f(net, Policy.uniform(8, "pact"), x[:1], input_spec=unit_input_spec())
    calibrate_and_start(gm, x)
    opts = {} if significant_bits is None else {"significant_bits": significant_bits}
    return f2t(gm.eval(), x[:1], **opts).to_ir()


def random_feeds(g: Graph, batch: int = 2, seed: int = 0, extreme: str | None = None) -> dict:
    """Integer inputs uniform over their range (or all ``lo``/``hi`` with ``extreme``)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in g.inputs:
        v = g.values[name]
        shape = tuple(d if isinstance(d, int) else batch for d in v.shape)
        r = v.quant.range
        if extreme is not None:
            feeds[name] = np.full(shape, r.lo if extreme == "lo" else r.hi, dtype=v.dtype)
        else:
            feeds[name] = rng.integers(r.lo, r.hi + 1, shape).astype(v.dtype)
    return feeds


def observe_all(g: Graph, feeds: dict) -> dict[str, np.ndarray]:
    seen: dict[str, np.ndarray] = dict(feeds)
    run_graph(g, feeds, observe=seen.__setitem__)
    return seen


def run_in_arena(g: Graph, plan, feeds: dict) -> dict[str, np.ndarray]:
    """Execute ``g`` with every tensor living in ONE byte arena at the plan's offsets.

    Each node reads its inputs from the arena and writes its outputs there. If the plan let
    two live tensors share bytes, a value is clobbered and the outputs differ from
    ``run_graph``'s.
    """
    arena = np.zeros(plan.arena_bytes + 1, dtype=np.uint8)

    def view(name):
        v, b = g.values[name], plan.buffers[name]
        shape = tuple(d if isinstance(d, int) else plan.batch for d in v.shape)
        return arena[b.offset:b.end].view(v.dtype).reshape(shape)

    for name, data in feeds.items():
        view(name)[...] = data
    for n in g.nodes:
        args = [None if not i else (g.values[i].data if g.values[i].is_const else view(i).copy())
                for i in n.inputs]
        outs = _run_node(g, n, args)
        for name, arr in zip(n.outputs, outs, strict=False):
            if not name:
                continue
            # views rewrite the same bytes; hosted Concat slices are rewritten unchanged
            view(name)[...] = np.asarray(_store(g, name, arr))
    return {name: view(name).copy() for name in g.outputs}

