"""The end-to-end pipeline: FP training -> F2F -> QAT -> F2T -> ONNX export -> engine.

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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from edgeq.errors import ConfigError
from edgeq.lab.config import PipelineConfig
from edgeq.lab.training import accuracy, predict, train

FQ_STATE = "fq_state.pt"
FLOAT32_SIGNIFICAND = 24  # integers of 24 significant bits are exact in float32


@dataclass
class SeedResult:
    seed: int
    fp_accuracy: float
    fq_accuracy: float
    tq_accuracy: float
    engine_accuracy: float
    bit_exact: bool
    dory_accuracy: float
    dory_bit_exact: bool
    fp_weight_bytes: int
    int_weight_bytes: int
    seconds: float
    fidelity: dict


def build_model(name: str) -> torch.nn.Module:
    from edgeq.models import DigitsCNN, DigitsConcatNet, DigitsResNet

    return {"digits_cnn": DigitsCNN, "digits_resnet": DigitsResNet,
            "digits_concat": DigitsConcatNet}[name]()


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


def run_seed(config: PipelineConfig, seed: int, out: Path, progress: bool = True) -> SeedResult:
    """One complete pipeline run; files go to ``out``."""
    from edgeq.data import load_digits_splits
    from edgeq.engine import load
    from edgeq.engine.onnx.exporter import export_onnx
    from edgeq.train.f2f import f2f
    from edgeq.train.f2t import f2t, fidelity_report

    start = time.perf_counter()
    torch.manual_seed(seed)
    splits = load_digits_splits(config.dataset.seed)
    x_test, y_test = splits.x_test, splits.y_test
    loader = _loader(splits, config.dataset.batch_size, seed)

    model = build_model(config.model.name)
    train(model, loader, config.training.fp_epochs, config.training.lr,
          f"seed {seed} FP", progress=progress)
    fp_acc = accuracy(predict(model, x_test), y_test)
    _export_float(model, x_test[:1], out / "model_fp.onnx")

    fq, _report = f2f(model, config.build_policy(), x_test[:1], input_spec=input_spec(config))
    calibrate_and_train_qat(fq, loader, splits.x_train, config, seed, progress)
    fq_acc = accuracy(predict(fq, x_test), y_test)
    _export_float(fq, x_test[:1], out / "model_fq.onnx")

    # 24 significant bits: every constant is exact in the float32 carriers of the ONNX file.
    tq = f2t(fq, x_test[:1], significant_bits=FLOAT32_SIGNIFICAND)
    tq_out = tq(tq.quantise_input(x_test))
    tq_acc = accuracy(tq.dequantise(tq_out), y_test)  # ε may differ per class
    graph = tq.to_ir()
    export_onnx(graph, out / "model_tq.onnx", dialect="edgeq")
    engine = load(out / "model_tq.onnx")
    (eng_out,) = engine.run({engine.inputs[0].name: x_test.numpy()}).values()
    dory_acc, dory_exact = _dory_variant(fq, tq, x_test, y_test, out / "model_tq_dory.onnx")
    report = fidelity_report(fq, tq, (x_test, y_test))
    (out / "fidelity.txt").write_text(report.format() + "\n")
    torch.save(fq.state_dict(), out / FQ_STATE)
    fidelity = report.to_json()
    return SeedResult(
        seed=seed, fp_accuracy=fp_acc, fq_accuracy=fq_acc, tq_accuracy=tq_acc,
        engine_accuracy=accuracy(tq.dequantise(torch.from_numpy(np.asarray(eng_out))), y_test),
        bit_exact=bool(np.array_equal(np.asarray(eng_out), tq_out.numpy())),
        dory_accuracy=dory_acc, dory_bit_exact=dory_exact,
        fp_weight_bytes=fp_weight_bytes(model), int_weight_bytes=int_weight_bytes(graph),
        seconds=time.perf_counter() - start, fidelity=fidelity,
    )


def _dory_variant(fq, tq, x, y, path: Path) -> tuple[float, bool]:
    """The QuantLab/DORY file, converted for DORY's int32 requantisation.

    DORY's kernels compute ``acc*mul + add`` in int32, so this TQ network is converted
    with ``acc_bits=32`` (smaller shifts than the 64-bit reference). Returns its engine
    accuracy and whether the engine, reading the DORY file, matches it bit for bit.
    """
    from edgeq.engine import load
    from edgeq.engine.onnx.exporter import export_onnx
    from edgeq.train.f2t import f2t

    tq32 = f2t(fq, x[:1], acc_bits=32, significant_bits=FLOAT32_SIGNIFICAND)
    export_onnx(tq32.to_ir(), path, dialect="dory")
    x_int = tq32.quantise_input(x)
    dory = load(path, input_range=tq32.input_quant.range)
    (out,) = dory.run({dory.inputs[0].name: x_int.numpy()}).values()
    out = torch.from_numpy(np.asarray(out).astype(np.int64))
    return accuracy(tq32.dequantise(out), y), bool(torch.equal(out, tq32(x_int)))


def calibrate_and_train_qat(fq, loader, x_train, config: PipelineConfig, seed: int,
                            progress: bool = True) -> None:
    """Observe the training data in float to initialise every ε, then QAT."""
    from edgeq.train.controller import QATController, observing
    from edgeq.train.spec import ScheduleSpec

    with observing(fq):
        predict(fq, x_train)
    schedule = ScheduleSpec(start_epoch=0, freeze_epoch=config.training.freeze_epoch)
    train(fq, loader, config.training.qat_epochs, config.training.qat_lr,
          f"seed {seed} QAT", controller=QATController(fq, schedule), progress=progress)


def rebuild_fq(config: PipelineConfig, state_path: Path):
    """The trained FQ network of a finished run, from its config and saved state."""
    from edgeq.data import load_digits_splits
    from edgeq.train.f2f import f2f

    example = load_digits_splits(config.dataset.seed).x_test[:1]
    fq, _ = f2f(build_model(config.model.name), config.build_policy(), example,
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
    from edgeq.data import load_digits_splits
    from edgeq.train.f2t import f2t, fidelity_report

    run = Path(run_dir)
    cfg_path = next((p / "config.json" for p in (run, run.parent)
                     if (p / "config.json").is_file()), None)
    if cfg_path is None or not (run / FQ_STATE).is_file():
        raise ConfigError(f"{run}: not a run directory (needs config.json and {FQ_STATE}; "
                          "for several seeds pass one seed's folder)")
    config = PipelineConfig.load(cfg_path)
    fq = rebuild_fq(config, run / FQ_STATE)
    x, y = load_digits_splits(config.dataset.seed).split(split)
    tq = f2t(fq, x[:1], significant_bits=FLOAT32_SIGNIFICAND)
    return fidelity_report(fq, tq, (x, y))


def _loader(splits, batch_size: int, seed: int):
    from edgeq.data import digits_loaders

    return digits_loaders(batch_size=batch_size, seed=seed, splits=splits)["train"]


def _export_float(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """Float ONNX (FP or FQ network) with the legacy exporter; FQ ops trace as float ops."""
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


# -- summary ------------------------------------------------------------------------------
METRICS = ("fp_accuracy", "fq_accuracy", "tq_accuracy", "engine_accuracy", "dory_accuracy")


def summarise(results: list[SeedResult]) -> dict:
    """``summary.json``: the first seed's figures at top level (mean for several seeds)."""
    summary: dict = {}
    for key in METRICS:
        vals = [getattr(r, key) for r in results]
        summary[key] = float(np.mean(vals))
        summary[f"{key}_std"] = float(np.std(vals))
    summary["bit_exact"] = all(r.bit_exact for r in results)
    summary["dory_bit_exact"] = all(r.dory_bit_exact for r in results)
    summary["fp_weight_bytes"] = results[0].fp_weight_bytes
    summary["int_weight_bytes"] = results[0].int_weight_bytes
    summary["seeds"] = [asdict(r) for r in results]
    return summary


