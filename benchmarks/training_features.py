"""Cost of the optional training features: a checkpoint per epoch, TensorBoard logging.

Trains the ``edgeq demo`` network (digits CNN, 8-bit PACT) for a few epochs of its FP
phase and of its QAT phase with every feature off, with ``checkpoint.pt`` written after
every epoch, and with TensorBoard event files, interleaved (off, checkpoint, tensorboard,
off, ...) so that load from other processes hits all alike; reports the median seconds
per epoch (wall and CPU; CPU seconds are less disturbed by other processes) and the
ratio to "off", the checkpoint's size and the median time of one save.
The digits epoch is the shortest of any task, so these ratios bound the others.

    python benchmarks/training_features.py [--repeats 7] [--epochs 3] [--out FILE.json]
    python benchmarks/training_features.py --quick     # smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from edgeq.lab import pipeline
from edgeq.lab.checkpoint import Checkpointer
from edgeq.lab.config import PipelineConfig
from edgeq.lab.tasks import make_task
from edgeq.lab.tensorboard import Board
from edgeq.lab.training import TrainHooks, predict, train

FEATURES = ("off", "checkpoint", "tensorboard")
OUT = Path(__file__).resolve().parent / "results" / "training_features.json"


def _hooks(feature: str, phase: str, workdir: Path) -> TrainHooks:
    if feature == "checkpoint":
        return TrainHooks(phase=phase, checkpointer=Checkpointer(workdir, "bench"))
    if feature == "tensorboard":
        return TrainHooks(phase=phase, board=Board(workdir / "tb"))
    return TrainHooks(phase=phase)


def _seconds_per_epoch(task, config, loader, feature: str, phase: str,
                       epochs: int) -> tuple[float, float]:
    """(wall, CPU) seconds per epoch of one phase; QAT starts from a freshly built FQ net."""
    from edgeq.train.controller import QATController, observing
    from edgeq.train.f2f import f2f
    from edgeq.train.spec import ScheduleSpec

    torch.manual_seed(0)
    model, controller = task.build_model(), None
    if phase == "qat":
        model, _ = f2f(model, config.build_policy(), task.example_input(),
                       input_spec=pipeline.input_spec(config))
        with observing(model):
            predict(model, task.inputs("train", pipeline.CALIBRATION_SAMPLES))
        controller = QATController(model, ScheduleSpec(start_epoch=0))
    with tempfile.TemporaryDirectory() as tmp:
        hooks = _hooks(feature, phase, Path(tmp))
        start, cpu = time.perf_counter(), time.process_time()
        train(model, loader, epochs, 1e-3, "", controller=controller, progress=False,
              loss_fn=task.loss, hooks=hooks)
        seconds = (time.perf_counter() - start) / epochs, (time.process_time() - cpu) / epochs
        if hooks.board is not None:
            hooks.board.close()
    return seconds


def _save_cost(task, repeats: int) -> tuple[float, int]:
    """Median seconds of one save of an FP checkpoint (model + Adam state), its bytes."""
    model = task.build_model()
    opt = torch.optim.Adam(model.parameters())
    model(task.example_input()).sum().backward()
    opt.step()
    with tempfile.TemporaryDirectory() as tmp:
        ck = Checkpointer(Path(tmp), "bench")
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            ck.save({"phase": "fp", "epoch": 0, "model": model.state_dict(),
                     "optimizer": opt.state_dict()})
            times.append(time.perf_counter() - start)
        return statistics.median(times), ck.path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 repeat of 1 epoch")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    repeats, epochs = (1, 1) if args.quick else (args.repeats, args.epochs)
    torch.set_num_threads(1)  # as the pipeline trains digits
    config = PipelineConfig()
    task = make_task(config)
    task.load(progress=False)
    loader = task.batches("train", config.task.batch_size, 0)
    rows = []
    for phase in ("fp", "qat"):
        times: dict[str, list[tuple[float, float]]] = {f: [] for f in FEATURES}
        for _ in range(repeats):
            for feature in FEATURES:
                times[feature].append(
                    _seconds_per_epoch(task, config, loader, feature, phase, epochs))
        wall = {f: statistics.median(t[0] for t in times[f]) for f in FEATURES}
        cpu = {f: statistics.median(t[1] for t in times[f]) for f in FEATURES}
        for feature in FEATURES:
            rows.append({"phase": phase, "feature": feature, "epoch_seconds": wall[feature],
                         "ratio_to_off": wall[feature] / wall["off"],
                         "epoch_cpu_seconds": cpu[feature],
                         "cpu_ratio_to_off": cpu[feature] / cpu["off"]})
    save_seconds, save_bytes = _save_cost(task, max(repeats, 5))
    print(f"{'phase':6s}{'feature':>14s}{'s/epoch':>10s}{'ratio':>8s}{'CPU s':>8s}{'ratio':>8s}")
    for r in rows:
        print(f"{r['phase']:6s}{r['feature']:>14s}{r['epoch_seconds']:>10.3f}"
              f"{r['ratio_to_off']:>8.3f}{r['epoch_cpu_seconds']:>8.3f}"
              f"{r['cpu_ratio_to_off']:>8.3f}")
    print(f"one FP checkpoint save: {save_seconds * 1e3:.1f} ms, {save_bytes} bytes")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"repeats": repeats, "epochs": epochs, "rows": rows,
                                    "save_seconds": save_seconds,
                                    "checkpoint_bytes": save_bytes}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
