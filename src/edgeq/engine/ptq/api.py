"""The PTQ entry points: :func:`ptq` on an IR graph, :func:`quantise_file` on files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.engine.ir import Graph
from edgeq.engine.ptq.calibration import Calibration, batches, calibrate, check_inputs, load_npz
from edgeq.engine.ptq.config import PTQConfig, check_method
from edgeq.engine.ptq.emulate import Emulator
from edgeq.engine.ptq.fixedpoint import check_bits
from edgeq.engine.ptq.lower import lower
from edgeq.engine.ptq.plan import Plan, fold_constant_identities, make_plan
from edgeq.engine.ptq.resolve import requested, resolve
from edgeq.errors import ConfigError, ModelFileError

EVAL_KEYS = ("labels", "targets")


@dataclass
class PTQResult:
    graph: Graph  # the integer IR
    config: PTQConfig  # resolved: every parameter filled in
    l2: dict[str, dict[str, float]]  # layer -> variable -> layer L2 (FP inputs)
    plan: Plan
    float_graph: Graph
    calibration: Calibration

    @property
    def emulator(self) -> Emulator:
        return Emulator(self.float_graph, self.plan, self.config)


def ptq(graph: Graph, arrays: dict, method: str = "dynamic", bits: int = 8,
        config: PTQConfig | None = None, per_channel: bool = False,
        keep_float: tuple[str, ...] = (), source: str = "calibration",
        progress: bool = False, cal: Calibration | None = None) -> PTQResult:
    """Calibrate ``graph`` (a float IR) on ``arrays`` and quantise it."""
    from edgeq.engine.ptq.fastconv import blas_limited

    with blas_limited():
        return _ptq(graph, arrays, method, bits, config, per_channel, keep_float, source,
                    progress, cal)


def _ptq(graph, arrays, method, bits, config, per_channel, keep_float, source, progress, cal):
    check_method(method, "method")
    check_bits(bits, "bits")
    keep = tuple(dict.fromkeys(tuple(keep_float) + (config.keep_float if config else ())))
    graph = fold_constant_identities(graph)
    plan = make_plan(graph, keep)
    if cal is None:
        n = check_inputs(source, arrays, graph, EVAL_KEYS)
        cal = calibrate(graph, arrays, n, progress=progress)
    wanted = requested(plan, graph, method, bits, per_channel, config)
    wanted = PTQConfig(wanted.inputs, wanted.layers, keep)
    resolved, l2 = resolve(plan, graph, cal, wanted)
    return PTQResult(lower(graph, plan, resolved), resolved, l2, plan, graph, cal)


def _accuracy(outputs: np.ndarray, arrays: dict) -> tuple[str, float]:
    if "labels" in arrays:
        labels = np.asarray(arrays["labels"]).reshape(-1)
        return "accuracy %", float(np.mean(np.argmax(outputs, axis=1) == labels) * 100)
    t = np.asarray(arrays["targets"], np.float64).reshape(len(outputs), -1)
    d = outputs.reshape(len(outputs), -1) - t
    return "mean L2 error", float(np.mean(np.sqrt(np.sum(d * d, axis=1))))


def evaluate(run, graph: Graph, arrays: dict, source: str, batch: int = 256) -> tuple[str, float]:
    """The task metric of ``run(feeds) -> {output: array}`` on an eval ``.npz``: accuracy
    (argmax of the first output) with ``labels``, mean L2 error with ``targets``."""
    if not any(k in arrays for k in EVAL_KEYS):
        raise ConfigError(f"{source}: an eval file needs 'labels' or 'targets' beside the inputs")
    n = check_inputs(source, arrays, graph, EVAL_KEYS)
    outs = []
    for feeds in batches(arrays, graph.inputs, n, batch):
        outs.append(np.asarray(run(feeds)[graph.outputs[0]], dtype=np.float64))
    return _accuracy(np.concatenate(outs), arrays)


def dequantised_runner(model):
    """``run(feeds)`` of an integer Model, outputs multiplied back by their ε."""
    def run(feeds):
        out = model.run(feeds)
        res = {}
        for name, a in out.items():
            q = model.graph.values[name].quant
            res[name] = a if q is None or q.eps is None else a * q.eps_array(np.ndim(a))
        return res

    return run


def quantise_file(model_path: str | os.PathLike, calib: str | os.PathLike, out: str | os.PathLike,
                  method: str = "dynamic", bits: int = 8, config: str | None = None,
                  per_channel: bool = False, keep_float: tuple[str, ...] = (),
                  eval_path: str | None = None, progress: bool = True) -> dict:
    """``edgeq ptq``: float ONNX + calibration .npz -> integer ONNX (and its config JSON
    beside it, ``OUT.json``). Returns a summary dict. Nothing is written on error."""
    from edgeq.engine import load
    from edgeq.engine.onnx.exporter import export_onnx, to_onnx

    out = Path(out)
    if not out.parent.is_dir():
        raise ModelFileError(f"{out}: the directory {out.parent} does not exist")
    check_method(method, "--method")
    check_bits(bits, "--bits")
    user = PTQConfig.load(config) if config else None
    model = load(model_path)
    if any(v.quant is not None for v in model.graph.values.values()):
        raise ConfigError(f"{model_path}: already an integer model; PTQ takes a float model")
    arrays = load_npz(calib, model.graph)
    eval_arrays = load_npz(eval_path, model.graph, "eval") if eval_path else None
    if eval_arrays is not None:  # check before the work, not after it
        check_inputs(eval_path, eval_arrays, model.graph, EVAL_KEYS)
        if not any(k in eval_arrays for k in EVAL_KEYS):
            raise ConfigError(f"{eval_path}: an eval file needs 'labels' or 'targets'")
    result = ptq(model.graph, arrays, method, bits, user, per_channel, keep_float,
                 str(calib), progress)
    onnx_model = to_onnx(result.graph)  # fails here, before anything is written
    from edgeq.engine.analysis import layer_table, totals

    summary = {"model": str(model_path), "out": str(out), "method": method, "bits": bits,
               "layers": len(result.plan.layers), "l2": result.l2,
               "config": result.config.to_json(),
               "bytes": {"float": totals(layer_table(model.graph)).param_bytes,
                         "quantised": totals(layer_table(result.graph)).param_bytes}}
    if eval_arrays is not None:
        summary["eval"] = _eval_all(result, eval_arrays, str(eval_path), onnx_model)
    export_onnx(result.graph, out)
    result.config.save(out.with_suffix(".json"))
    return summary


def _eval_all(result: PTQResult, arrays: dict, source: str, onnx_model) -> dict:
    from edgeq.engine.backends.reference.executor import run_graph
    from edgeq.engine.model import Model

    fg = result.float_graph
    metric, fp_v = evaluate(lambda f: run_graph(fg, f), fg, arrays, source)
    _, emu = evaluate(result.emulator.run, fg, arrays, source)
    _, tq = evaluate(dequantised_runner(Model(result.graph)), fg, arrays, source)
    return {"metric": metric, "float": fp_v, "emulated": emu, "integer": tq}
