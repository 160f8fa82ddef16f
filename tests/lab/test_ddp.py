"""Data-parallel training with torchrun (2 processes, gloo on CPU), as the README shows."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from edgeq.lab import pipeline
from edgeq.lab.checkpoint import CHECKPOINT
from edgeq.lab.config import PipelineConfig
from edgeq.lab.ddp import DDPContext, ShardedBatches
from edgeq.lab.tasks import make_task

README = Path(__file__).resolve().parents[2] / "README.md"
CONFIG = {"training": {"fp_epochs": 3, "qat_epochs": 2},
          "policy": {"uniform": {"bits": 8, "algorithm": "pact"}}, "seeds": [0]}
# The DDP run differs from the single process only in which samples share a step (the
# DistributedSampler's order, BatchNorm statistics over half batches): the same kind of
# change as another shuffle seed. Over shuffle seeds 0-4 one process spreads over 1.9
# points of test accuracy (FP 95.0-96.9 %, FQ 97.2-97.5 %, 360 test digits), so 3 points
# (11 digits) bounds a correct DDP run, while a broken one (unsynchronised ranks, wrong
# gradient scale, a rank training on nothing) falls far outside it or fails the
# identical-parameter check.
TOLERANCE = 3.0


def _readme_command() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "torchrun" in b]
    (line,) = [c.split("#")[0].strip() for c in block.splitlines() if "torchrun" in c]
    return line


# one thread per rank (2 ranks on 2 cores); gloo on the loopback interface, whatever the
# host name resolves to on the CI machine
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}


def _argv(cfg: Path, out: Path) -> list[str]:
    """The README command, plus the test's flags: both ranks dump their trained state;
    checkpoint and TensorBoard files (rank 0's only) are written, a checkpoint resumed."""
    command = _readme_command().replace("CONFIG.json", str(cfg)).replace("DIR", str(out))
    return shlex.split(command) + ["--dump-params", "--checkpoint", "--tensorboard",
                                   "--resume"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    if shutil.which("torchrun") is None:
        reason = "torchrun (installed with torch) is not on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("ddp")
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps(CONFIG))
    out = tmp / "ddp"
    proc = subprocess.run(_argv(cfg, out), capture_output=True, text=True, timeout=600,
                          env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    torch.set_num_threads(1)
    single = tmp / "single"
    single.mkdir()
    config = PipelineConfig.from_json(CONFIG)
    result = pipeline.run_seed(config, 0, single, progress=False)
    return out, result


def test_ddp_metrics_match_one_process_within_tolerance(ddp_run):
    out, single = ddp_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ddp_world_size"] == 2
    assert summary["bit_exact"] and summary["dory_bit_exact"]
    for key in ("fp_accuracy", "fq_accuracy", "tq_accuracy"):
        assert abs(summary[key] - single.metrics[key]) <= TOLERANCE, (key, summary[key],
                                                                     single.metrics[key])
        assert summary[key] > 90.0, key


def test_ranks_end_with_identical_parameters_and_buffers(ddp_run):
    out, _ = ddp_run
    a = torch.load(out / "params_rank0.pt", weights_only=True)
    b = torch.load(out / "params_rank1.pt", weights_only=True)
    assert a.keys() == b.keys() and any(k.endswith("running_mean") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # and they are the weights rank 0 exported
    saved = torch.load(out / pipeline.FQ_STATE, weights_only=True)
    assert all(torch.equal(saved[k], a[k]) for k in a)


def test_only_rank_zero_writes_checkpoints_and_events(ddp_run):
    out, _ = ddp_run
    assert [p.name for p in out.glob("*checkpoint*")] == [CHECKPOINT]
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    assert ckpt["phase"] == "qat" and ckpt["epoch"] == CONFIG["training"]["qat_epochs"] - 1
    for writer in ("step", "epoch"):
        assert len(list((out / "tensorboard" / writer).iterdir())) == 1


def test_sharded_batches_split_every_epoch_between_ranks():
    """Each rank takes half a batch per step; together they see the whole split once per
    epoch, in an order that changes every epoch and is restored from the state."""
    task = make_task(PipelineConfig.from_json(CONFIG))
    n = len(task.split("train"))
    ranks = [DDPContext(r, 2).batches(task, "train", 64, seed=3) for r in range(2)]
    assert all(isinstance(s, ShardedBatches) and s.batch_size == 32 for s in ranks)
    per_rank = math.ceil(n / 2)  # samples per rank per epoch
    assert len(ranks[0]) == len(ranks[1]) == math.ceil(per_rank / 32)

    def epoch_labels(sharded):
        return torch.cat([y for _, y in sharded])

    seen = [epoch_labels(s) for s in ranks]
    both = torch.cat(seen)
    assert len(both) == n + n % 2  # DistributedSampler pads to an even split
    counts = torch.bincount(both, minlength=10)
    expected = torch.bincount(task.split("train").targets, minlength=10)
    assert (counts - expected).abs().sum() <= n % 2
    state = ranks[0].state_dict()
    second = epoch_labels(ranks[0])
    assert not torch.equal(second, seen[0])  # a new order in epoch 2
    ranks[0].load_state_dict(state)
    assert torch.equal(epoch_labels(ranks[0]), second)


def test_batch_size_not_divisible_by_world_is_refused():
    from edgeq.errors import ConfigError

    task = make_task(PipelineConfig.from_json(CONFIG))
    with pytest.raises(ConfigError, match="task.batch_size 63"):
        DDPContext(0, 2).batches(task, "train", 63, seed=0)


def test_ddp_run_killed_in_qat_and_resumed_is_bit_identical(ddp_run):
    """SIGKILL to torchrun and both ranks once QAT has a checkpoint; the resumed run
    (every rank loads rank 0's checkpoint) ends exactly where the uninterrupted one did."""
    out, _ = ddp_run
    broken = out.parent / "broken"
    proc = subprocess.Popen(_argv(out.parent / "config.json", broken), env=ENV,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt, seen, deadline = broken / CHECKPOINT, None, time.monotonic() + 300
    while True:
        assert time.monotonic() < deadline and proc.poll() is None, "no QAT checkpoint"
        if ckpt.exists() and ckpt.stat().st_mtime_ns != seen:
            seen = ckpt.stat().st_mtime_ns
            state = torch.load(ckpt, weights_only=False)
            if state["phase"] == "qat":
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
        time.sleep(0.01)
    assert state["epoch"] < CONFIG["training"]["qat_epochs"] - 1  # killed before the end
    again = subprocess.run(_argv(out.parent / "config.json", broken), capture_output=True,
                           text=True, timeout=600, env=ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    for rank in (0, 1):
        a = torch.load(out / f"params_rank{rank}.pt", weights_only=True)
        b = torch.load(broken / f"params_rank{rank}.pt", weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a), rank
    metrics = [{k: v for k, v in json.loads((d / "summary.json").read_text()).items()
                if k.endswith("accuracy")} for d in (out, broken)]
    assert metrics[0] == metrics[1]


def test_without_torchrun_the_module_exits_with_a_one_line_error(tmp_path, monkeypatch, capsys):
    from edgeq.lab import ddp

    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(CONFIG))
    assert ddp.main([str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "torchrun" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing written
