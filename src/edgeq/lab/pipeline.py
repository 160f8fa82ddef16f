"""The end-to-end pipeline: FP training -> F2F -> QAT -> F2T -> ONNX export -> engine.

Generic over a :class:`~edgeq.lab.tasks.base.Task` (datasets, model, loss, metrics):
every stage (FP, FQ, TQ torch, TQ engine, the DORY file in the engine) is evaluated by
the task's metrics, reported as ``<stage>_<metric>`` (``fp_accuracy``, ``tq_nme``, ...).
One run per seed; everything a run writes goes to a temporary directory beside the
output directory, which replaces the output directory only when every seed has finished
(so a failure leaves nothing half-written, and existing results are kept unless
``force``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edgeq.errors import ConfigError
from edgeq.lab.config import PipelineConfig
from edgeq.lab.tasks import Task, make_task
from edgeq.lab.training import Session, TrainHooks, predict, train

FQ_STATE = "fq_state.pt"
FLOAT32_SIGNIFICAND = 24  # integers of 24 significant bits are exact in float32
CALIBRATION_SAMPLES = 2048  # training samples observed in float to initialise every ε
ENGINE_BATCH = 256  # samples per engine call (bounds the int64 intermediates' memory)
STAGES = ("fp", "fq", "tq", "engine", "dory")


@dataclass
class SeedResult:
    seed: int
    metrics: dict  # "<stage>_<metric>" -> value, stages as in STAGES
    bit_exact: bool
    dory_bit_exact: bool
    fp_weight_bytes: int
    int_weight_bytes: int
    int_activation_bytes: int  # every node output of the deployed (fused) network, per sample
    int_peak_activation_bytes: int  # the largest single node output, per sample
    seconds: float
    stage_seconds: dict = field(default_factory=dict)
    stage_cpu_seconds: dict = field(default_factory=dict)
    fidelity: dict = field(default_factory=dict)
    artefacts: list = field(default_factory=list)  # task files written beside the models
    deployed: str = ""  # what ran the deployed stage ("c:host"), or why it was skipped


def build_model(config: PipelineConfig) -> torch.nn.Module:
    """The untrained network a config names."""
    return make_task(config).build_model()


def input_spec(config: PipelineConfig):
    """The network input's quantiser: a fixed range at ``input.bits`` (STE, const init)."""
    from edgeq.train.spec import InitSpec, QuantSpec

    c = config.input
    return QuantSpec.from_bits(c.bits, signed=c.signed, algorithm="ste",
                               init=InitSpec("const", lo=c.lo, hi=c.hi))


def fp_weight_bytes(model: torch.nn.Module) -> int:
    """FP32 size of every parameter and buffer that inference needs."""
    tensors = list(model.parameters()) + [
        b for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var"))
    ]
    return sum(4 * t.numel() for t in tensors)


def int_weight_bytes(graph) -> int:
    """Bytes of the integer network's constants, weights packed at their bit width."""
    return sum(v.nbytes or 0 for v in graph.constants())


def activation_bytes(graph) -> tuple[int, int]:
    """(all node outputs, the largest node output) of ``graph`` in bytes per sample."""
    from edgeq.engine.analysis import layer_table

    sizes = [r.act_bytes or 0 for r in layer_table(graph)]
    return sum(sizes), max(sizes, default=0)


def fused_graph(graph):
    """``graph`` with each requantisation fused into the Conv/Gemm/MatMul it follows, as a
    deployed program runs it: the wide accumulators of the unfused graph never reach memory."""
    from edgeq.engine.backends.c.project import fuse_graph

    return fuse_graph(graph, 1)


