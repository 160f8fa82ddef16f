"""Choosing each variable's parameters (FL, per-channel FLs, codebook) from calibration.

:func:`resolve` turns a partial :class:`PTQConfig` (methods and bit widths) into a
complete one; :func:`weight_integers` is the one place that turns a float weight and
its resolved :class:`VarQuant` into integers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgeq.engine.ir import Graph
from edgeq.engine.ptq import fixedpoint as fp
from edgeq.engine.ptq import kmeans as km
from edgeq.engine.ptq.calibration import Calibration
from edgeq.engine.ptq.config import (
    CLUSTER_METHODS,
    LayerQuant,
    PTQConfig,
    VarQuant,
    activation_of,
    uniform,
)
from edgeq.engine.ptq.plan import Layer, Plan
from edgeq.errors import ConfigError


def l2_per_sample(ref: np.ndarray, got: np.ndarray) -> float:
    """Frobenius norm of the difference, per sample (axis 0), averaged over the batch
    (the difference in the arrays' own float dtype, its squares summed in float64)."""
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.dtype != got.dtype or not np.issubdtype(ref.dtype, np.floating):
        ref, got = ref.astype(np.float64), got.astype(np.float64)
    d = (ref - got).reshape(len(ref), -1)
    return float(np.mean(np.sqrt(np.einsum("ij,ij->i", d, d, dtype=np.float64))))


# -- weights ----------------------------------------------------------------------------
def weight_integers(w: np.ndarray, vq: VarQuant, axis: int) -> np.ndarray:
    """The integers of a resolved weight: fixed point at its FL(s), or the nearest
    codebook entry at the codebook's FL."""
    if vq.codebook is not None:
        book = np.asarray(vq.codebook, dtype=np.int64)
        scaled = np.asarray(w, np.float64) * np.exp2(vq.fl)
        return book[km.assign(scaled, book.astype(np.float64))]
    if vq.channel_fl is not None:
        return fp.quantise(w, vq.channel_fl, vq.bits, True, axis)
    return fp.quantise(w, vq.fl, vq.bits, True)


def weight_eps(vq: VarQuant, axis: int, ndim: int) -> np.ndarray:
    """ε of a resolved weight, shaped to broadcast against it."""
    if vq.channel_fl is not None:
        return np.exp2(-fp._shaped(vq.channel_fl, ndim, axis))
    return np.exp2(-np.float64(vq.fl))


def fake_weight(w: np.ndarray, vq: VarQuant, axis: int) -> np.ndarray:
    return weight_integers(w, vq, axis) * weight_eps(vq, axis, np.ndim(w))


def weight_range(vq: VarQuant):
    return fp.int_range(vq.book_bits if vq.codebook is not None else vq.bits, True)


def _codebook(w: np.ndarray, vq: VarQuant) -> tuple[int, tuple[int, ...]]:
    """(fl, integer codebook) of a clustered weight."""
    flat = np.ravel(np.asarray(w, np.float64))
    fl = fp.initial_fl(float(np.max(np.abs(flat))), vq.book_bits, True)
    return fl, cluster(flat, vq, fl, True)


def cluster(v: np.ndarray, vq: VarQuant, fl: int, signed: bool, k: int | None = None
            ) -> tuple[int, ...]:
    """The integer codebook (at ε = 2^−fl, ``vq.book_bits`` wide, ``k`` entries, default
    2^bits) of the values ``v`` by ``vq.method``: exact k-means of the values put on that
    grid, or QUENN's linear / Gaussian quantiser refined by Lloyd on the values."""
    k, bits = k or 2**vq.bits, vq.book_bits
    flat = np.ravel(np.asarray(v, np.float64))
    if vq.method == "kmeans":  # exact k-means on the values at the codebook's resolution
        grid, counts = np.unique(fp.quantise(flat, fl, bits, signed), return_counts=True)
        cents, _ = km.optimal_kmeans(grid, k, counts)
        cents = cents * np.exp2(-fl)
    else:
        start = km.linear_codebook(flat, k) if vq.method == "kmeans-linear" else \
            km.gauss_codebook(flat, k)
        cents = km.lloyd(flat, start, vq.iters)
    ints = np.unique(fp.quantise(cents, fl, bits, signed))
    return tuple(int(c) for c in ints)


def thresholds(book) -> np.ndarray:
    """The decoder of a clustered activation: an integer ``q`` on the codebook's grid
    maps to ``book[#{j : q ≥ t_j}]``, the nearest entry, ties to the lower one (as
    :func:`kmeans.assign`): ``q ≥ t_j ⟺ q > (c_{j−1} + c_j)/2``, so
    ``t_j = ⌊(c_{j−1} + c_j)/2⌋ + 1`` (Python integers: exact)."""
    c = [int(x) for x in sorted(book)]
    return np.array([(a + b) // 2 + 1 for a, b in zip(c[:-1], c[1:], strict=True)], np.int64)


def decode(q: np.ndarray, book) -> np.ndarray:
    """``book[#{j : q ≥ t_j}]`` for integers ``q`` (the lookup the integer IR runs)."""
    c = np.array(sorted(book), dtype=np.int64)
    return c[np.searchsorted(thresholds(book), np.asarray(q, np.int64), side="right")]


@dataclass
class LayerProbe:
    """The FP input of a linear layer and the change of its output when its weight
    changes: the layer is linear in the weight, so ``y(w') − y(w) = layer(x, w' − w)``
    without the bias — one run per candidate, and the difference is computed from the
    weight difference itself (no cancellation of two nearly equal outputs, so float32
    loses nothing even at 16 bits)."""

    layer: Layer
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray | None

    def change(self, w: np.ndarray) -> np.ndarray:
        from edgeq.engine.ptq.fastconv import kernel

        dw = (np.asarray(w, np.float64) - self.w).astype(self.x.dtype)
        return kernel(self.layer.node.op)(self.x, dw, **self.layer.node.attrs)

    def l2(self, w: np.ndarray) -> float:
        """The layer's output L2 error with weight ``w`` (per sample, batch mean)."""
        return norm_per_sample(self.change(w))


def norm_per_sample(d: np.ndarray) -> float:
    d = d.reshape(len(d), -1)
    return float(np.mean(np.sqrt(np.einsum("ij,ij->i", d, d, dtype=np.float64))))


PROBE_POSITIONS = 4096  # output positions (samples × spatial) a weight search looks at
PROBE_SAMPLES = (2, 8)  # ... from at least 2 and at most 8 calibration samples
ACT_SEARCH_SAMPLES = 16  # calibration samples an activation FL search compares
WEIGHT_PATIENCE = 3  # a per-tensor weight FL search stops after 3 FLs worse than the best


def probe_samples(graph: Graph, layer: Layer) -> int:
    """Samples for a layer's weight search: enough for PROBE_POSITIONS output positions
    (a 60×60 layer needs 2, a 4×4 one 8), within PROBE_SAMPLES."""
    shape = graph.values[layer.node.outputs[0]].shape or ()
    spatial = int(np.prod([d for d in shape[2:] if isinstance(d, int)] or [1]))
    lo, hi = PROBE_SAMPLES
    return int(min(hi, max(lo, -(-PROBE_POSITIONS // spatial))))


def probe(graph: Graph, layer: Layer, cal: Calibration) -> LayerProbe:
    x = cal.samples[layer.node.inputs[0]][:probe_samples(graph, layer)].astype(np.float32)
    w = graph.values[layer.weight].data.astype(np.float64)
    b = None if layer.bias is None else graph.values[layer.bias].data.astype(np.float64)
    return LayerProbe(layer, x, w, b)


def resolve_weights(vq: VarQuant, p: LayerProbe, global_fl: int | None) -> tuple[VarQuant, float]:
    """Fill in the parameters of one layer's weights; return it and its layer L2."""
    axis = p.layer.channel_axis
    if vq.method in ("kmeans", "kmeans-linear", "kmeans-gauss") and vq.codebook is None:
        fl, book = _codebook(p.w, vq)
        vq = replace(vq, fl=fl, codebook=book)
    elif vq.method == "fixed" and vq.fl is None and vq.channel_fl is None:
        vq = replace(vq, fl=global_fl)
    elif vq.method == "dynamic" and vq.fl is None and vq.channel_fl is None:
        vq, err = _search_weight_fl(vq, p)
        if err is not None:  # the search already ran the layer with this weight
            return vq, err
    if vq.method == "fixed" and vq.per_channel and vq.channel_fl is None:
        vq = replace(vq, channel_fl=(vq.fl,) * p.w.shape[axis], fl=None)
    return vq, p.l2(fake_weight(p.w, vq, axis))


def _search_weight_fl(vq: VarQuant, p: LayerProbe) -> tuple[VarQuant, float | None]:
    axis = p.layer.channel_axis
    if not vq.per_channel:
        fl0 = fp.initial_fl(float(np.max(np.abs(p.w))), vq.bits, True)

        def err(fl):
            return p.l2(fp.fake_quantise(p.w, fl, vq.bits, True))

        fl, e = fp.search_fl(err, fl0, vq.fl_search, WEIGHT_PATIENCE)
        return replace(vq, fl=fl), e
    # the output channel c depends on W[c] only: search every channel's FL at once
    out_axis = 1  # channels of Conv [N, M, ...] and Gemm/MatMul [M, N] outputs
    maxes = np.max(np.abs(np.moveaxis(p.w, axis, 0).reshape(p.w.shape[axis], -1)), axis=1)
    fl0 = min(fp.initial_fl(float(m), vq.bits, True) for m in maxes)
    fl0_hi = max(fp.initial_fl(float(m), vq.bits, True) for m in maxes)
    lo_c, hi_c = fp.fl_candidates(fl0, vq.fl_search), fp.fl_candidates(fl0_hi, vq.fl_search)
    cands = sorted(set(lo_c) | set(hi_c))
    errs = []
    for fl in cands:
        d = p.change(fp.fake_quantise(p.w, fl, vq.bits, True))
        errs.append(np.sum(np.moveaxis(d, out_axis, 0).reshape(d.shape[out_axis], -1) ** 2, 1))
    best = np.argmin(np.array(errs), axis=0)  # first minimum: the smaller FL
    return replace(vq, channel_fl=tuple(int(cands[i]) for i in best)), None


# -- activations --------------------------------------------------------------------------
def resolve_activation(vq: VarQuant, name: str, cal: Calibration,
                       global_fl: int | None) -> tuple[VarQuant, float]:
    from edgeq.engine.ptq.emulate import fq

    st, x = cal.stats[name], cal.samples[name]
    signed = vq.signed if vq.signed is not None else bool(st.min < 0)
    vq = replace(vq, signed=signed)
    if vq.method in CLUSTER_METHODS:
        return _resolve_clustered(vq, x, st)
    if vq.fl is None and vq.method == "fixed":
        vq = replace(vq, fl=global_fl)
    elif vq.fl is None:
        fl0 = fp.initial_fl(st.max_abs, vq.bits, signed)
        xs = x[:ACT_SEARCH_SAMPLES]
        vq = replace(vq, fl=fp.search_fl(
            lambda fl: l2_per_sample(xs, fq(xs, replace(vq, fl=fl))), fl0, vq.fl_search)[0])
    return vq, l2_per_sample(x, fq(x, vq))


def _resolve_clustered(vq: VarQuant, x: np.ndarray, st) -> tuple[VarQuant, float]:
    """A clustered activation: the grid is the dynamic fixed point of ``book_bits``
    (FL searched as for any activation), the codebook the clustering of the calibration
    samples on it (DESIGN §3.8: indices + integers at one ε)."""
    from edgeq.engine.ptq.emulate import fq

    if vq.fl is None:
        grid = replace(vq, method="dynamic", bits=vq.book_bits, codebook=None)
        fl0 = fp.initial_fl(st.max_abs, grid.bits, vq.signed)
        xs = x[:ACT_SEARCH_SAMPLES]
        vq = replace(vq, fl=fp.search_fl(
            lambda fl: l2_per_sample(xs, fq(xs, replace(grid, fl=fl))), fl0, vq.fl_search)[0])
    if vq.codebook is None:
        vq = replace(vq, codebook=_activation_codebook(x, vq))
    return vq, l2_per_sample(x, fq(x, vq))


def _activation_codebook(x: np.ndarray, vq: VarQuant) -> tuple[int, ...]:
    """The codebook of an activation. When calibration saw exact zeros (a ReLU output),
    0 is kept as an entry and the other 2^B − 1 cluster the non-zero values: a plain
    k-means would merge the zeros with the small values into a centroid above 0, biasing
    every zero the next layer reads (measured: −1.1 points of digits accuracy at 4 bits)."""
    v = np.ravel(x)
    nonzero = v[v != 0]
    if nonzero.size == v.size or nonzero.size == 0:
        return cluster(v, vq, vq.fl, vq.signed)
    book = cluster(nonzero, vq, vq.fl, vq.signed, k=2**vq.bits - 1)
    return tuple(sorted(set(book) | {0}))


# -- the whole network -------------------------------------------------------------------
def requested(plan: Plan, graph: Graph, method: str, bits: int, per_channel: bool = False,
              user: PTQConfig | None = None) -> PTQConfig:
    """Every layer's VarQuants: the user's config where it says, else ``method``/``bits``."""
    user = user or PTQConfig()
    missing = sorted(set(user.layers) - set(plan.names))
    if missing:
        raise ConfigError(f"config: layer '{missing[0]}' is not a quantised layer of the model "
                          f"(layers: {list(plan.names)})")
    bad_in = sorted(set(user.inputs) - set(graph.inputs))
    if bad_in:
        raise ConfigError(f"config: inputs.{bad_in[0]}: the model has no such input")
    w_default, a_default = uniform(method, bits, per_channel), activation_of(method, bits)
    inputs = {n: user.inputs.get(n, a_default) for n in graph.inputs}
    layers = {}
    for layer in plan.layers:
        given = user.layers.get(layer.name, LayerQuant())
        w = given.weights or w_default if layer.kind == "linear" else None
        layers[layer.name] = LayerQuant(w, given.activations or a_default)
    return PTQConfig(inputs, layers, user.keep_float)


def global_fls(plan: Plan, graph: Graph, cal: Calibration, cfg: PTQConfig) -> tuple[int, int]:
    """Standard fixed point: one FL for all weights, one for all activations (from the
    largest magnitude in the network, at the largest requested width)."""
    w_max = max([float(np.max(np.abs(graph.values[x.weight].data))) for x in plan.layers
                 if x.kind == "linear"] or [0.0])
    a_names = [x.output for x in plan.layers] + list(graph.inputs)
    a_max = max(cal.stats[n].max_abs for n in a_names)
    w_bits = max([q.weights.bits for q in cfg.layers.values() if q.weights] or [8])
    a_bits = max(q.activations.bits for q in cfg.layers.values()) if cfg.layers else 8
    return fp.initial_fl(w_max, w_bits, True), fp.initial_fl(a_max, a_bits, True)


def resolve(plan: Plan, graph: Graph, cal: Calibration, cfg: PTQConfig):
    """A complete config, plus each variable's layer L2 (``{layer: {var: l2}}``)."""
    w_fl, a_fl = global_fls(plan, graph, cal, cfg)
    inputs = {n: resolve_activation(vq, n, cal, a_fl)[0] for n, vq in cfg.inputs.items()}
    layers, l2 = {}, {}
    for layer in plan.layers:
        lq = cfg.layers[layer.name]
        errs = {}
        w = None
        if lq.weights is not None:
            w, errs["weights"] = resolve_weights(lq.weights, probe(graph, layer, cal), w_fl)
        a, errs["activations"] = resolve_activation(lq.activations, layer.output, cal, a_fl)
        layers[layer.name], l2[layer.name] = LayerQuant(w, a), errs
    return PTQConfig(inputs, layers, cfg.keep_float), l2
