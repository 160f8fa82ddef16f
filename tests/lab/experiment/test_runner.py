"""`edgeq experiment`: runs, register, resume, failures, parallel workers."""

from __future__ import annotations

import csv
import inspect
import json
import shutil

import pytest

from edgeq.cli import main
from edgeq.lab.pipeline import run_seed

TINY = "tests.lab.experiment.tiny:TinyDigits"


def _design(tmp_path, **over):
    data = {"name": "runner",
            "base": {"task": {"name": TINY}, "training": {"fp_epochs": 1, "qat_epochs": 1}},
            "factors": {"bits": {"4": {"policy": {"uniform": {"bits": 4}}},
                                 "8": {"policy": {"uniform": {"bits": 8}}}}},
            "seeds": [0, 1], "cv": {"folds": 2, "seed": 0}}
    data.update(over)
    path = tmp_path / "design.json"
    path.write_text(json.dumps(data))
    return path


def _register(out):
    with open(out / "runs.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    path = _design(tmp)
    out = tmp / "exp"
    assert main(["experiment", str(path), "--out", str(out), "--quiet"]) == 0
    return path, out


def test_every_run_has_its_directory_config_status_and_result(experiment):
    _, out = experiment
    rows = _register(out)
    assert len(rows) == 2 * 2 * 2
    assert {r["status"] for r in rows} == {"done"}
    for row in rows:
        run = out / "runs" / row["run"]
        config = json.loads((run / "config.json").read_text())
        assert config["policy"]["uniform"]["bits"] == int(row["bits"])
        assert config["seeds"] == [int(row["seed"])]
        assert json.loads((run / "run.json").read_text())["status"] == "done"
        result = json.loads((run / "result.json").read_text())
        assert result["fold"] == int(row["fold"])
        assert float(row["tq_accuracy"]) == result["metrics"]["tq_accuracy"]
        assert (run / "model_tq.onnx").is_file()
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_report_numbers_come_from_the_register(experiment, capsys):
    _, out = experiment
    assert main(["experiment-report", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    rows = _register(out)
    for cell in report["cells"]:
        vals = [float(r["tq_accuracy"]) for r in rows if r["bits"] == cell["levels"]["bits"]]
        assert cell["runs"] == 4
        assert cell["metrics"]["tq_accuracy"]["mean"] == pytest.approx(sum(vals) / 4)
        fold_means = {fm["seed"]: fm["tq_accuracy"] for fm in cell["fold_means"]}
        for seed in (0, 1):
            v = [float(r["tq_accuracy"]) for r in rows
                 if r["bits"] == cell["levels"]["bits"] and r["seed"] == str(seed)]
            assert fold_means[seed] == pytest.approx(sum(v) / 2)
    (comp,) = [c for c in report["comparisons"] if c["metric"] == "tq_accuracy"]
    assert (comp["factor"], comp["a"], comp["b"], comp["n"]) == ("bits", "4", "8", 4)
    assert ("| bits | runs | fp_accuracy | fq_accuracy | tq_accuracy | deployed_accuracy | "
            "cv_fq_accuracy |") in printed
    # the C program on the host is bit-exact with TQ, so every run scores the same
    assert all(r["deployed_accuracy"] == r["tq_accuracy"] for r in rows)
    assert (out / "report.md").read_text() in printed


def test_cv_score_is_the_fq_network_on_the_held_out_fold(experiment):
    """cv_fq_accuracy, recomputed from the exported FQ ONNX file run by the engine on the
    held-out fold drawn here from the design's cv seed."""
    import numpy as np

    from edgeq.engine import load
    from edgeq.lab.config import PipelineConfig
    from edgeq.lab.tasks import make_task
    from edgeq.lab.tasks.base import fold_indices

    _, out = experiment
    run = out / "runs" / "bits-8_seed1_fold1"
    result = json.loads((run / "result.json").read_text())
    task = make_task(PipelineConfig.from_json(json.loads((run / "config.json").read_text())))
    train = task.split("train")
    held = fold_indices(len(train), 2, seed=0)[1]
    x = task.to_input(train.raw[held]).numpy()
    (logits,) = load(run / "model_fq.onnx").run({"input": x}).values()
    accuracy = 100.0 * float(np.mean(np.argmax(logits, axis=1) == train.targets[held].numpy()))
    assert result["metrics"]["cv_fq_accuracy"] == pytest.approx(accuracy, abs=100 / len(held))


def test_resume_reruns_only_unfinished_runs_and_refuses_without_flag(experiment, capsys):
    path, out = experiment
    work = out.parent / "resume"
    shutil.copytree(out, work)
    assert main(["experiment", str(path), "--out", str(work)]) == 1
    assert "--resume" in capsys.readouterr().err
    victim = work / "runs" / "bits-8_seed1_fold0"
    (victim / "result.json").unlink()  # as if killed before it finished
    before = {p: p.stat().st_mtime_ns for p in (work / "runs").glob("*/result.json")}
    assert main(["experiment", str(path), "--out", str(work), "--resume"]) == 0
    assert "resume: 7 of 8 runs already finished" in capsys.readouterr().out
    for p, mtime in before.items():
        assert p.stat().st_mtime_ns == mtime, f"{p} was rewritten"
    again = json.loads((victim / "result.json").read_text())
    first = json.loads((out / "runs" / victim.name / "result.json").read_text())
    assert again["metrics"] == first["metrics"]  # deterministic from the seed and fold
    assert {r["status"] for r in _register(work)} == {"done"}


def test_resume_with_a_corrupt_checkpoint_fails_that_run_only(experiment, capsys):
    if "resume" not in inspect.signature(run_seed).parameters:
        pytest.skip("run_seed has no checkpoints yet: unfinished runs restart from scratch")
    path, out = experiment
    work = out.parent / "corrupt"
    shutil.copytree(out, work)
    victim = work / "runs" / "bits-4_seed0_fold1"
    (victim / "result.json").unlink()
    (victim / "checkpoint.pt").write_bytes(b"not a checkpoint")
    before = {p: p.read_bytes() for p in (work / "runs").glob("*/result.json")}
    assert main(["experiment", str(path), "--out", str(work), "--resume", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "bits-4_seed0_fold1" in err and "checkpoint.pt" in err
    rows = {r["run"]: r for r in _register(work)}
    assert rows[victim.name]["status"] == "failed" and "checkpoint.pt" in rows[victim.name][
        "error"]
    assert sum(r["status"] == "done" for r in rows.values()) == 7
    for p, data in before.items():
        assert p.read_bytes() == data


def test_a_failing_run_is_recorded_and_parallel_workers_finish_the_rest(tmp_path, capsys):
    path = _design(tmp_path, seeds=[0], factors={"task": {
        "ok": {"task": {"name": TINY}},
        "broken": {"task": {"name": "tests.lab.experiment.tiny:BrokenDigits"}}}})
    data = json.loads(path.read_text())
    del data["cv"]
    path.write_text(json.dumps(data))
    out = tmp_path / "exp"
    assert main(["experiment", str(path), "--out", str(out), "--workers", "2",
                 "--quiet", "--tensorboard"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "1 of 2 runs failed" in err and "task-broken_seed0" in err
    rows = {r["run"]: r for r in _register(out)}
    assert rows["task-ok_seed0"]["status"] == "done"
    assert float(rows["task-ok_seed0"]["tq_accuracy"]) > 0
    assert rows["task-broken_seed0"]["status"] == "failed"
    assert "broken on purpose" in rows["task-broken_seed0"]["error"]
    assert (out / "runs" / "task-ok_seed0" / "result.json").is_file()
    assert not (out / "runs" / "task-broken_seed0" / "result.json").exists()
    assert (out / "report.html").is_file()  # the report covers what finished
    events = list((out / "runs" / "task-ok_seed0" / "tensorboard").rglob("events.out.*"))
    assert events, "no TensorBoard event files"


def test_sigkilled_experiment_resumes_to_the_uninterrupted_results(tmp_path):
    """`edgeq experiment` killed (SIGKILL) after its first run; --resume keeps that run's
    files and finishes the rest with the metrics of a run never interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import PROJECT_ROOT

    path = _design(tmp_path, seeds=[0, 1], factors={"bits": {"4": {
        "policy": {"uniform": {"bits": 4}}}}}, base={"task": {"name": TINY}, "training": {
            "fp_epochs": 4, "qat_epochs": 2}})
    data = json.loads(path.read_text())
    del data["cv"]
    path.write_text(json.dumps(data))
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(PROJECT_ROOT / "src"), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "edgeq.cli", "experiment", str(path),
                             "--out", str(killed), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "runs" / "bits-4_seed0" / "result.json"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), "the first run did not finish in time"
    if (killed / "runs" / "bits-4_seed1" / "result.json").exists():
        pytest.skip("the second run finished before the kill (machine too fast)")
    kept = first.read_bytes()
    assert main(["experiment", str(path), "--out", str(killed), "--resume", "--quiet"]) == 0
    assert first.read_bytes() == kept
    fresh = tmp_path / "fresh"
    assert main(["experiment", str(path), "--out", str(fresh), "--quiet"]) == 0
    for run in ("bits-4_seed0", "bits-4_seed1"):
        a = json.loads((killed / "runs" / run / "result.json").read_text())
        b = json.loads((fresh / "runs" / run / "result.json").read_text())
        assert a["metrics"] == b["metrics"], run
    assert {r["status"] for r in _register(killed)} == {"done"}


@pytest.mark.parametrize("setup, argv_tail, words", [
    (lambda out: (out.mkdir(), (out / "design.json").write_text("{oops")), ["--resume"],
     ["design.json: not valid JSON"]),
    (lambda out: (out.mkdir(), (out / "design.json").write_text('{"name": "other"}')),
     ["--resume"], ["design.json: the design differs"]),
    (lambda out: (out.mkdir(), (out / "x.txt").write_text("x")), [],
     ["is not empty and holds no experiment"]),
    (lambda out: out.write_text("a file"), [], ["is not a directory"]),
    (lambda out: None, ["--workers", "0"], ["--workers must be a positive integer"]),
])
def test_bad_experiment_directories_and_flags(tmp_path, capsys, setup, argv_tail, words):
    path = _design(tmp_path)
    out = tmp_path / "exp"
    setup(out)
    assert main(["experiment", str(path), "--out", str(out), *argv_tail]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    for word in words:
        assert word in err, (word, err)
    assert not (out / "runs.csv").exists()


def test_experiment_report_of_a_plain_directory(tmp_path, capsys):
    assert main(["experiment-report", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "not an experiment directory (no design.json)" in err and "\n" not in err