def fused_activation_bytes(graph, float_bytes: int | None = None) -> int:
    """Bytes per sample of every node output of :func:`fused_graph` (as a deployed program
    stores them). ``float_bytes``: count the same tensors at that many bytes per element
    instead (the float network's equivalent)."""
    g = fused_graph(graph)
    if float_bytes is None:
        return activation_bytes(g)[0]
    from edgeq.engine.analysis import _static_numel

    return sum(float_bytes * (_static_numel(g.values[o].shape) or 0)
               for n in g.nodes for o in n.outputs)


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (gcc, the C program)."""
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


class _Clock:
    """Seconds per stage, and a progress bar over the stages of one seed."""

    def __init__(self, seed: int, progress: bool) -> None:
        self.bar = tqdm(total=8, desc=f"seed {seed}", disable=not progress, leave=False,
                        unit="stage")
        self.times: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds (all threads): load-independent
        self.t, self.c = time.perf_counter(), _cpu_seconds()

    def stage(self, name: str) -> None:
        self.bar.set_postfix_str(name)

    def done(self, name: str) -> None:
        now, cpu = time.perf_counter(), _cpu_seconds()
        self.times[name], self.cpu[name] = round(now - self.t, 2), round(cpu - self.c, 2)
        self.t, self.c = now, cpu
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_seed(config: PipelineConfig, seed: int, out: Path, progress: bool = True,
             task: Task | None = None, *, checkpoint: bool = False, resume: bool = False,
             tensorboard: bool = False, ddp=None) -> SeedResult | None:
    """One complete pipeline run; files go to ``out``.

    Optional training features (all off by default, see :class:`~edgeq.lab.training.Session`):
    ``checkpoint`` writes ``out/checkpoint.pt`` after every FP and QAT epoch;
    ``resume=True`` continues from that checkpoint when it exists (else starts afresh) and
    ends with the same weights and metrics, bit for bit, as a run never interrupted (a
    corrupt or foreign checkpoint raises :class:`~edgeq.errors.CheckpointError` naming
    it); ``tensorboard`` writes event files to ``out/tensorboard``; ``ddp`` (an
    :class:`~edgeq.lab.ddp.DDPContext`) trains data-parallel: every rank trains, rank 0
    alone evaluates and writes files, the other ranks return None.
    """
    from edgeq.engine.onnx.exporter import export_onnx
    from edgeq.train.f2f import f2f
    from edgeq.train.f2t import f2t, fidelity_report

    start = time.perf_counter()
    # first: a checkpoint that cannot be resumed is reported before any work
    session = Session(out, Session.fingerprint(config.to_json(), seed), checkpoint=checkpoint,
                      resume=resume, tensorboard=tensorboard, ddp=ddp)
    task = task or make_task(config)
    clock = _Clock(seed, progress)
    clock.stage("data")
    task.load(progress)
    clock.done("data")
    torch.manual_seed(seed)
    x_test = task.inputs("test")
    example = x_test[:1]
    loader = (task.batches("train", config.task.batch_size, seed) if ddp is None
              else ddp.batches(task, "train", config.task.batch_size, seed))
    tc = config.training
    metrics, outputs = {}, {}
    main = ddp is None or ddp.is_main
    validate = None
    if session.board is not None:  # validation metrics per epoch, for TensorBoard only
        x_val = task.inputs("val")
        validate = lambda m: task.evaluate(predict(m, x_val), "val")  # noqa: E731

    def record(stage: str, out_float) -> None:
        outputs[stage] = np.asarray(out_float, dtype=np.float64)
        for key, value in task.evaluate(out_float, "test").items():
            metrics[f"{stage}_{key}"] = value

    clock.stage("FP training")
    model = task.build_model()
    if session.fp_done:  # resumed in QAT: the FP phase finished with these weights
        model.load_state_dict(session.fp_weights())
    else:
        train(model, loader, tc.fp_epochs, tc.lr, f"seed {seed} FP", progress=progress,
              loss_fn=task.loss, schedule=tc.schedule, hooks=session.hooks("fp", None, validate))
    if main:
        record("fp", predict(model, x_test))
        _export_float(model, example, out / "model_fp.onnx", task.output_name)
    clock.done("fp")

    clock.stage("QAT")
    fq, _report = f2f(model, config.build_policy(), example, input_spec=input_spec(config))
    qat_hooks = session.hooks("qat", {"fp_model": model.state_dict()}, validate)
    calibrate_and_train_qat(fq, loader, task.inputs("train", CALIBRATION_SAMPLES), config,
                            seed, progress, loss_fn=task.loss, hooks=qat_hooks)
    if ddp is not None:
        ddp.finished(fq)
        if not main:
            session.close()
            clock.close()
            return None
    record("fq", predict(fq, x_test))
    _export_float(fq, example, out / "model_fq.onnx", task.output_name)
    clock.done("qat")

    clock.stage("F2T")
    # 24 significant bits: every constant is exact in the float32 carriers of the ONNX file.
    tq = f2t(fq, example, significant_bits=FLOAT32_SIGNIFICAND)
    tq_out = _batched(lambda xb: tq(tq.quantise_input(xb)), x_test)
    record("tq", tq.dequantise(tq_out))
    graph = tq.to_ir()
    export_onnx(graph, out / "model_tq.onnx", dialect="edgeq")
    clock.done("f2t")

    clock.stage("engine")
    eng_out = engine_outputs(out / "model_tq.onnx", x_test.numpy())
    record("engine", tq.dequantise(torch.from_numpy(eng_out)))
    bit_exact = bool(np.array_equal(eng_out, tq_out.numpy()))
    clock.done("engine")

    clock.stage("deployed (C)")
    deployed = deployed_outputs(out / "model_tq.onnx", x_test.numpy())
    if deployed is not None:  # the generated C program on the host (gcc)
        record("deployed", tq.dequantise(torch.from_numpy(deployed)))
        metrics["deployed_bit_exact"] = bool(np.array_equal(deployed, tq_out.numpy()))
    deployed_note = "c:host" if deployed is not None else f"skipped: {deployed_skip_reason()}"
    clock.done("deployed")

    clock.stage("DORY file")
    dory_out, dory_exact = _dory_variant(fq, x_test, out / "model_tq_dory.onnx")
    record("dory", dory_out)
    clock.done("dory")

    clock.stage("fidelity report")
    labels = task.split("test").targets if task.classification else None
    report = fidelity_report(fq, tq, (x_test, labels))
    (out / "fidelity.txt").write_text(report.format() + "\n")
    torch.save(fq.state_dict(), out / FQ_STATE)
    artefacts = task.write_artefacts(out, outputs)
    act_total, act_peak = activation_bytes(fused_graph(graph))
    clock.done("report")
    clock.close()
    if session.board is not None:
        session.board.final(metrics)
    session.close()
    return SeedResult(
        seed=seed, metrics=metrics, bit_exact=bit_exact, dory_bit_exact=dory_exact,
        fp_weight_bytes=fp_weight_bytes(model), int_weight_bytes=int_weight_bytes(graph),
        int_activation_bytes=act_total, int_peak_activation_bytes=act_peak,
        seconds=time.perf_counter() - start, stage_seconds=clock.times, stage_cpu_seconds=clock.cpu,
        fidelity=report.to_json(), artefacts=artefacts, deployed=deployed_note,
    )


def _batched(fn, x: torch.Tensor, batch: int = ENGINE_BATCH) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


def engine_outputs(path: Path, x: np.ndarray, input_range=None,
                   batch: int = ENGINE_BATCH, backend: str | None = None) -> np.ndarray:
    """The engine's single output for ``x``, in batches (``backend`` None: reference)."""
    from edgeq.engine import load

    kwargs = {} if backend is None else {"backend": backend}
    engine = load(path, input_range=input_range, **kwargs)
    name = engine.inputs[0].name
    parts = [np.asarray(next(iter(engine.run({name: x[i:i + batch]}).values())))
             for i in range(0, len(x), batch)]
    return np.concatenate(parts)


