"""``edgeq bench``: median latency, images/s and a per-layer time table of one backend.

Backends: ``reference`` (the NumPy specification, per layer by timing each node),
``c`` (the generated C program: its harness times the whole run and every layer) and
``ort`` (onnxruntime on the ONNX file itself, end to end only). The input is random over
the model input's integer range (or uniform in [0, 1) for a float input), with symbolic
dimensions set to the batch size.

Per-layer rows give the time, the MACs per image (from :mod:`edgeq.engine.analysis`),
the achieved GMAC/s and the share of the summed layer times.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq.engine.analysis import macs_of
from edgeq.engine.ir import Graph
from edgeq.errors import ConfigError, EdgeqError

BACKENDS = ("reference", "c", "ort")


@dataclass(frozen=True)
class LayerTime:
    index: int
    node: str
    op: str
    us: float  # median over the runs, for the whole batch
    macs: int | None  # per image
    gmacs: float | None  # achieved GMAC/s over the batch
    share: float  # of the summed layer times


@dataclass(frozen=True)
class BenchResult:
    backend: str
    batch: int
    threads: int
    repeat: int
    latency_ms: float
    layers: tuple[LayerTime, ...] = field(default=())

    @property
    def images_per_s(self) -> float:
        return 1e3 * self.batch / self.latency_ms if self.latency_ms > 0 else float("inf")

    def to_json(self) -> dict:
        return {"backend": self.backend, "batch": self.batch, "threads": self.threads,
                "repeat": self.repeat, "latency_ms": self.latency_ms,
                "images_per_s": self.images_per_s,
                "layers": [vars(layer) for layer in self.layers]}


def bench_input(graph: Graph, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds: integers over the input's range, else uniform floats in [0, 1)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in graph.inputs:
        v = graph.values[name]
        if v.shape is None or v.dtype is None:
            raise ConfigError(f"input '{name}': unknown shape or dtype; cannot make an input")
        if v.shape and isinstance(v.shape[0], int) and v.shape[0] != batch:
            raise ConfigError(f"input '{name}' has a fixed batch of {v.shape[0]}; "
                              f"use --batch {v.shape[0]}")
        shape = tuple(d if isinstance(d, int) else batch for d in v.shape)
        if v.quant is not None:
            r = v.quant.range
            feeds[name] = rng.integers(r.lo, r.hi + 1, shape).astype(v.dtype)
        elif v.is_integer:
            raise ConfigError(f"input '{name}' is an integer tensor without a declared range")
        else:
            feeds[name] = rng.random(shape).astype(v.dtype)
    return feeds


def bench(model: str | Path, backend: str, batch: int = 1, threads: int = 1, repeat: int = 20,
          per_layer: bool = False, input_range=None) -> BenchResult:
    """Time ``model`` (an ONNX file) on ``backend`` (module docstring)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    for key, v in (("batch", batch), ("threads", threads), ("repeat", repeat)):
        if v < 1:
            raise ConfigError(f"--{key} must be >= 1, got {v}")
    if backend == "ort":
        if per_layer:
            raise ConfigError("--per-layer needs --backend c or reference")
        return _bench_ort(Path(model), batch, threads, repeat)
    from edgeq.engine import load

    graph = load(model, input_range=input_range).graph
    feeds = bench_input(graph, batch)
    if backend == "reference":
        if threads != 1:
            raise ConfigError("--threads: the reference backend runs one NumPy thread")
        return _bench_reference(graph, feeds, repeat, per_layer)
    return _bench_c(graph, feeds, batch, threads, repeat, per_layer)


def _bench_reference(graph: Graph, feeds: dict, repeat: int, per_layer: bool) -> BenchResult:
    from edgeq.engine.backends.reference.executor import run_graph

    producer = {o: i for i, n in enumerate(graph.nodes) for o in n.outputs if o}
    totals, per_node = [], [[] for _ in graph.nodes]
    for _ in range(repeat + 1):  # the first run warms up and is dropped
        marks: dict[int, float] = {}
        start = time.perf_counter()
        run_graph(graph, feeds, observe=lambda name, _a, m=marks: m.__setitem__(
            producer[name], time.perf_counter()))
        totals.append(time.perf_counter() - start)
        previous = start
        for i in range(len(graph.nodes)):
            if i in marks:
                per_node[i].append(marks[i] - previous)
                previous = marks[i]
    totals, per_node = totals[1:], [t[1:] for t in per_node]
    batch = _batch_of(graph, feeds)
    layers = ()
    if per_layer:
        raw = [(i, n.name, n.op, 1e6 * statistics.median(per_node[i]) if per_node[i] else 0.0)
               for i, n in enumerate(graph.nodes)]
        layers = layer_rows(graph, raw, batch, per_image_graph=True)
    return BenchResult("reference", batch, 1, repeat, 1e3 * statistics.median(totals), layers)


def _bench_c(graph, feeds, batch, threads, repeat, per_layer) -> BenchResult:
    from edgeq.engine.backends.c import compile_model

    if len(feeds) != 1:
        raise ConfigError("the C backend's harness takes one input")
    with tempfile.TemporaryDirectory(prefix="edgeq-bench-") as tmp:
        compiled = compile_model(graph, Path(tmp) / "model", batch=batch, threads=threads)
        (x,) = feeds.values()
        ms, raw = compiled.latency(x, repeat=repeat, per_layer=per_layer)
    if ms is None:
        raise EdgeqError(f"{compiled.binary}: printed no latency_ms_median line")
    layers = layer_rows(compiled.graph, raw, batch, per_image_graph=False) if per_layer else ()
    return BenchResult("c", batch, threads, repeat, ms, layers)


