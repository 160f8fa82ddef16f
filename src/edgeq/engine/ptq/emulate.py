"""Fake-quantised float emulation of a resolved PTQ config (fast exploration).

Runs the float graph node by node with the reference kernels in float64, with weights
replaced by their quantised values (integer·ε), biases rounded to ε_x·ε_w, and every
quantised activation replaced by ``clip(floor(a/ε + ½))·ε``. Every ε is a power of two,
so each of these float64 values is exact, and so is every sum while it stays below
2^53·ε_x·ε_w: the emulation then equals the integer IR bit for bit (docs/ptq.md).
"""

from __future__ import annotations

import numpy as np

from edgeq.engine.backends.reference.registry import KERNELS
from edgeq.engine.ir import Graph
from edgeq.engine.ptq import fixedpoint as fp
from edgeq.engine.ptq.config import PTQConfig, VarQuant
from edgeq.engine.ptq.plan import PASS_THROUGH, Layer, Plan
from edgeq.engine.ptq.resolve import fake_weight, weight_eps


def activation_quant(plan: Plan, graph: Graph, cfg: PTQConfig) -> dict[str, VarQuant]:
    """The resolved activation VarQuant of every integer value (inputs, layer outputs and
    what pass-through ops compute from them)."""
    out = dict(cfg.inputs)
    by_node = {x.node.name: x for x in plan.layers}
    for node in graph.nodes:
        if node.name in plan.float_nodes:
            continue
        layer = by_node.get(node.name)
        lq = None if layer is None else cfg.layers.get(layer.name)
        if lq is not None and lq.activations is not None:
            out[layer.output] = lq.activations
        elif node.op in PASS_THROUGH and node.inputs[0] in out:
            out[node.outputs[0]] = out[node.inputs[0]]
    return out


def act_range(vq: VarQuant):
    """The integer range an activation is requantised to: its own width, or for a
    clustered one the width of its codebook's grid (the index width is for storage)."""
    return fp.int_range(vq.book_bits if vq.codebook is not None else vq.bits, vq.signed)


def fq(a: np.ndarray, vq: VarQuant) -> np.ndarray:
    """Fake quantisation in ``a``'s float dtype: float64 is exact (ε a power of two);
    float32 (the fast search) is exact while ``|a|/ε < 2^24``. A clustered activation
    is then decoded to its nearest codebook entry (:func:`lookup`)."""
    rng = act_range(vq)
    if a.dtype == np.float64:
        q = fp.quantise(a, vq.fl, rng.bits, vq.signed).astype(np.float64)
    else:
        scale = a.dtype.type(2.0 ** vq.fl)
        q = np.floor(a * scale + a.dtype.type(0.5))
        np.clip(q, rng.lo, rng.hi, out=q)
    return lookup(q, vq) * a.dtype.type(2.0 ** -vq.fl)


def lookup(q: np.ndarray, vq: VarQuant | None) -> np.ndarray:
    """Integers ``q`` (in a float array) on a clustered activation's grid, decoded to
    codebook entries as the integer IR's threshold steps do; unchanged otherwise."""
    if vq is None or vq.codebook is None:
        return q
    from edgeq.engine.ptq.resolve import decode

    return decode(q.astype(np.int64), vq.codebook).astype(q.dtype)


