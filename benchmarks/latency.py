"""Inference latency of MobileNetV1 (3DDFA layout): edgeq's C backend against its peers.

One run builds MobileNetV1 3DDFA (width 1.0, 3x120x120 -> 62) with random weights,
converts it to 8-bit PACT (F2F, activations observed and BatchNorm statistics taken on
random inputs) and to the true-quantised integer network (F2T), then times, at batch 1
and 32 and with 1 and 2 threads, all in the same process:

- **edgeq C**: the generated C program (``compile_model``; its harness's median);
- **ORT int8**: onnxruntime on the FP export quantised by ``quantize_static`` (QDQ,
  U8 activations x S8 per-channel weights, calibrated on random inputs);
- **ORT FP32**: onnxruntime on the FP export;
- **torch FP32**: the float PyTorch model.

Timing: the four take turns in rounds (each round times a few runs of each, the
reported figure is the median over rounds), so that load from other processes on a
shared machine hits all of them alike; each turn starts 0.12 s after the previous one,
when the previous peer's idle worker threads have stopped spinning (onnxruntime's spin
~50 ms after a run and would otherwise take the second core from whoever runs next).
All four run in this process, timed around the
call: the C model as a shared library (``CompiledModel.in_process``: input copy plus
``eq_run``). The harness's own median (a fresh ``run_model`` process per round, no
file I/O in the timed region) is recorded beside it as ``edgeq C harness``. On a shared,
loaded machine either figure swings 2-3x between runs (a few-millisecond run is
preempted or not); the load average is recorded before and after the run, and the
per-layer table (one process, many runs) is the stable view.

The C output is compared bit for bit with the NumPy reference on the same input (the
result is printed). Ratios are latency / ORT int8 latency (below 1 is faster) and
throughput (images/s) / ORT int8's (above 1 is better). Writes
``benchmarks/results/latency.json``.

    python benchmarks/latency.py            # full run (a few minutes)
    python benchmarks/latency.py --quick    # smoke run (width 0.25, 32 px, few repeats)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from edgeq.engine.tensor_io import write_json

DEFAULT_OUT = Path(__file__).parent / "results" / "latency.json"
PEERS = ("edgeq C", "ORT int8", "ORT FP32", "torch FP32")


@dataclasses.dataclass(frozen=True)
class Config:
    width: float = 1.0
    size: int = 120
    batches: tuple[int, ...] = (1, 32)
    threads: tuple[int, ...] = (1, 2)
    repeat: int = 40  # timed runs per peer and setting at batch 1; fewer for big batches
    calibration: int = 8  # random images for F2F observation and ORT calibration
    check_batches: tuple[int, ...] = (1, 32)  # C vs reference bit-exactness checked here

    @classmethod
    def quick(cls) -> Config:
        return cls(width=0.25, size=32, batches=(1, 4), threads=(1,), repeat=4, calibration=2,
                   check_batches=(1, 4))

    def rounds(self, batch: int) -> tuple[int, int]:
        """(rounds, runs per round): the peers take turns every round."""
        total = max(4, self.repeat // max(1, batch // 4))
        per_round = 5 if total >= 20 else 1
        return max(1, total // per_round), per_round


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- building the models ---------------------------------------------------------------------


def build_models(cfg: Config, work: Path):
    """(float torch model, FP ONNX path, ORT int8 ONNX path, TQ graph, calibration images)."""
    import torch

    from edgeq.models import mobilenet_v1_3ddfa
    from edgeq.train.controller import calibrate_and_start
    from edgeq.train.f2f import Policy, f2f, unit_input_spec
    from edgeq.train.f2t import f2t

    torch.manual_seed(0)
    x = torch.rand(cfg.calibration, 3, cfg.size, cfg.size)
    net = mobilenet_v1_3ddfa(cfg.width)
    net.train()
    with torch.no_grad():
        net(x)  # BatchNorm statistics of the inputs, for a realistic float model
    net.eval()
    gm, _ = f2f(net, Policy.uniform(8, "pact"), x[:1], input_spec=unit_input_spec())
    calibrate_and_start(gm, x)
    graph = f2t(gm.eval(), x[:1]).to_ir()
    fp_path, int8_path = work / "fp32.onnx", work / "int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x[:1],), str(fp_path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    ort_quantise(fp_path, int8_path, x.numpy())
    return net, fp_path, int8_path, graph, x


def ort_quantise(fp_path: Path, int8_path: Path, images: np.ndarray) -> None:
    """onnxruntime's static quantisation: QDQ, U8 activations, S8 per-channel weights."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": images[i:i + 1]} for i in range(len(images))])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(fp_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True)