def _bench_ort(path: Path, batch: int, threads: int, repeat: int) -> BenchResult:
    import onnxruntime as ort

    from edgeq.engine import load

    graph = load(path).graph
    feeds = bench_input(graph, batch)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feeds = {i.name: feeds[i.name] for i in sess.get_inputs()}
        sess.run(None, feeds)
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeqError(f"onnxruntime cannot run {path}: {first}") from None
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - start)
    return BenchResult("ort", batch, threads, repeat, 1e3 * statistics.median(times))


def _batch_of(graph: Graph, feeds: dict) -> int:
    x = feeds[graph.inputs[0]]
    return int(x.shape[0]) if x.ndim else 1


def layer_rows(graph: Graph, raw, batch: int, per_image_graph: bool) -> tuple[LayerTime, ...]:
    """``raw``: ``(index, node, op, us)`` per layer. MACs come from ``graph``'s node of the
    same name: per image when the graph's batch is symbolic (``per_image_graph``), else
    for the graph's concrete batch, divided by ``batch``."""
    nodes = {n.name: n for n in graph.nodes}
    total = sum(us for *_, us in raw) or 1.0
    rows = []
    for index, name, op, us in raw:
        node = nodes.get(name)
        macs = macs_of(graph, node) if node is not None else None
        if macs is not None and not per_image_graph:
            macs //= batch
        gmacs = macs * batch / (us * 1e3) if macs and us > 0 else None
        rows.append(LayerTime(index, name, op, us, macs, gmacs, us / total))
    return tuple(rows)


def format_result(result: BenchResult, model: str) -> str:
    lines = [f"model {model}: backend {result.backend}, batch {result.batch}, "
             f"threads {result.threads}, {result.repeat} runs",
             f"latency (median): {result.latency_ms:.6g} ms",
             f"throughput: {result.images_per_s:.6g} images/s"]
    if result.layers:
        lines += ["", format_layers(result.layers)]
    return "\n".join(lines)


def format_layers(layers) -> str:
    name_w = max([4] + [len(r.node) for r in layers])
    op_w = max([2] + [len(r.op) for r in layers])
    lines = [f"{'#':>3}  {'node':{name_w}}  {'op':{op_w}}  {'time us':>10}  {'MACs/img':>13}  "
             f"{'GMAC/s':>7}  {'share':>6}"]
    for r in layers:
        macs = f"{r.macs:,}" if r.macs else ""
        g = f"{r.gmacs:.2f}" if r.gmacs else ""
        lines.append(f"{r.index:>3}  {r.node:{name_w}}  {r.op:{op_w}}  {r.us:10.1f}  "
                     f"{macs:>13}  {g:>7}  {100 * r.share:5.1f}%")
    total_us = sum(r.us for r in layers)
    total_macs = sum(r.macs or 0 for r in layers)
    lines.append(f"{'':>3}  {'total':{name_w}}  {'':{op_w}}  {total_us:10.1f}  "
                 f"{total_macs:>13,}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------
# cortex-a72: per-layer instruction counts of c and armcl (the armcl backend's table)
# ---------------------------------------------------------------------------------
def bench_target(model: str | Path, target: str, batch: int = 1, per_layer: bool = False,
                 cost_table=None, input_range=None) -> str:
    """The cost table of ``model`` on ``target`` (c and armcl side by side) as text;
    ``cost_table``: also write it there as JSON."""
    from edgeq.engine import load
    from edgeq.engine.backends.armcl import cost

    if target != "cortex-a72":
        raise ConfigError(f"--target {target}: per-layer costs are counted on cortex-a72")
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    graph = load(model, input_range=input_range).graph
    table = cost.measure(graph, bench_input(graph, batch), model=Path(model).name, batch=batch)
    if cost_table:
        table.save(cost_table)
    text = cost.format_table(table)
    if not per_layer:  # header and the two total lines only
        lines = text.splitlines()
        text = "\n".join(lines[:2] + lines[-2:])
    return text


def compile_armcl(model, out_dir, backend: str, target: str = "cortex-a72", batch: int = 1,
                  force: bool = False, cost_table=None, input_range=None):
    """``edgeq compile --backend SPEC|auto`` with armcl layers; ``auto`` reads the cost
    table from ``cost_table`` when that file exists, else measures (and writes) it."""
    from edgeq.engine import load
    from edgeq.engine.backends.armcl import compile_mixed, cost

    graph = load(model, input_range=input_range).graph
    spec = backend
    if backend.strip() == "auto":
        if target != "cortex-a72":
            raise ConfigError(f"--backend auto chooses between c and armcl on cortex-a72, "
                              f"not --target {target}")
        if cost_table and Path(cost_table).exists():
            table = cost.CostTable.load(cost_table)
        else:
            table = cost.measure(graph, bench_input(graph, batch), model=Path(model).name,
                                 batch=batch)
            if cost_table:
                table.save(cost_table)
        _check_table_nodes(table, graph, batch, cost_table)
        spec = cost.auto_spec(table)
    return compile_mixed(graph, out_dir, spec, target=target, batch=batch, force=force)


def _check_table_nodes(table, graph: Graph, batch: int, where) -> None:
    """A cost table must describe this model: every node it names exists after the passes."""
    from edgeq.engine.backends.c.project import prepare_graph

    names = {n.name for n in prepare_graph(graph, batch).nodes}
    unknown = [r.node for r in table.rows if r.node not in names]
    if unknown:
        raise ConfigError(f"cost table '{where or 'measured'}': node '{unknown[0]}' is not in "
                          "this model (a table of another model?)")