class Emulator:
    """The fake-quantised network of one resolved config (weights prepared once)."""

    def __init__(self, graph: Graph, plan: Plan, cfg: PTQConfig, only: set | None = None,
                 dtype=np.float64, weights: dict | None = None, consts: dict | None = None):
        """``only``: quantise just these (layer, variable) pairs, e.g. {("conv1",
        "weights")}, and the inputs only if ("input", "activations") is in it; None: all.

        ``dtype`` float64 (the default) is the exact emulation; float32 is the fast search
        path (vectorised depthwise/pointwise convolutions, :mod:`fastconv`), equal to the
        integer IR up to float32 rounding. ``weights`` caches fake-quantised weights across
        emulators ({(weight, VarQuant): array}); ``consts`` the float constants in ``dtype``.
        """
        from edgeq.engine.ptq.fastconv import kernel

        self.graph, self.plan, self.cfg = graph, plan, cfg
        self.dtype = np.dtype(dtype)
        self.kernel = kernel if self.dtype == np.float32 else lambda op: KERNELS[op].fn
        self.acts = activation_quant(plan, graph, cfg)
        self.only = only
        self.layers = {x.node.name: x for x in plan.layers}
        self.fused = {x.relu.name for x in plan.layers if x.relu is not None}
        if consts is None:
            consts = {v.name: v.data.astype(self.dtype) if np.issubdtype(v.data.dtype, np.floating)
                      else v.data for v in graph.constants()}
        self.consts = dict(consts)
        cache = {} if weights is None else weights
        for x in plan.layers:
            lq = cfg.layers.get(x.name)
            wq = None if lq is None else lq.weights
            if wq is not None and self._on(x.name, "weights"):
                key = (x.weight, wq)
                if key not in cache:
                    w = fake_weight(graph.values[x.weight].data, wq, x.channel_axis)
                    cache[key] = w.astype(self.dtype)
                self.consts[x.weight] = cache[key]

    def _pool(self, layer: Layer, env: dict, act: VarQuant | None) -> np.ndarray:
        """Global average pool: the IR's integer sum and requantiser, when its input is
        on its grid (always in a full emulation); a float mean otherwise."""
        from edgeq.engine.ptq.lower import apply_requant, pool_requant
        from edgeq.engine.ptq.plan import pool_count

        x = env[layer.node.inputs[0]]
        x_q = self.acts.get(layer.node.inputs[0])
        axes = tuple(range(2, x.ndim))
        if act is None or not _on_grid(x, x_q):
            y = np.mean(x, axis=axes, keepdims=True, dtype=x.dtype)
            y = np.maximum(y, 0) if layer.relu is not None else y
            return y if act is None else fq(y, act)
        s = np.sum((x * np.exp2(x_q.fl)).astype(np.int64), axis=axes, keepdims=True)
        mul, d = pool_requant(pool_count(self.graph, layer.node), x_q.fl, act.fl)
        rng = act_range(act)
        lo = 0 if layer.relu is not None else rng.lo
        q = lookup(apply_requant(s, mul, d, lo, rng.hi), act)
        return (q * np.exp2(-float(act.fl))).astype(self.dtype)

    def _on(self, layer: str, var: str) -> bool:
        return self.only is None or (layer, var) in self.only

    def run(self, feeds: dict[str, np.ndarray], observe=None, start: int = 0,
            env: dict | None = None) -> dict[str, np.ndarray]:
        """The outputs for ``feeds``. Prefix reuse: with ``env`` (the ``env`` of an
        earlier run whose first ``start`` nodes computed the same values, e.g. the FP
        network's when nothing before node ``start`` is quantised) only the nodes from
        index ``start`` on run. ``self.env`` keeps every value of this run."""
        if env is None or start == 0:
            env = dict(self.consts)
            for name in self.graph.inputs:
                x = np.asarray(feeds[name], dtype=self.dtype)
                quantised = name in self.acts and self._on("input", "activations")
                env[name] = fq(x, self.acts[name]) if quantised else x
        else:
            env = {**env, **self.consts}
        for node in self.graph.nodes[start:]:
            if node.name in self.fused:
                continue
            layer = self.layers.get(node.name)
            if layer is not None and node.name not in self.plan.float_nodes:
                env[layer.output] = self._layer(layer, env)
                outs = [layer.output]
            else:
                args = [env[i] if i else None for i in node.inputs]
                while args and args[-1] is None:
                    args.pop()
                res = self.kernel(node.op)(*args, **_attrs(node, self.graph))
                res = res if isinstance(res, tuple) else (res,)
                outs = [o for o in node.outputs if o]
                env.update(zip(node.outputs, res, strict=False))
            if observe is not None:
                for o in outs:
                    observe(o, env[o])
        self.env = env
        return {n: env[n] for n in self.graph.outputs}

    def _layer(self, layer: Layer, env: dict) -> np.ndarray:
        node = layer.node
        lq = self.cfg.layers.get(layer.name)
        act = lq.activations if lq and self._on(layer.name, "activations") else None
        if layer.kind == "add":
            if act is None:
                y = env[node.inputs[0]] + env[node.inputs[1]]
                return np.maximum(y, 0) if layer.relu is not None else y
            eps = self.dtype.type(2.0 ** -act.fl)
            q = sum(np.floor(env[i] / eps + 0.5) for i in node.inputs)
            rng = act_range(act)
            lo = 0 if layer.relu is not None else rng.lo
            return lookup(np.clip(q, lo, rng.hi), act) * eps
        if layer.kind == "pool":
            return self._pool(layer, env, act)
        args = [env[i] for i in node.inputs if i]
        x_q = self.acts.get(node.inputs[0])
        if layer.bias is not None and self.only is None and x_q is not None and lq.weights:
            # the integer bias is at ε_x·ε_w (per channel: broadcasts along the last axis)
            scale = np.exp2(-float(x_q.fl)) * weight_eps(lq.weights, 0, 1)
            b = self.graph.values[layer.bias].data.astype(np.float64)
            args[2] = (np.floor(b / scale + 0.5) * scale).astype(self.dtype)
        y = self.kernel(node.op)(*args, **node.attrs)
        if layer.relu is not None:
            y = np.maximum(y, 0)
        return y if act is None else fq(y, act)


def _on_grid(x: np.ndarray, vq: VarQuant | None) -> bool:
    return vq is not None and bool(np.all(np.floor(x * np.exp2(vq.fl)) == x * np.exp2(vq.fl)))


def _attrs(node, graph: Graph) -> dict:
    from edgeq.engine.backends.reference.registry import KERNELS as K

    attrs = dict(node.attrs)
    if K[node.op].opset_aware:
        attrs["opset"] = graph.opset
    return attrs
