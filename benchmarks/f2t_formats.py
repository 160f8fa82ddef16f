"""F2T conversion arithmetic in narrow float formats: what each does to the integer network.

For every model — the digits CNN, ResNet (adds) and concat network, and MobileNetV1
3DDFA trained on the landmark task — and every conversion format (float64, float32,
float16, bfloat16, fp8 E4M3 and E5M2, the fp8 ones emulated: :mod:`edgeq.train.f2t.formats`)
and ``significant_bits`` (24, 16, 11, 8), F2T converts the same trained FQ network
(8-bit PACT) and the study measures

* per layer, the largest |TQ − FQ/ε| in LSB and the fraction of differing elements
  (:func:`~edgeq.train.f2t.fidelity_report`, with the FQ network's own ε as the grid);
* the task metric of the TQ network (accuracy %, or NME % for landmarks) minus FQ's;
* whether F2T refuses the format by default (a scale subnormal in it: the error names the
  node and quantity) — the study then converts with ``allow_subnormal=True`` to measure;
* where the format first breaks: the first node (graph order) whose integer constants
  (bias b̂, requantisation mul/add/shift) differ from the float64 conversion at the same
  ``significant_bits``, the quantity and its relative change, and the first layer off by
  one LSB or more — or, when F2T refuses the format, its error (node and quantity).

Models are trained once (short runs of the lab pipeline's stages, fixed seed) and their
FQ states cached under ``benchmarks/results/f2t_formats/``; later runs reload them.
Writes ``f2t_formats.json``, ``f2t_formats.md`` (table) and ``f2t_formats.png`` (plot)
to ``benchmarks/results/``.

    python benchmarks/f2t_formats.py                 # all models (trains the missing ones)
    python benchmarks/f2t_formats.py --models digits_cnn
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgeq.errors import EdgeqError
from edgeq.lab.config import PipelineConfig
from edgeq.lab.pipeline import CALIBRATION_SAMPLES, calibrate_and_train_qat, input_spec, rebuild_fq
from edgeq.lab.tasks import make_task
from edgeq.lab.training import train
from edgeq.train.f2t import f2t, fidelity_report
from edgeq.train.f2t.formats import FORMATS, Arith, format_name
from edgeq.train.f2t.tq import IntConv2d, IntLinear, RequantShift

RESULTS = Path(__file__).parent / "results"
CACHE = RESULTS / "f2t_formats"
SIGNIFICANT_BITS = (24, 16, 11, 8)

# model -> pipeline config (short trainings: the study needs realistic trained scales, not
# the best accuracy)
MODELS: dict[str, dict] = {
    "digits_cnn": {"model": {"name": "digits_cnn"}},
    "digits_resnet": {"model": {"name": "digits_resnet"}},
    "digits_concat": {"model": {"name": "digits_concat"}},
    "landmarks": {
        "task": {"name": "landmarks_3ddfa", "seed": 0, "batch_size": 64, "n_train": 2000,
                 "n_val": 1, "n_test": 128},
        "model": {"name": "mobilenet_v1_3ddfa", "width": 0.25, "input_size": 64},
        "training": {"fp_epochs": 3, "qat_epochs": 1, "lr": 3e-3, "qat_lr": 5e-4,
                     "schedule": "onecycle"},
    },
}
DIGITS_TRAINING = {"fp_epochs": 10, "qat_epochs": 3, "lr": 3e-3, "qat_lr": 1e-3}


def model_config(name: str) -> PipelineConfig:
    data = {"policy": {"uniform": {"bits": 8, "algorithm": "pact"}},
            "training": DIGITS_TRAINING, **MODELS[name], "output_dir": "unused"}
    return PipelineConfig.from_json(data)


def trained_fq(name: str, cache: Path = CACHE, seed: int = 0, progress=print):
    """(task, FQ network in eval mode): from the cache, else trained and cached."""
    from edgeq.train.f2f import f2f

    config = model_config(name)
    task = make_task(config)
    task.load(False)
    state = cache / f"{name}.pt"
    if state.is_file():
        return task, rebuild_fq(config, state, task)
    progress(f"training {name} (cached afterwards in {state})")
    torch.manual_seed(seed)
    loader = task.batches("train", config.task.batch_size, seed)
    tc = config.training
    model = task.build_model()
    train(model, loader, tc.fp_epochs, tc.lr, f"{name} FP", progress=False,
          loss_fn=task.loss, schedule=tc.schedule)
    fq, _ = f2f(model, config.build_policy(), task.example_input(),
                input_spec=input_spec(config))
    calibrate_and_train_qat(fq, loader, task.inputs("train", CALIBRATION_SAMPLES), config,
                            seed, False, loss_fn=task.loss)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp")
    os.close(fd)
    torch.save(fq.state_dict(), tmp)
    os.replace(tmp, state)
    return task, fq.eval()


# --------------------------------------------------------------------------------------
# one conversion
# --------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One (model, format, significant_bits) conversion."""

    model: str
    format: str
    significant_bits: int
    error: str | None = None  # F2T cannot convert even with subnormal scales: its message
    refused: str | None = None  # F2T's default refusal (a subnormal scale), then measured
    max_lsb: int | None = None
    frac_differ: float | None = None  # over all quantiser outputs
    metric: str = ""
    fq_metric: float | None = None
    tq_metric: float | None = None
    metric_delta: float | None = None
    first_constant_change: dict | None = None  # vs float64 at the same significant_bits
    first_lsb_layer: dict | None = None  # first layer with max_lsb >= 1
    precision_loss: dict | None = None  # the float quantity that loses precision first
    layers: list = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.error is not None:
            return "breaks"
        lsb = "exact" if self.max_lsb == 0 else f"{self.max_lsb} LSB"
        return f"refused ({lsb} when allowed)" if self.refused else lsb


