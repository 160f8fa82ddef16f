"""``edgeq explore`` on files: every phase, then the report directory, written at once."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgeq.engine.ptq.calibration import calibrate, check_inputs, load_npz
from edgeq.engine.ptq.explore import eval_set, explore
from edgeq.engine.ptq.report import exploration_json, exploration_markdown
from edgeq.errors import ConfigError, ModelFileError


def explore_files(model_path, calib, eval_path, out, bits, methods, max_drop, max_l2,
                  keep_float=(), progress=True) -> str:
    """Writes ``out/``: analysis.json (phase 1), exploration.json, report.md, best.json
    (the chosen PTQConfig), best.onnx (its integer IR) and PNG plots. ``out`` must not
    exist (or be empty); it appears complete or not at all. Returns the markdown."""
    from edgeq.engine import load
    from edgeq.engine.ptq.api import dequantised_runner, ptq
    from edgeq.engine.ptq.plan import fold_constant_identities, make_plan

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out: {out} exists and is not an empty directory")
    if not out.parent.is_dir():
        raise ModelFileError(f"{out}: the directory {out.parent} does not exist")
    graph = fold_constant_identities(load(model_path).graph)
    plan = make_plan(graph, tuple(keep_float))
    arrays = load_npz(calib, graph)
    n = check_inputs(calib, arrays, graph, ("labels", "targets"))
    ev_arrays = load_npz(eval_path, graph, "eval") if eval_path else arrays
    ev = eval_set(graph, ev_arrays, str(eval_path or calib))
    cal = calibrate(graph, arrays, n, progress=progress)
    res = explore(graph, plan, cal, ev, bits, methods, max_drop, max_l2, str(model_path),
                  progress)
    best = ptq(graph, arrays, config=res["best_config"], keep_float=tuple(keep_float), cal=cal)
    final = _final(best, ev, res, dequantised_runner)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write(tmp, res, best, final, graph, plan, cal)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return exploration_markdown(res, final) + f"\nwrote {out}/"


def _final(best, ev, res, runner) -> dict:
    from edgeq.engine.model import Model
    from edgeq.engine.ptq.api import evaluate

    x = {k: ev.arrays[k][:64] for k in best.float_graph.inputs}
    ints = runner(Model(best.graph))(x)
    emu = best.emulator.run(x)
    name = best.float_graph.outputs[0]
    exact = bool(np.array_equal(np.asarray(ints[name], np.float64), emu[name]))
    metric = None
    if ev.metric:
        metric = evaluate(runner(Model(best.graph)), best.float_graph, ev.arrays, "eval")[1]
    return {"path": "best.onnx", "metric": metric, "exact": exact}


def _write(tmp: Path, res, best, final, graph, plan, cal) -> None:
    from edgeq.engine.onnx.exporter import export_onnx
    from edgeq.engine.ptq.plots import heatmap, histogram

    res["analysis"].save(tmp / "analysis.json")
    data = {**exploration_json(res), "final": final}
    (tmp / "exploration.json").write_text(json.dumps(data, indent=1) + "\n")
    (tmp / "report.md").write_text(exploration_markdown(res, final))
    best.config.save(tmp / "best.json")
    export_onnx(best.graph, tmp / "best.onnx")
    heatmap(res["analysis"], tmp / "sensitivity.png")
    for layer in plan.layers:
        lq = best.config.layers[layer.name]
        if lq.weights is not None:
            w = graph.values[layer.weight].data
            title = f"{layer.name} weights: {lq.weights.method} {lq.weights.bits} bit"
            path = tmp / f"hist_{_file(layer.name)}_w.png"
            histogram(w, lq.weights, _marks(lq.weights), title, path)
        a = cal.samples.get(layer.output)
        if a is not None:
            histogram(a, lq.activations, _marks(lq.activations), f"{layer.name} activations: "
                      f"{lq.activations.bits} bit fl={lq.activations.fl}",
                      tmp / f"hist_{_file(layer.name)}_a.png")


def _file(name: str) -> str:
    """A node name as a file name part ("/conv1/Conv" -> "conv1_Conv")."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_") or "node"


def _marks(vq) -> np.ndarray:
    """Codebook entries, or the ends of the fixed-point range (the chosen [IL.FL])."""
    from edgeq.engine.ptq.fixedpoint import int_range

    if vq.codebook is not None:
        return np.asarray(vq.codebook) * 2.0 ** -vq.fl
    fl = min(vq.channel_fl) if vq.channel_fl is not None else vq.fl
    rng = int_range(vq.bits, vq.signed if vq.signed is not None else True)
    return np.array([rng.lo, rng.hi]) * 2.0 ** -fl