# -- timing ----------------------------------------------------------------------------------


def median_ms(fn, repeat: int) -> float:
    """Median wall time of ``repeat`` calls of ``fn``, in ms."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


# After a run, onnxruntime's intra-op workers keep spinning for ~50 ms (measured: 46-50 ms
# of CPU time in the second after a 2-thread batch-1 run) and our pool for 0.1 ms: a peer
# timed right after another would share its cores with the other's idle spinners.
SETTLE_S = 0.12


def interleaved(timers: dict, rounds: int, per_round: int,
                settle: float = SETTLE_S) -> dict[str, float]:
    """Median over ``rounds`` of each timer's median of ``per_round`` runs, the timers
    taking turns inside every round: on a shared, noisy machine a burst of load then
    hits every peer alike instead of whichever happened to run during it. Every turn
    starts ``settle`` seconds after the previous one ended, when the previous peer's
    worker threads have gone to sleep."""
    for fn in timers.values():
        fn(1)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(rounds):
        for name, fn in timers.items():
            time.sleep(settle)
            samples[name].append(fn(per_round))
    return {name: statistics.median(v) for name, v in samples.items()}


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def peer_timers(net, fp_path, int8_path, x_float: np.ndarray, threads: int) -> dict:
    """name -> fn(k) returning the median ms of k runs, for the three peers."""
    import torch

    timers = {}
    for name, path in (("ORT int8", int8_path), ("ORT FP32", fp_path)):
        sess = ort_session(path, threads)
        timers[name] = lambda k, s=sess: median_ms(lambda: s.run(None, {"x": x_float}), k)
    xt = torch.from_numpy(x_float)

    def torch_ms(k: int) -> float:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.no_grad():
                return median_ms(lambda: net(xt), k)
        finally:
            torch.set_num_threads(previous)

    timers["torch FP32"] = torch_ms
    return timers


# -- edgeq C ---------------------------------------------------------------------------------


def c_backend_available() -> bool:
    try:
        from edgeq.engine.backends.c import compile_model  # noqa: F401
    except ImportError:
        return False
    return True


def compile_c(graph, work: Path, batch: int, threads: int):
    from edgeq.engine.backends.c import compile_model

    return compile_model(graph, work / f"c_b{batch}_t{threads}", batch=batch, threads=threads,
                         force=True)


def c_timer(compiled, x_int: np.ndarray):
    """fn(k): median ms of k in-process runs (input copy + eq_run), timed like the peers."""
    model = compiled.in_process()

    def run() -> None:
        model.set_input(x_int)
        model.run()

    return lambda k: median_ms(run, k)


def c_harness_timer(compiled, x_int: np.ndarray):
    """fn(k): the harness's own median of k runs (a fresh process; no file I/O timed)."""
    return lambda k: compiled.latency(x_int, repeat=k)[0]


def check_exact(compiled, graph, x_int: np.ndarray) -> bool:
    from edgeq.engine.backends.reference.executor import run_graph

    want = run_graph(graph, {graph.inputs[0]: x_int})[graph.outputs[0]]
    got = compiled.run({graph.inputs[0]: x_int})[graph.outputs[0]]
    model = compiled.in_process()  # the library the timings use: the same integers
    model.set_input(x_int)
    model.run()
    return all(g.shape == want.shape and bool(np.array_equal(g.astype(np.int64),
                                                             want.astype(np.int64)))
               for g in (got, model.output()))


# -- the run ---------------------------------------------------------------------------------


def quantised_input(graph, x: np.ndarray) -> np.ndarray:
    from edgeq.engine.model import quantise_input

    v = graph.values[graph.inputs[0]]
    return quantise_input(x, v.quant).astype(v.dtype)


def run(cfg: Config, work: Path) -> dict:
    load_start = os.getloadavg()
    progress(f"building MobileNetV1 3DDFA width {cfg.width}, {cfg.size} px (F2F, F2T, ORT int8)")
    net, fp_path, int8_path, graph, _ = build_models(cfg, work)
    rng = np.random.default_rng(0)
    rows, exact, per_layer = [], {}, None
    have_c = c_backend_available()
    for batch in cfg.batches:
        x = rng.random((batch, 3, cfg.size, cfg.size), dtype=np.float32)
        x_int = quantised_input(graph, x)
        for threads in cfg.threads:
            progress(f"batch {batch}, {threads} thread(s)")
            timers = peer_timers(net, fp_path, int8_path, x, threads)
            compiled = _edgeq_c(cfg, graph, work, batch, threads, x_int, exact, have_c)
            if compiled is not None:
                timers = {"edgeq C": c_timer(compiled, x_int),
                          "edgeq C harness": c_harness_timer(compiled, x_int), **timers}
            rounds, per_round = cfg.rounds(batch)
            row = {"batch": batch, "threads": threads, "edgeq C": None,
                   **interleaved(timers, rounds, per_round)}
            if compiled is not None and batch == 1 and threads == 1:
                _, raw = compiled.latency(x_int, repeat=cfg.repeat, per_layer=True)
                per_layer = layer_table(compiled.graph, raw)
            rows.append(row)
    env = environment()
    env["loadavg_start"], env["loadavg_end"] = load_start, os.getloadavg()
    return {"config": dataclasses.asdict(cfg), "environment": env, "rows": rows,
            "bit_exact": exact, "per_layer": per_layer, "peers": list(PEERS)}