def deployed_skip_reason(target: str = "host") -> str | None:
    """Why the C program for ``target`` cannot be built and run here (None: it can)."""
    from edgeq.engine.backends.c import TARGETS

    t = TARGETS[target]
    for tool in (t.cc, *t.runner[:1]):
        if shutil.which(tool) is None:
            return f"'{tool}' not found on PATH (the C backend of target {target} needs it)"
    return None


def deployed_outputs(path: Path, x: np.ndarray, *, target: str = "host",
                     batch: int = ENGINE_BATCH) -> np.ndarray | None:
    """The deployed program's outputs: ``path`` compiled by the C backend for ``target``
    (``host``: gcc; ``cortex-a72``: the aarch64 cross compiler, run under qemu) and run
    on ``x`` in batches; None when the compiler (or qemu) is missing
    (:func:`deployed_skip_reason` says why).

    Compiled once, for a batch of ``min(batch, len(x))``: the last, shorter batch is
    padded by repeating its last sample (its extra outputs are dropped), so a run never
    builds a second program; the C backend's cache reuses the build across calls.
    """
    from edgeq.engine import load
    from edgeq.engine.backends.c import compile_cached

    if deployed_skip_reason(target) is not None:
        return None
    graph = load(path).graph
    n = max(1, min(batch, len(x)))
    compiled = compile_cached(graph, target, batch=n)
    name = graph.inputs[0]
    parts = []
    for i in range(0, len(x), n):
        xb = x[i:i + n]
        if len(xb) < n:
            xb = np.concatenate([xb, np.repeat(xb[-1:], n - len(xb), axis=0)])
        out = next(iter(compiled.run({name: np.ascontiguousarray(xb)}).values()))
        parts.append(np.asarray(out)[:min(n, len(x) - i)])
    return np.concatenate(parts)