def constants(tq) -> list[tuple[str, str, np.ndarray]]:
    """(node, quantity, int64 values) of every integer constant F2T computed, in order."""
    out = []
    for op in tq.ops:
        if isinstance(op, (IntConv2d, IntLinear)) and op.bias is not None:
            out.append((op.op_name, "bias b̂ = b/(ε_x·ε_w)", op.bias.numpy()))
        elif isinstance(op, RequantShift):
            out.append((op.op_name, "shift d", np.array([op.shift])))
            out.append((op.op_name, "mul ≈ m·2^d, m = γ̂·ε_in/ε_out", op.mul.numpy().ravel()))
            out.append((op.op_name, "add ≈ (β̂/ε_out)·2^d", op.add.numpy().ravel()))
    return out


def first_change(tq, reference) -> dict | None:
    """The first constant of ``tq`` that differs from ``reference``'s (same graph)."""
    ref = {(n, q): v for n, q, v in constants(reference)}
    for node, quantity, v in constants(tq):
        r = ref.get((node, quantity))
        if r is None or r.shape != v.shape:
            return {"node": node, "quantity": quantity, "relative_change": None}
        if not np.array_equal(r, v):
            if quantity == "shift d":
                return {"node": node, "quantity": quantity,
                        "relative_change": None, "from": int(r[0]), "to": int(v[0])}
            rel = np.abs(v.astype(np.float64) - r) / np.maximum(np.abs(r), 1)
            return {"node": node, "quantity": quantity, "relative_change": float(rel.max()),
                    "elements_changed": int((v != r).sum()), "elements": int(v.size)}
    return None


# --------------------------------------------------------------------------------------
# which float quantity loses precision
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TracingArith(Arith):
    """:class:`Arith` that also records every quantity it casts or rounds, in order."""

    log: list = field(default_factory=list, compare=False)

    def cast(self, t, where="", what="value", nonzero=False):
        out = super().cast(t, where, what, nonzero)
        self.log.append((where, what, out.to(torch.float64)))
        return out

    def rnd(self, result, where="", what="value", factors=()):
        out = super().rnd(result, where, what, factors)
        self.log.append((where, what, out.to(torch.float64)))
        return out


