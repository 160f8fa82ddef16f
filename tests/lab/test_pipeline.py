"""The end-to-end pipeline, `edgeq demo`, `edgeq quantize` and `edgeq f2t-report`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgeq.cli import main
from edgeq.engine import load
from edgeq.lab import pipeline
from edgeq.lab.config import PipelineConfig, TrainingConfig

SUMMARY_KEYS = ("fp_accuracy", "fq_accuracy", "tq_accuracy", "engine_accuracy", "bit_exact",
                "fp_weight_bytes", "int_weight_bytes")


def quick(tmp_path, **kw):
    return PipelineConfig(training=TrainingConfig(fp_epochs=3, qat_epochs=1),
                          output_dir=str(tmp_path / "run"), **kw)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipe")
    summary = pipeline.run_pipeline(quick(tmp), progress=False)
    return tmp / "run", summary


def test_pipeline_writes_every_artefact_and_is_bit_exact(finished_run):
    run, summary = finished_run
    for name in ("summary.json", "table.txt", "config.json", "fidelity.txt", "model_fp.onnx",
                 "model_fq.onnx", "model_tq.onnx", "model_tq_dory.onnx", pipeline.FQ_STATE):
        assert (run / name).is_file(), name
    on_disk = json.loads((run / "summary.json").read_text())
    assert all(k in on_disk for k in SUMMARY_KEYS)
    assert on_disk["bit_exact"] is True
    assert on_disk["engine_accuracy"] == on_disk["tq_accuracy"]
    assert on_disk["fp_accuracy"] > 85 and on_disk["tq_accuracy"] > 85
    # 8-bit packed weights (+ 32-bit biases and requant constants) vs FP32 parameters
    assert on_disk["int_weight_bytes"] < on_disk["fp_weight_bytes"] / 2
    assert not list(run.parent.glob(".run.*")), "temporary directory left behind"


def test_exported_float_models_reproduce_pytorch_accuracy(finished_run):
    """The FP and FQ ONNX files, run by the engine, give the accuracies PyTorch measured."""
    run, summary = finished_run
    from edgeq.data import load_digits_splits

    splits = load_digits_splits(0)
    x, y = splits.x_test.numpy(), splits.y_test.numpy()
    for name, key, tol in (("model_fp.onnx", "fp_accuracy", 1e-9), ("model_fq.onnx",
                                                                    "fq_accuracy", 0.6)):
        m = load(run / name)
        (logits,) = m.run({"input": x}).values()
        acc = float(np.mean(logits.argmax(1) == y) * 100)
        # FQ in float32 ONNX: a value on a rounding tie may fall the other way (<= 2 images)
        assert abs(acc - summary[key]) <= tol, (name, acc, summary[key])


def test_dory_file_is_int32_requant_and_bit_exact(finished_run):
    """The DORY file holds a TQ network whose requantisation fits DORY's int32 arithmetic."""
    run, summary = finished_run
    assert summary["dory_bit_exact"] is True
    assert abs(summary["dory_accuracy"] - summary["tq_accuracy"]) <= 2.0
    from edgeq.data import load_digits_splits
    from edgeq.engine.backends.reference.executor import run_graph

    graph = load(run / "model_tq_dory.onnx").graph
    x = load_digits_splits(0).x_test.numpy()
    x_int = np.clip(np.floor(x * 255 + 0.5), 0, 255).astype(np.uint8)
    seen = {}
    run_graph(graph, {graph.inputs[0]: x_int}, observe=seen.__setitem__)
    requants = [n for n in graph.nodes if n.op == "RequantShift"]
    assert requants
    for node in requants:
        acc = seen[node.inputs[0]].astype(np.int64)
        mul, add = (graph.values[i].data.astype(np.int64) for i in node.inputs[1:])
        assert int(np.abs(acc * mul + add).max()) < 2**31, node.name


def test_existing_results_need_force(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    code = main(["quantize", str(_config_file(tmp_path)), "--out", str(out), "--quiet"])
    assert code == 1
    assert (out / "summary.json").read_text() == "{}"  # untouched


def test_failure_leaves_nothing_half_written(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure in the middle of a run")

    monkeypatch.setattr(pipeline, "run_seed", boom)
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError):
        pipeline.run_pipeline(quick(tmp_path), progress=False)
    assert not (tmp_path / "run").exists()
    assert list(tmp_path.iterdir()) == []
    assert torch.get_num_threads() == 2  # the pipeline's single-thread setting is undone


def test_f2t_report_on_a_finished_run(finished_run, capsys, tmp_path):
    run, summary = finished_run
    assert main(["f2t-report", str(run), "--json", str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out
    assert "relu1" in out and "agreement" in out
    report = json.loads((tmp_path / "f.json").read_text())
    saved = summary["seeds"][0]["fidelity"]
    assert report["max_lsb"] == saved["max_lsb"] and report["agreement"] == saved["agreement"]


def test_f2t_report_refuses_a_non_run(tmp_path, capsys):
    assert main(["f2t-report", str(tmp_path)]) == 1
    assert "not a run directory" in capsys.readouterr().err


def test_quantize_bad_config_names_the_key(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"training": {"qat_epochs": "many"}}))
    assert main(["quantize", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "training.qat_epochs" in err and "bad.json" in err


def _config_file(tmp_path):
    cfg = quick(tmp_path).to_json()
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    return path


def test_demo_command_end_to_end(tmp_path):
    """The README's main job, as a user runs it."""
    env = dict(os.environ)
    done = subprocess.run([sys.executable, "-m", "edgeq.cli", "demo", "--out",
                           str(tmp_path / "demo"), "--quiet"], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert "bit for bit" in done.stdout and "yes" in done.stdout
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["bit_exact"] is True
    assert summary["tq_accuracy"] > 90 and summary["fp_accuracy"] > 90
    assert abs(summary["tq_accuracy"] - summary["fq_accuracy"]) <= 1.0