def _dory_variant(fq, x, path: Path) -> tuple[torch.Tensor, bool]:
    """The QuantLab/DORY file, converted for DORY's int32 requantisation.

    DORY's kernels compute ``acc*mul + add`` in int32, so this TQ network is converted
    with ``acc_bits=32`` (smaller shifts than the 64-bit reference). Returns its engine
    outputs (dequantised) and whether the engine, reading the DORY file, matches it bit
    for bit.
    """
    from edgeq.engine.onnx.exporter import export_onnx
    from edgeq.train.f2t import f2t

    tq32 = f2t(fq, x[:1], acc_bits=32, significant_bits=FLOAT32_SIGNIFICAND)
    export_onnx(tq32.to_ir(), path, dialect="dory")
    x_int = tq32.quantise_input(x)
    out = engine_outputs(path, x_int.numpy(), input_range=tq32.input_quant.range)
    out = torch.from_numpy(out.astype(np.int64))
    return tq32.dequantise(out), bool(torch.equal(out, _batched(tq32, x_int)))


def calibrate_and_train_qat(fq, loader, x_calib, config: PipelineConfig, seed: int,
                            progress: bool = True, loss_fn=None,
                            hooks: TrainHooks | None = None) -> None:
    """Observe ``x_calib`` in float to initialise every ε, then QAT (``hooks``: see
    :class:`~edgeq.lab.training.TrainHooks`; a resumed QAT phase loads every ε after)."""
    from edgeq.train.controller import QATController, observing
    from edgeq.train.spec import ScheduleSpec

    with observing(fq):
        predict(fq, x_calib)
    schedule = ScheduleSpec(start_epoch=0, freeze_epoch=config.training.freeze_epoch)
    train(fq, loader, config.training.qat_epochs, config.training.qat_lr,
          f"seed {seed} QAT", controller=QATController(fq, schedule), progress=progress,
          loss_fn=loss_fn, schedule=config.training.schedule, hooks=hooks)


def rebuild_fq(config: PipelineConfig, state_path: Path, task: Task | None = None):
    """The trained FQ network of a finished run, from its config and saved state."""
    from edgeq.train.f2f import f2f

    task = task or make_task(config)
    fq, _ = f2f(task.build_model(), config.build_policy(), task.example_input(),
                input_spec=input_spec(config))
    try:
        state = torch.load(state_path, weights_only=True)
        fq.load_state_dict(state)
    except Exception as exc:  # torch.load raises many types on a corrupt file
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ConfigError(f"{state_path}: cannot load the FQ state "
                          f"({type(exc).__name__}: {first})") from None
    return fq.eval()


def fidelity_of_run(run_dir: str | Path, split: str = "test"):
    """Re-run F2T on a finished run's FQ network and measure FQ vs TQ on ``split``."""
    from edgeq.train.f2t import f2t, fidelity_report

    run = Path(run_dir)
    cfg_path = next((p / "config.json" for p in (run, run.parent)
                     if (p / "config.json").is_file()), None)
    if cfg_path is None or not (run / FQ_STATE).is_file():
        raise ConfigError(f"{run}: not a run directory (needs config.json and {FQ_STATE}; "
                          "for several seeds pass one seed's folder)")
    config = PipelineConfig.load(cfg_path)
    task = make_task(config)
    task.load(progress=False)
    fq = rebuild_fq(config, run / FQ_STATE, task)
    x = task.inputs(split)
    labels = task.split(split).targets if task.classification else None
    tq = f2t(fq, x[:1], significant_bits=FLOAT32_SIGNIFICAND)
    return fidelity_report(fq, tq, (x, labels))


def _export_float(model: torch.nn.Module, example: torch.Tensor, path: Path,
                  output_name: str = "output") -> None:
    """Float ONNX (FP or FQ network) with the legacy exporter; FQ ops trace as float ops."""
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=[output_name],
                          dynamic_axes={"input": {0: "batch"}, output_name: {0: "batch"}})


# -- summary ------------------------------------------------------------------------------
STAGE_LABELS = {
    "fp": "FP (float32, PyTorch)", "fq": "FQ (fake-quantised, PyTorch)",
    "tq": "TQ (true-quantised, PyTorch)", "engine": "TQ (edgeq engine, from ONNX)",
    "dory": "TQ int32 requant (DORY file)", "deployed": "deployed (C backend)",
}