def float_trace(fq, example, dtype) -> list:
    """(where, what, value) of every float quantity F2T computes in ``dtype`` (up to the
    error, if F2T refuses the format)."""
    from edgeq.train.f2f.trace import propagate_shapes
    from edgeq.train.f2t.convert import _Converter
    from edgeq.train.f2t.fold import F2TOptions

    propagate_shapes(fq, example)
    conv = _Converter(fq, F2TOptions(dtype, allow_subnormal=True))
    conv.arith = TracingArith(dtype, allow_subnormal=True)
    try:
        with torch.no_grad():
            conv.run()
    except EdgeqError:
        pass
    return conv.arith.log


def _smallest_normal(dtype) -> float:
    import ml_dtypes

    emulated = {torch.float8_e4m3fn: ml_dtypes.float8_e4m3fn,
                torch.float8_e5m2: ml_dtypes.float8_e5m2}
    if dtype in emulated:
        return float(ml_dtypes.finfo(emulated[dtype]).smallest_normal)
    return float(torch.finfo(dtype).tiny)


def precision_loss(trace, reference, dtype) -> dict | None:
    """The first quantity that is subnormal in the format or whose relative error against
    float64 exceeds 4 units of its last place (one rounding costs at most 1/2: more means
    accumulated rounding or cancellation), else the one with the largest error."""
    mant = {torch.float64: 52, torch.float32: 23, torch.float16: 10, torch.bfloat16: 7,
            torch.float8_e4m3fn: 3, torch.float8_e5m2: 2}[dtype]
    unit = 2.0 ** -mant
    tiny = _smallest_normal(dtype)
    worst = None
    for (where, what, v), (w64, what64, r) in zip(trace, reference, strict=False):
        if (where, what) != (w64, what64) or v.shape != r.shape:
            break
        nz = r != 0
        if not bool(nz.any()):
            continue
        rel = float(((v - r).abs()[nz] / r.abs()[nz]).max())
        item = {"where": where, "quantity": what, "relative_error": rel,
                "units": rel / unit,
                "subnormal": bool(((r.abs() < tiny) & nz).any())}
        if rel > 4 * unit or item["subnormal"]:
            return item
        if worst is None or rel > worst["relative_error"]:
            worst = item
    return worst


def convert_cell(name, task, fq, example, x, dtype, bits, reference, fq_metric) -> Cell:
    cell = Cell(name, format_name(dtype), bits, metric=task.metric.name, fq_metric=fq_metric)
    try:
        f2t(fq, example, dtype=dtype, significant_bits=bits)
    except EdgeqError as exc:
        cell.refused = str(exc)
    try:  # measure what the format does when subnormal scales are let through
        tq = f2t(fq, example, dtype=dtype, significant_bits=bits, allow_subnormal=True)
    except EdgeqError as exc:
        cell.error = str(exc)
        return cell
    labels = task.split("test").targets if task.classification else None
    report = fidelity_report(fq, tq, (x, labels), grid=reference)
    cell.layers = [{"name": r.name, "max_lsb": r.max_lsb, "frac_differ": r.frac_differ}
                   for r in report.layers]
    total = sum(r.elements for r in report.layers)
    cell.max_lsb = report.max_lsb
    cell.frac_differ = sum(r.differ for r in report.layers) / total if total else 0.0
    first = next((r for r in report.layers if r.max_lsb >= 1), None)
    if first is not None:
        cell.first_lsb_layer = {"name": first.name, "max_lsb": first.max_lsb,
                                "frac_differ": first.frac_differ}
    with torch.no_grad():
        out = tq.dequantise(tq(tq.quantise_input(x)))
    cell.tq_metric = _metric(task, out)
    cell.metric_delta = cell.tq_metric - fq_metric
    cell.first_constant_change = first_change(tq, reference) if reference is not tq else None
    return cell


def _metric(task, outputs) -> float:
    """The task's headline metric of float outputs on the whole test split."""
    return float(task.evaluate(outputs, "test")[task.metric.name])