def format_table(summary: dict) -> str:
    n = len(summary["seeds"])
    rows = [("FP (float32, PyTorch)", "fp_accuracy"), ("FQ (fake-quantised, PyTorch)",
            "fq_accuracy"), ("TQ (true-quantised, PyTorch)", "tq_accuracy"),
            ("TQ (edgeq engine, from ONNX)", "engine_accuracy"),
            ("TQ int32 requant (DORY file)", "dory_accuracy")]
    lines = [f"{'network':32s} {'test accuracy %':>18s}"]
    for label, key in rows:
        std = f" ± {summary[key + '_std']:.2f}" if n > 1 else ""
        lines.append(f"{label:32s} {summary[key]:>10.2f}{std}")
    fp, iw = summary["fp_weight_bytes"], summary["int_weight_bytes"]
    lines += [
        "",
        f"{'model size, FP32':32s} {fp:>10d} bytes",
        f"{'model size, packed integers':32s} {iw:>10d} bytes  ({fp / max(iw, 1):.2f}x smaller)",
        f"{'engine == TQ torch, bit for bit':32s} {'yes' if summary['bit_exact'] else 'NO':>10s}",
        f"{'  same for the DORY file':32s} {'yes' if summary['dory_bit_exact'] else 'NO':>10s}",
    ]
    return "\n".join(lines)


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
    # These networks are tiny: one thread is faster and immune to a busy second core.
    torch.set_num_threads(1)
    try:
        results = []
        for seed in config.seeds:
            seed_dir = tmp if len(config.seeds) == 1 else tmp / f"seed{seed}"
            seed_dir.mkdir(exist_ok=True)
            results.append(run_seed(config, seed, seed_dir, progress))
        summary = summarise(results)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (tmp / "table.txt").write_text(format_table(summary) + "\n")
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