def summarise(results: list[SeedResult], task: Task) -> dict:
    """``summary.json``: every ``<stage>_<metric>`` at top level (mean over seeds, plus
    ``_std``), the task's baselines, bit-exactness and sizes; per-seed details below."""
    summary: dict = {"task": task.name, "metric": task.metric.name,
                     "higher_is_better": task.metric.higher_is_better}
    for key in results[0].metrics:
        vals = [r.metrics[key] for r in results]
        if isinstance(vals[0], bool):  # e.g. deployed_bit_exact
            summary[key] = all(vals)
            continue
        summary[key] = float(np.mean(vals))
        summary[f"{key}_std"] = float(np.std(vals))
    for name, figures in task.baselines().items():
        for key, value in figures.items():
            summary[f"baseline_{name}_{key}"] = float(value)
    summary["bit_exact"] = all(r.bit_exact for r in results)
    summary["dory_bit_exact"] = all(r.dory_bit_exact for r in results)
    for key in ("fp_weight_bytes", "int_weight_bytes", "int_activation_bytes",
                "int_peak_activation_bytes"):
        summary[key] = getattr(results[0], key)
    summary["seconds"] = round(sum(r.seconds for r in results), 1)
    summary["cpu_seconds"] = round(sum(sum(r.stage_cpu_seconds.values()) for r in results), 1)
    summary["artefacts"] = results[0].artefacts
    summary["deployed"] = results[0].deployed
    summary["seeds"] = [asdict(r) for r in results]
    return summary


def format_table(summary: dict, task: Task | None = None) -> str:
    """The stages (and baselines) against the task's metric columns."""
    columns = task.columns() if task is not None else {summary["metric"]: summary["metric"]}
    n = len(summary["seeds"])
    width = max(12, *(len(c) + 2 for c in columns.values()))
    lines = [f"{'network':32s}" + "".join(f"{c:>{width}s}" for c in columns.values())]
    for stage, label in STAGE_LABELS.items():
        if f"{stage}_{next(iter(columns))}" not in summary:
            continue  # e.g. no deployed backend yet
        cells = []
        for key in columns:
            std = summary.get(f"{stage}_{key}_std", 0.0)
            text = f"{summary[f'{stage}_{key}']:.2f}" + (f"±{std:.2f}" if n > 1 else "")
            cells.append(f"{text:>{width}s}")
        lines.append(f"{label:32s}" + "".join(cells))
    labels = task.baseline_labels() if task is not None else {}
    for name, label in labels.items():
        cells = [f"{summary.get(f'baseline_{name}_{key}', float('nan')):>{width}.2f}"
                 for key in columns]
        lines.append(f"{label:32s}" + "".join(cells))
    fp, iw = summary["fp_weight_bytes"], summary["int_weight_bytes"]
    act, peak = summary["int_activation_bytes"], summary["int_peak_activation_bytes"]
    lines += [
        "",
        f"{'model size, FP32':32s} {fp:>10d} bytes",
        f"{'model size, packed integers':32s} {iw:>10d} bytes  ({fp / max(iw, 1):.2f}x smaller)",
        f"{'integer activations per sample':32s} {act:>10d} bytes  (largest tensor {peak})",
        f"{'engine == TQ torch, bit for bit':32s} {'yes' if summary['bit_exact'] else 'NO':>10s}",
        f"{'  same for the DORY file':32s} {'yes' if summary['dory_bit_exact'] else 'NO':>10s}",
        _deployed_line(summary),
        f"{'time, wall (CPU)':32s} {summary['seconds']:>8.0f} s  ({summary['cpu_seconds']:.0f} s)",
    ]
    return "\n".join(lines)


def _deployed_line(summary: dict) -> str:
    if "deployed_bit_exact" in summary:
        same = "yes" if summary["deployed_bit_exact"] else "NO"
        return f"{'  same for the C program (host)':32s} {same:>10s}"
    return f"{'deployed (C backend)':32s} {summary.get('deployed') or 'not run'}"


# -- output directory -----------------------------------------------------------------------
def _check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output directory {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"output directory {out} already holds results; use --force to replace")


def run_pipeline(config: PipelineConfig, force: bool = False, progress: bool = True,
                 out_dir: str | None = None) -> dict:
    """Run every seed, then move the results into the output directory in one step."""
    out = Path(out_dir or config.output_dir)
    _check_output(out, force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:  # e.g. a parent that is a regular file
        raise ConfigError(f"output directory {out}: cannot create it "
                          f"({exc.strerror or exc})") from None
    threads = torch.get_num_threads()
    task = make_task(config)
    if task.threads is not None:
        torch.set_num_threads(task.threads)
    try:
        results = []
        for seed in config.seeds:
            seed_dir = tmp if len(config.seeds) == 1 else tmp / f"seed{seed}"
            seed_dir.mkdir(exist_ok=True)
            results.append(run_seed(config, seed, seed_dir, progress, task))
        summary = summarise(results, task)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (tmp / "table.txt").write_text(format_table(summary, task) + "\n")
        (tmp / "config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    return summary


def _replace_dir(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old.{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