def study_model(name: str, task, fq, formats=FORMATS, bits=SIGNIFICANT_BITS,
                progress=print) -> list[Cell]:
    """Every (format, significant_bits) conversion of ``fq`` on the whole test split."""
    x = task.inputs("test")
    example = x[:1]
    with torch.no_grad():
        fq_metric = _metric(task, fq(x).to(torch.float64))
    traces = {d: float_trace(fq, example, d) for d in formats}
    losses = {d: precision_loss(traces[d], traces[torch.float64], d) for d in formats
              if d != torch.float64}
    cells = []
    for b in bits:
        reference = f2t(fq, example, dtype=torch.float64, significant_bits=b)
        for dtype in formats:
            ref = reference if dtype != torch.float64 else None
            cell = convert_cell(name, task, fq, example, x, dtype, b, ref or reference, fq_metric)
            if ref is None:
                cell.first_constant_change = None
            else:
                cell.precision_loss = losses[dtype]
            cells.append(cell)
            progress(f"{name:14s} {cell.format:14s} {b:2d} bits: {cell.status}"
                     + (f" ({cell.error})" if cell.error else ""))
    return cells


# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------
def markdown(cells: list[Cell]) -> str:
    lines = ["| model | format | sig. bits | max LSB | differing | metric Δ | first change "
             "(node: quantity, rel.) | float quantity losing precision |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for c in cells:
        if c.error:
            lines.append(f"| {c.model} | {c.format} | {c.significant_bits} | breaks | | | "
                         f"{_short(c.error)} | |")
            continue
        ch = c.first_constant_change
        where = "—" if ch is None else (
            f"{ch['node']}: {ch['quantity'].split(' ')[0]}"
            + (f", {ch['relative_change']:.1e}" if ch.get("relative_change") is not None else
               f" {ch.get('from')}→{ch.get('to')}"))
        lsb = f"{c.max_lsb}" + (" (refused)" if c.refused else "")
        lines.append(f"| {c.model} | {c.format} | {c.significant_bits} | {lsb} | "
                     f"{100 * c.frac_differ:.3f}% | {c.metric_delta:+.3f} ({c.metric}) | {where} | "
                     f"{_loss(c.precision_loss)} |")
    return "\n".join(lines) + "\n"


def _loss(p: dict | None) -> str:
    if p is None:
        return "—"
    sub = ", subnormal" if p["subnormal"] else ""
    return (f"{p['where'].removeprefix('node ')}: {p['quantity']} "
            f"({p['relative_error']:.1e} = {p['units']:.1f} ulp{sub})")


def _short(msg: str) -> str:
    return msg.removeprefix("F2T: ").split("; ")[0].replace("|", "/")


def plot(cells: list[Cell], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(c.model for c in cells))
    bits = sorted({c.significant_bits for c in cells}, reverse=True)
    formats = list(dict.fromkeys(c.format for c in cells))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for fmt in formats:
            ys = []
            for b in bits:
                c = next(c for c in cells if (c.model, c.format, c.significant_bits) ==
                         (model, fmt, b))
                ys.append(np.nan if c.error else 100 * c.frac_differ)
            ax.plot(range(len(bits)), ys, marker="o", label=fmt)
        broke = [c for c in cells if c.model == model and c.error]
        ax.set_title(model + (f"\n(breaks: {', '.join(sorted({c.format for c in broke}))})"
                              if broke else ""), fontsize=9)
        ax.set_xticks(range(len(bits)), [str(b) for b in bits])
        ax.set_xlabel("significant bits")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_ylabel("activations ≠ FQ (%)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def cell_json(c: Cell) -> dict:
    d = {k: v for k, v in c.__dict__.items()}
    d["status"] = c.status
    return d


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    p.add_argument("--cache", type=Path, default=CACHE, help="trained FQ states")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(max(args.threads, 1))
    start = time.perf_counter()
    cells = []
    try:
        for name in args.models:
            task, fq = trained_fq(name, args.cache)
            cells += study_model(name, task, fq)
    except EdgeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    table = markdown(cells)
    data = {"models": args.models,
            "formats": [format_name(d) for d in FORMATS],
            "significant_bits": list(SIGNIFICANT_BITS),
            "seconds": round(time.perf_counter() - start, 1),
            "torch": torch.__version__, "cells": [cell_json(c) for c in cells]}
    write_text(args.out / "f2t_formats.json", json.dumps(data, indent=2) + "\n")
    write_text(args.out / "f2t_formats.md", table)
    plot(cells, args.out / "f2t_formats.png")
    print(table)
    print(f"written to {args.out}/f2t_formats.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
