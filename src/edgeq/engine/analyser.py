"""The model analyser (LPDNN's tool): operations and memory per layer, at chosen bit widths.

:func:`analyse` counts, per node and per sample (a symbolic batch dimension counts as
1), the operations an integer or float implementation performs, and the memory it
needs at the bit widths asked for. Counting rules (``n`` = output elements):

=====================  =====================================================================
Conv                   MACs = n · C_in/group · ∏kernel; adds = n with a bias
Gemm / MatMul          MACs = n · K; adds = n with a bias (Gemm C)
Relu                   comparisons = n;  Clip: 2n;  LeakyRelu/PRelu: n comparisons, n muls
MaxPool                comparisons = n · (∏kernel − 1); GlobalMaxPool: n · (H·W − 1)
AveragePool            adds = n · (∏kernel − 1), divisions = n; GlobalAveragePool likewise
Add / Sub / Sum        adds = n (per extra operand); Mul: muls = n; Div: divisions = n
BatchNormalization     muls = n, adds = n (the folded form x·a + b)
Softmax                comparisons = n (max), adds = 2n (subtract, sum), divisions = n
Sigmoid / Tanh         adds = n, divisions = n (exponentials are not counted)
RequantShift           muls = n, adds = n, divisions = n (the shift), comparisons = 2n
HarmonisedAdd          adds = n per extra input, and a RequantShift's per rescaled term
shape ops, Cast        nothing
=====================  =====================================================================

Memory: **weight bytes** are every constant read by the node, counted once (at its first
reader); **activation bytes** are the node's outputs. A value is counted at: its own
quantisation (``QuantInfo.storage_bits``: the index width of a codebook) when it has
one; else at the bit width the caller chose for it; else at its dtype's size. The
chosen widths come from ``bits`` (every float weight of a linear layer and every float
activation; a linear layer's bias at 32 bits) and, per layer, from a PTQ config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq.engine.analysis import _static_numel, macs_of
from edgeq.engine.ir import Graph, Node, Value

BIAS_BITS = 32
LINEAR = ("Conv", "Gemm", "MatMul")
OP_FIELDS = ("macs", "adds", "muls", "divs", "comps")


@dataclass(frozen=True)
class OpRow:
    name: str
    op: str
    macs: int
    adds: int
    muls: int
    divs: int
    comps: int
    weight_bytes: int
    act_bytes: int


def _numel(graph: Graph, name: str) -> int:
    v = graph.values.get(name)
    if v is None:
        return 0
    shape = v.shape if v.shape is not None or v.data is None else v.data.shape
    n = _static_numel(shape)
    return n or 0


def _kernel(node: Node, graph: Graph) -> int:
    if "kernel_shape" in node.attrs:
        return int(np.prod(node.attrs["kernel_shape"]))
    v = graph.values.get(node.inputs[0])
    shape = v.shape if v is not None else None
    if shape is None or not all(isinstance(d, int) for d in shape[2:]):
        return 0
    return int(np.prod(shape[2:]))


def count_ops(graph: Graph, node: Node) -> dict[str, int]:
    n = sum(_numel(graph, o) for o in node.outputs[:1] if o)
    c = dict.fromkeys(OP_FIELDS, 0)
    op, k = node.op, len([i for i in node.inputs if i])
    if op in LINEAR:
        c["macs"] = macs_of(graph, node) or 0
        c["adds"] = n if len(node.inputs) > 2 and node.inputs[2] else 0
    elif op == "Relu":
        c["comps"] = n
    elif op == "Clip":
        c["comps"] = 2 * n
    elif op in ("LeakyRelu", "PRelu"):
        c["comps"], c["muls"] = n, n
    elif op == "MaxPool":
        c["comps"] = n * max(_kernel(node, graph) - 1, 0)
    elif op == "GlobalMaxPool":
        c["comps"] = n * max(_kernel(node, graph) - 1, 0)
    elif op in ("AveragePool", "GlobalAveragePool"):
        c["adds"], c["divs"] = n * max(_kernel(node, graph) - 1, 0), n
    elif op in ("Add", "Sub", "Sum"):
        c["adds"] = n * max(k - 1, 1)
    elif op == "Mul":
        c["muls"] = n
    elif op == "Div":
        c["divs"] = n
    elif op == "BatchNormalization":
        c["muls"], c["adds"] = n, n
    elif op == "Softmax":
        c["comps"], c["adds"], c["divs"] = n, 2 * n, n
    elif op in ("Sigmoid", "Tanh"):
        c["adds"], c["divs"] = n, n
    elif op == "RequantShift":
        c.update(muls=n, adds=n, divs=n, comps=2 * n)
    elif op == "HarmonisedAdd":
        rq = sum(1 for r in node.attrs.get("in_rq", []) if r) + int(bool(node.attrs.get("out_rq")))
        c.update(adds=n * (k - 1 + rq), muls=n * rq, divs=n * rq, comps=2 * n)
    return c


def _bytes(v: Value, n: int, bits: int | None) -> int:
    if v.quant is not None or bits is None or v.dtype is None or \
            not np.issubdtype(v.dtype, np.floating):
        return v.bytes_for(n) or 0
    return (n * bits + 7) // 8


def chosen_bits(graph: Graph, bits: int | None, config=None) -> dict[str, int]:
    """The bit width of each float value: ``bits`` for linear weights and activations
    (biases at 32), overridden per layer by a PTQ config (weights, and the layer's output
    with its fused Relu); values a config or ``bits`` says nothing about are absent."""
    out: dict[str, int] = {}
    for node in graph.nodes:
        if bits is not None:
            out.update(dict.fromkeys((o for o in node.outputs if o), bits))
            if node.op in LINEAR and len(node.inputs) > 1:
                out[node.inputs[1]] = bits
                if len(node.inputs) > 2 and node.inputs[2]:
                    out[node.inputs[2]] = BIAS_BITS
    for name in graph.inputs:
        if bits is not None:
            out[name] = bits
    if config is None:
        return out
    for name, vq in config.inputs.items():
        out[name] = vq.bits
    for node in graph.nodes:
        lq = config.layers.get(node.name)
        if lq is None:
            continue
        if lq.weights is not None and len(node.inputs) > 1:
            out[node.inputs[1]] = lq.weights.bits
            if len(node.inputs) > 2 and node.inputs[2]:
                out[node.inputs[2]] = BIAS_BITS
        if lq.activations is not None:
            outs = [node.outputs[0]]
            readers = graph.consumers(node.outputs[0])
            if len(readers) == 1 and readers[0].op == "Relu":
                outs.append(readers[0].outputs[0])
            out.update(dict.fromkeys(outs, lq.activations.bits))
    _follow_pass_through(graph, out)
    return out


def _follow_pass_through(graph: Graph, out: dict[str, int]) -> None:
    from edgeq.engine.ptq.plan import PASS_THROUGH

    for node in graph.nodes:
        if node.op in PASS_THROUGH and node.inputs[0] in out:
            out[node.outputs[0]] = out[node.inputs[0]]


def analyse(graph: Graph, bits: int | None = None, config=None) -> list[OpRow]:
    """One :class:`OpRow` per node (module docstring for the rules)."""
    widths = chosen_bits(graph, bits, config)
    counted: set[str] = set()
    rows = []
    for node in graph.nodes:
        consts = [graph.values[i] for i in node.inputs if i and graph.values[i].is_const
                  and i not in counted]
        counted.update(v.name for v in consts)
        wb = sum(_bytes(v, int(v.data.size), widths.get(v.name)) for v in consts)
        ab = sum(_bytes(graph.values[o], _numel(graph, o), widths.get(o))
                 for o in node.outputs if o and o in graph.values)
        rows.append(OpRow(node.name, node.op, **count_ops(graph, node), weight_bytes=wb,
                          act_bytes=ab))
    return rows


def totals(rows: list[OpRow]) -> dict[str, int]:
    keys = (*OP_FIELDS, "weight_bytes", "act_bytes")
    return {k: sum(getattr(r, k) for r in rows) for k in keys}


HEADER = ("node", "op", "MACs", "adds", "muls", "divs", "comps", "weight B", "act B")


def format_rows(rows: list[OpRow]) -> str:
    def cells(r):
        return (r.name, r.op, *(f"{getattr(r, k):,}" for k in (*OP_FIELDS, "weight_bytes",
                                                                  "act_bytes")))

    t = totals(rows)
    body = [cells(r) for r in rows]
    total = ("total", "", *(f"{t[k]:,}" for k in (*OP_FIELDS, "weight_bytes", "act_bytes")))
    table = [HEADER, *body, total]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]

    def line(r):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    rule = "-" * len(line(HEADER))
    return "\n".join([line(HEADER), rule, *(line(r) for r in body), rule, line(total)])


def plot(rows: list[OpRow], out_dir, title: str = "") -> list[str]:
    """``memory.png`` (weight and activation bytes per layer) and ``macs.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeq.engine.tensor_io import write_atomic

    shown = [r for r in rows if r.macs or r.weight_bytes or r.op in LINEAR]
    names = [r.name for r in shown]
    x = np.arange(len(shown))
    written = []
    for fname, series, ylabel in (
            ("memory.png", (("weights", [r.weight_bytes for r in shown]),
                            ("activations", [r.act_bytes for r in shown])), "bytes"),
            ("macs.png", (("MACs", [r.macs for r in shown]),), "MACs per sample")):
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(shown) + 2), 4))
        width = 0.8 / len(series)
        for i, (label, ys) in enumerate(series):
            ax.bar(x + i * width, ys, width, label=label)
        ax.set_xticks(x + 0.4 - width / 2, names, rotation=90, fontsize=7)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} {ylabel} per layer".strip())
        ax.legend()
        fig.tight_layout()
        path = f"{out_dir}/{fname}"
        write_atomic(path, lambda f, fig=fig: fig.savefig(f, format="png", dpi=100))
        plt.close(fig)
        written.append(path)
    return written
