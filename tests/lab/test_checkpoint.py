"""Per-epoch checkpoints: a run killed with SIGKILL and resumed ends bit-identical to an
uninterrupted one; corrupt or foreign checkpoints are refused by name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgeq.errors import CheckpointError
from edgeq.lab import pipeline
from edgeq.lab.checkpoint import CHECKPOINT, Checkpointer
from edgeq.lab.config import PipelineConfig

# ANA draws noise from the global torch RNG every step, OneCycle has scheduler state, the
# freeze at QAT epoch 1 turns ε parameters off: every kind of state a resume must restore.
CONFIG = {"training": {"fp_epochs": 3, "qat_epochs": 3, "schedule": "onecycle",
                       "freeze_epoch": 1},
          "policy": {"uniform": {"bits": 4, "algorithm": "ana"}}}

DRIVER = """
import json, sys, torch
from dataclasses import asdict
from pathlib import Path
from edgeq.lab import pipeline
from edgeq.lab.config import PipelineConfig
torch.set_num_threads(1)
out = Path(sys.argv[1])
cfg = PipelineConfig.from_json(json.loads(sys.argv[2]))
r = pipeline.run_seed(cfg, 0, out, progress=False, resume=True, tensorboard=True)
(out / "result.json").write_text(json.dumps(r.metrics))
"""


def _start(out: Path) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(out), json.dumps(CONFIG)],
                            env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _kill_at(proc: subprocess.Popen, ckpt: Path, phase: str, timeout: float = 120) -> dict:
    """SIGKILL ``proc`` as soon as a checkpoint of ``phase`` is on disk; that checkpoint."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if ckpt.exists() and ckpt.stat().st_mtime_ns != seen:
            seen = ckpt.stat().st_mtime_ns
            state = torch.load(ckpt, weights_only=False)
            if state["phase"] == phase:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return state
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"no {phase} checkpoint within {timeout} s")


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    whole, broken = tmp / "whole", tmp / "broken"
    reference = _start(whole)  # uninterrupted, concurrently with the killed run
    victim = _start(broken)
    first = _kill_at(victim, broken / CHECKPOINT, "fp")
    second_proc = _start(broken)  # resumes in FP, killed again once QAT has a checkpoint
    second = _kill_at(second_proc, broken / CHECKPOINT, "qat")
    _finish(_start(broken))
    _finish(reference)
    return whole, broken, first, second


def test_killed_twice_and_resumed_run_is_bit_identical(runs):
    whole, broken, first, second = runs
    # the kills really interrupted the run: in FP, then in QAT before its last epoch
    assert first["phase"] == "fp" and first["epoch"] < 2
    assert second["phase"] == "qat" and second["epoch"] < 2
    assert json.loads((whole / "result.json").read_text()) == \
        json.loads((broken / "result.json").read_text())
    a = torch.load(whole / pipeline.FQ_STATE, weights_only=True)
    b = torch.load(broken / pipeline.FQ_STATE, weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ca = torch.load(whole / CHECKPOINT, weights_only=False)
    cb = torch.load(broken / CHECKPOINT, weights_only=False)
    assert ca["losses"] == cb["losses"]  # every QAT epoch's loss, to the last bit
    for key in ca["extra"]["fp_model"]:  # the FP weights F2F started from
        assert torch.equal(ca["extra"]["fp_model"][key], cb["extra"]["fp_model"][key]), key
    for x, y in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values(),
                    strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert (whole / "model_tq.onnx").read_bytes() == (broken / "model_tq.onnx").read_bytes()


def test_resumed_tensorboard_series_equal_uninterrupted(runs):
    """purge_step hides the re-done epochs' events: the series read back are the same."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    whole, broken, _, _ = runs

    def series(run: Path, writer: str, tag: str):
        acc = EventAccumulator(str(run / "tensorboard" / writer))
        acc.Reload()
        return [(e.step, e.value) for e in acc.Scalars(tag)]

    for writer, tag in (("step", "fp/loss"), ("step", "qat/loss"), ("epoch", "qat/loss"),
                        ("epoch", "fp/val_accuracy")):
        assert series(whole, writer, tag) == series(broken, writer, tag), (writer, tag)
    steps = [s for s, _ in series(broken, "step", "fp/loss")]
    assert steps == list(range(len(steps)))  # no step twice, none missing


def _config(tmp_path) -> PipelineConfig:
    return PipelineConfig.from_json({**CONFIG, "output_dir": str(tmp_path)})


def test_corrupt_checkpoint_is_one_line_error_naming_the_file(tmp_path):
    (tmp_path / CHECKPOINT).write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        pipeline.run_seed(_config(tmp_path), 0, tmp_path, progress=False, resume=True)
    msg = str(err.value)
    assert str(tmp_path / CHECKPOINT) in msg and "corrupt" in msg and "\n" not in msg


def test_checkpoint_of_another_run_is_refused(tmp_path):
    Checkpointer(tmp_path, "other run").save({"phase": "fp", "epoch": 0})
    with pytest.raises(CheckpointError, match="different config or seed"):
        pipeline.run_seed(_config(tmp_path), 0, tmp_path, progress=False, resume=True)


def test_save_is_atomic_and_leaves_no_temporary(tmp_path, monkeypatch):
    """A save that dies mid-write keeps the previous checkpoint intact."""
    ck = Checkpointer(tmp_path, "run")
    ck.save({"phase": "fp", "epoch": 0})

    def dying_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ck.save({"phase": "fp", "epoch": 1})
    monkeypatch.undo()
    assert ck.load()["epoch"] == 0
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]


def test_refreeze_restores_requires_grad_of_frozen_eps():
    """``frozen`` is a buffer; a frozen PACT bound's requires_grad=False is not saved."""
    from edgeq.lab.checkpoint import refreeze
    from edgeq.train.modules import QuantActivation
    from edgeq.train.spec import QuantSpec

    spec = QuantSpec.from_bits(4, algorithm="pact")
    trained, fresh = QuantActivation("relu", spec), QuantActivation("relu", spec)
    trained.quantiser.initialise(torch.tensor(0.0), torch.tensor(2.0))
    trained.freeze()
    fresh.load_state_dict(trained.state_dict())
    assert fresh.quantiser.bound.requires_grad  # what load_state_dict alone leaves
    refreeze(fresh)
    assert not fresh.quantiser.bound.requires_grad and bool(fresh.quantiser.frozen)
    assert torch.equal(fresh.quantiser.eps, trained.quantiser.eps)


def test_every_rng_and_the_batch_order_continue_after_load(tmp_path):
    """numpy, Python, torch and the batches' generator draw the same after a round trip
    through the file (loaded with weights_only: plain tensors and data)."""
    import random

    import numpy as np

    from edgeq.lab.checkpoint import rng_state, set_rng_state
    from edgeq.lab.tasks import make_task

    loader = make_task(_config(tmp_path)).batches("train", 64, seed=0)
    np.random.seed(5)
    np.random.randn()  # leaves a cached Gaussian in the numpy state
    ck = Checkpointer(tmp_path, "run")
    ck.save({"phase": "fp", "epoch": 0, "rng": rng_state(loader)})

    def draw():
        return (np.random.rand(4), np.random.randn(3), random.random(), torch.rand(3),
                next(iter(loader))[1])

    first = draw()
    set_rng_state(ck.load()["rng"], loader)
    again = draw()
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