def _edgeq_c(cfg, graph, work, batch, threads, x_int, exact, have_c):
    """The compiled model (None without a C backend or for an unsupported setting)."""
    from edgeq.errors import EdgeqError

    if not have_c:
        return None
    try:
        compiled = compile_c(graph, work, batch, threads)
    except EdgeqError as exc:  # e.g. a thread count the backend does not implement
        progress(f"edgeq C, batch {batch}, {threads} threads: {exc}")
        return None
    if batch in cfg.check_batches and str(batch) not in exact:
        exact[str(batch)] = check_exact(compiled, graph, x_int)
        progress(f"edgeq C vs reference, batch {batch}: "
                 f"{'bit-exact' if exact[str(batch)] else 'MISMATCH'}")
    return compiled


def layer_table(graph, layers: list) -> list[dict]:
    """Per-layer rows (time, MACs per image, GMAC/s, share) of the compiled batch-1 graph,
    whose node names the harness prints (``edgeq bench``'s table)."""
    from edgeq.engine.bench import layer_rows

    return [vars(r) for r in layer_rows(graph, layers, 1, per_image_graph=False)]


def format_table(data: dict) -> str:
    lines = [f"{'batch':>5} {'thr':>3}  " + "  ".join(f"{p:>11}" for p in PEERS)
             + "   C/int8 lat  C/int8 img/s"]
    for r in data["rows"]:
        cells = [f"{r[p]:8.2f} ms" if r.get(p) is not None else f"{'n/a':>11}" for p in PEERS]
        c, q = r.get("edgeq C"), r["ORT int8"]
        ratio = f"{c / q:10.2f}x  {q / c:11.2f}x" if c else f"{'n/a':>11}  {'n/a':>12}"
        lines.append(f"{r['batch']:>5} {r['threads']:>3}  " + "  ".join(cells) + "  " + ratio)
    harness = [f"b{r['batch']}/t{r['threads']} {r['edgeq C harness']:.2f} ms"
               for r in data["rows"] if r.get("edgeq C harness")]
    if harness:
        lines.append("edgeq C harness (fresh process per round): " + "; ".join(harness))
    env = data.get("environment", {})
    if "loadavg_start" in env:
        lines.append(f"load average (1/5/15 min) at start {env['loadavg_start']}, "
                     f"at end {env['loadavg_end']} on {env['cpus']} CPUs")
    lines.append("images/s: " + "; ".join(
        f"b{r['batch']}/t{r['threads']} " + ", ".join(
            f"{p} {1e3 * r['batch'] / r[p]:.0f}" for p in PEERS if r.get(p))
        for r in data["rows"]))
    exact = data["bit_exact"]
    lines.append("edgeq C vs NumPy reference: " + (", ".join(
        f"batch {b} {'bit-exact' if ok else 'MISMATCH'}" for b, ok in exact.items())
        if exact else "not checked (no C backend)"))
    if data.get("per_layer"):
        lines.append("")
        lines.append(format_layers(data["per_layer"]))
    return "\n".join(lines)


def format_layers(rows: list[dict]) -> str:
    from edgeq.engine.bench import LayerTime, format_layers

    return format_layers([LayerTime(**r) for r in rows])


def environment() -> dict:
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor() or "unknown", "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model and sizes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs (batch 1)")
    args = parser.parse_args(argv)
    cfg = Config.quick() if args.quick else Config()
    if args.repeat is not None:
        if args.repeat < 1:
            print("error: --repeat must be >= 1", file=sys.stderr)
            return 2
        cfg = dataclasses.replace(cfg, repeat=args.repeat)
    with tempfile.TemporaryDirectory(prefix="edgeq-latency-") as tmp:
        data = run(cfg, Path(tmp))
    data["table"] = format_table(data)
    write_json(args.out, data)
    print(data["table"])
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
