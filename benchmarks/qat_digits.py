"""QAT accuracy and training cost on scikit-learn's 8x8 digits.

Trains the float DigitsCNN (FP), then fine-tunes it with each QAT algorithm (STE, PACT,
TQT, ANA, INQ) at 8, 4 and 2 bits, over several seeds, through edgeq's F2F conversion
(``Policy.uniform``: weights signed per channel, activations unsigned per tensor).
In the same run it trains the same model with PyTorch's own fake-quant QAT
(``torch.ao.quantization`` FX ``prepare_qat_fx``, 8 bits) as the named peer, and times
one training step of each.

Prints one table (test accuracy mean ± std over seeds; training time per epoch as a ratio
to an FP epoch timed right after each QAT epoch, so that load from other processes on a
shared machine hits both alike) and writes JSON to ``benchmarks/results/qat_digits.json``.
Runs single-threaded by default (``--threads``): the model is tiny and thread
oversubscription on a busy machine made multi-threaded timings erratic.

Step timing: the same batch (64 images, already in memory: no data loading), the same
Adam settings and one step = zero_grad, forward, loss, backward, Adam step (and the QAT
controller step) for every method. The methods take turns in rounds of 5 steps; a
method's ratio to FP is the median over rounds of (its median step / FP's median step in
the same round), repeated ``--repeat`` times with fresh models; the table gives the
quartiles of the per-round ratios and the range of the repetitions' medians. Wall and
CPU time (``time.process_time``) are both recorded: on an idle core they agree; on a
loaded machine wall time also counts the time the process waited for a CPU (a stored run
under heavy load had FP at 10.7 ms wall for 3.7 ms CPU), which inflates both sides.

    python benchmarks/qat_digits.py            # full run
    python benchmarks/qat_digits.py --quick    # smoke run (1 seed, few epochs)
    python benchmarks/qat_digits.py --steps-only --out /tmp/steps.json  # step times only
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgeq.data import DigitsSplits, digits_loaders, load_digits_splits
from edgeq.engine.tensor_io import write_json
from edgeq.errors import ConfigError
from edgeq.models import DigitsCNN
from edgeq.train.controller import QATController
from edgeq.train.f2f import Policy, Rule, f2f
from edgeq.train.spec import AnaParams, AnnealSpec, InqParams, ScheduleSpec

ALGORITHMS = ("ste", "pact", "tqt", "ana", "inq")
DEFAULT_OUT = Path(__file__).parent / "results" / "qat_digits.json"


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    bits: tuple[int, ...] = (8, 4, 2)
    algorithms: tuple[str, ...] = ALGORITHMS
    fp_epochs: int = 20
    qat_epochs: int = 10  # the first of them only observes statistics (float forward)
    batch_size: int = 64
    fp_lr: float = 3e-3
    qat_lr: float = 1e-3
    timing_steps: int = 200  # per method and repetition: 40 interleaved rounds of 5
    timing_repeats: int = 3  # independent repetitions of the step timing (fresh models)
    train_subset: int | None = None  # use only the first N training images (smoke runs)

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=(0,), bits=(8, 2), fp_epochs=3, qat_epochs=2, timing_steps=10,
                   timing_repeats=1, train_subset=256)


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def train_epoch(model, loader, optimiser, controller=None) -> float:
    """One epoch; returns its wall time in seconds (training only)."""
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        optimiser.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimiser.step()
        if controller is not None:
            controller.step()
    return time.perf_counter() - start


def train_fp(cfg: Config, splits: DigitsSplits, seed: int) -> tuple[nn.Module, float, float]:
    """(model, test accuracy, median seconds per epoch)."""
    torch.manual_seed(seed)
    model = DigitsCNN()
    loader = digits_loaders(cfg.batch_size, seed=seed, splits=splits)["train"]
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.fp_lr)
    times = [train_epoch(model, loader, optimiser) for _ in range(cfg.fp_epochs)]
    return model, evaluate(model, splits.x_test, splits.y_test), statistics.median(times)


def algorithm_params(algorithm: str, cfg: Config):
    """Schedules fitted to the QAT epochs (1 .. qat_epochs-1; epoch 0 observes).

    ANA: noise σ annealed to zero by the last epoch. INQ: weights frozen 50/75/87.5/100 %
    over the first part of training, leaving the last epochs to adapt BN and activations.
    Other algorithms: their defaults (None).
    """
    last = cfg.qat_epochs - 1
    if algorithm == "ana":
        return AnaParams(sigma=AnnealSpec(kind="bws", base=1.0, start=1, end=max(last, 2)))
    if algorithm == "inq":
        steps = {1 + k * max(last - 2, 0) // 3: f for k, f in enumerate((0.5, 0.75, 0.875, 1.0))}
        return InqParams(schedule=tuple(sorted(steps.items())))
    return None


def policy_for(algorithm: str, bits: int, cfg: Config) -> Policy:
    """Policy.uniform, with the algorithm's schedules fitted to the run (see above)."""
    policy = Policy.uniform(bits, algorithm)
    params = algorithm_params(algorithm, cfg)
    if params is None:
        return policy
    rules = tuple(
        Rule(dataclasses.replace(r.spec, params=params), r.types, r.name, r.optional)
        if r.spec.algorithm == algorithm else r
        for r in policy.rules
    )
    return Policy(rules, policy.allow_float)


class FPShadow:
    """A throw-away copy of the FP model trained one epoch right after each QAT epoch.

    The machine may be shared: an FP epoch timed minutes earlier is no fair reference.
    Timing FP next to each QAT epoch makes the per-epoch ratio compare like with like.
    """

    def __init__(self, fp_model: nn.Module, cfg: Config):
        self.model = copy.deepcopy(fp_model)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=cfg.qat_lr)
        self.times: list[float] = []

    def epoch(self, loader) -> None:
        self.times.append(train_epoch(self.model, loader, self.optimiser))


def train_qat(cfg, splits, fp_model, algorithm, bits, seed) -> tuple[float, float, float]:
    """Fine-tune ``fp_model`` with QAT: (test accuracy, median s per quantised epoch,
    median s per FP epoch timed alongside)."""
    torch.manual_seed(seed)
    gm, _ = f2f(fp_model, policy_for(algorithm, bits, cfg), splits.x_train[:2])
    return _fine_tune(cfg, splits, fp_model, gm, QATController(gm, ScheduleSpec(start_epoch=1)),
                      seed, observe_epochs=1)


def train_peer(cfg, splits, fp_model, seed) -> tuple[float, float, float]:
    """The same fine-tuning with torch.ao's QAT (observers run in every epoch)."""
    torch.manual_seed(seed)
    model = torch_ao_qat(fp_model, splits.x_train[:2])
    return _fine_tune(cfg, splits, fp_model, model, None, seed, observe_epochs=1)


def _fine_tune(cfg, splits, fp_model, model, controller, seed, observe_epochs):
    loader = digits_loaders(cfg.batch_size, seed=seed, splits=splits)["train"]
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.qat_lr)
    shadow = FPShadow(fp_model, cfg)
    times = []
    for epoch in range(cfg.qat_epochs):
        if controller is not None:
            controller.epoch_start(epoch)
        seconds = train_epoch(model, loader, optimiser, controller)
        if epoch >= observe_epochs:  # observation epochs compute in float: not timed
            times.append(seconds)
            shadow.epoch(loader)
    accuracy = evaluate(model, splits.x_test, splits.y_test)
    return accuracy, statistics.median(times), statistics.median(shadow.times)


def torch_ao_qat(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The peer: PyTorch's FX-mode fake-quant QAT (8-bit, x86 default qconfig)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its deprecation
        from torch.ao.quantization import get_default_qat_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_qat_fx

        mapping = get_default_qat_qconfig_mapping("x86")
        return prepare_qat_fx(copy.deepcopy(model).train(), mapping, (example,))


# --------------------------------------------------------------------------------------
# step timing
# --------------------------------------------------------------------------------------
class StepTimer:
    """Times training steps (forward, backward, Adam step, controller step) of one model:
    wall time, and CPU time of this process (single-threaded, load on a shared machine
    barely changes it)."""

    def __init__(self, model: nn.Module, controller: QATController | None = None):
        self.model, self.controller = model.train(), controller
        self.optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
        self.samples: list[float] = []
        self.cpu_samples: list[float] = []

    def run(self, x: torch.Tensor, y: torch.Tensor, steps: int, record: bool = True) -> None:
        for _ in range(steps):
            start, cpu = time.perf_counter(), time.process_time()
            self.optimiser.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(x), y).backward()
            self.optimiser.step()
            if self.controller is not None:
                self.controller.step()
            if record:
                self.samples.append(time.perf_counter() - start)
                self.cpu_samples.append(time.process_time() - cpu)


ROUND = 5  # steps per method and round


def step_timings(cfg: Config, splits: DigitsSplits, fp_model: nn.Module) -> dict:
    """One repetition: every method's steps, in interleaved rounds of :data:`ROUND` steps.

    The methods take turns, so a load change on the machine hits them alike instead of
    biasing one; each round's ratio compares a method's median step with the FP median
    of the same round (seconds apart). Returns per method the wall and CPU medians over
    all its steps and the list of per-round wall and CPU ratios to FP.
    """
    x, y = splits.x_train[: cfg.batch_size], splits.y_train[: cfg.batch_size]
    timers = {"fp": StepTimer(copy.deepcopy(fp_model)),
              "torch_ao_qat_8": StepTimer(torch_ao_qat(fp_model, x))}
    for algorithm in cfg.algorithms:
        bits, policy = supported_policy(algorithm, cfg)
        gm, _ = f2f(fp_model, policy, x[:2])
        controller = QATController(gm, ScheduleSpec(start_epoch=0))
        controller.epoch_start(0)
        timers[f"edgeq_{algorithm}_{bits}"] = StepTimer(gm, controller)
    for timer in timers.values():  # warm-up: allocator, thread pool, lazy init, the
        timer.run(x, y, ROUND, record=False)  # activation ε (first batch), kernel build
    n_rounds = max(cfg.timing_steps // ROUND, 1)
    for _ in range(n_rounds):
        for timer in timers.values():
            timer.run(x, y, ROUND)
    return {name: {"wall": statistics.median(t.samples),
                   "cpu": statistics.median(t.cpu_samples),
                   "wall_ratios": _round_ratios(t.samples, timers["fp"].samples),
                   "cpu_ratios": _round_ratios(t.cpu_samples, timers["fp"].cpu_samples)}
            for name, t in timers.items()}


def _round_ratios(samples: list[float], fp_samples: list[float]) -> list[float]:
    """Per round: median step of the method / median FP step of the same round."""
    return [statistics.median(samples[k:k + ROUND]) / statistics.median(fp_samples[k:k + ROUND])
            for k in range(0, len(samples), ROUND)]


def repeated_step_timings(cfg: Config, splits: DigitsSplits, fp_model: nn.Module) -> dict:
    """``cfg.timing_repeats`` repetitions of :func:`step_timings`, summarised.

    ``step_seconds`` / ``step_cpu_seconds``: median over repetitions of each one's median
    step. ``step_ratio_to_fp``: per method, the median and quartiles of all per-round
    ratios (wall and CPU) and each repetition's median ratio — the spread to quote.
    """
    runs = []
    for k in range(cfg.timing_repeats):
        progress(f"step timing, repetition {k + 1}/{cfg.timing_repeats}")
        runs.append(step_timings(cfg, splits, fp_model))
    names = list(runs[0])
    ratios = {}
    for name in names:
        ratios[name] = {kind: _spread([r for run in runs for r in run[name][f"{kind}_ratios"]],
                                      [statistics.median(run[name][f"{kind}_ratios"])
                                       for run in runs])
                        for kind in ("wall", "cpu")}
    return {"step_seconds": {n: statistics.median(run[n]["wall"] for run in runs) for n in names},
            "step_cpu_seconds": {n: statistics.median(run[n]["cpu"] for run in runs)
                                 for n in names},
            "step_ratio_to_fp": ratios}


def _spread(pooled: list[float], per_repeat: list[float]) -> dict:
    q1, median, q3 = (statistics.quantiles(pooled, n=4) if len(pooled) > 1
                      else (pooled[0],) * 3)
    return {"median": statistics.median(pooled), "q1": q1, "q3": q3,
            "repeat_medians": per_repeat, "rounds": len(pooled)}


def supported_policy(algorithm: str, cfg: Config) -> tuple[int, Policy]:
    """The 8-bit policy, or the widest supported one (INQ power-of-two stops at 6 bits)."""
    for bits in range(8, 1, -1):
        try:
            return bits, policy_for(algorithm, bits, cfg)
        except ConfigError:
            continue
    raise ConfigError(f"no supported bit width for {algorithm}")


# --------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------
def summarise(accs: list[float], epoch_times: list[float], fp_times: list[float]) -> dict:
    """Accuracy statistics, and epoch time relative to FP epochs timed alongside."""
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    ratios = [t / f for t, f in zip(epoch_times, fp_times, strict=True)]
    return {"acc": accs, "acc_mean": statistics.mean(accs), "acc_std": std,
            "epoch_seconds": statistics.mean(epoch_times),
            "fp_epoch_seconds": statistics.mean(fp_times),
            "epoch_ratio_to_fp": statistics.mean(ratios)}


def format_table(results: list[dict], steps: dict, ratios: dict, n_seeds: int) -> str:
    lines = [f"QAT on 8x8 digits, DigitsCNN, test accuracy over {n_seeds} seed(s)",
             f"{'method':18s} {'bits':>4s}  {'accuracy %':>15s}  {'time/epoch vs FP':>16s}"]
    for r in results:
        if r.get("unsupported"):
            lines.append(f"{r['method']:18s} {r['bits']:>4}  unsupported: {r['unsupported']}")
            continue
        acc = f"{100 * r['acc_mean']:6.2f} ± {100 * r['acc_std']:4.2f}"
        lines.append(f"{r['method']:18s} {r['bits']:>4}  {acc:>15s}  "
                     f"{r['epoch_ratio_to_fp']:15.2f}x")
    fp, peer = steps["fp"], steps["torch_ao_qat_8"]
    peer_ratio = ratios["torch_ao_qat_8"]["wall"]["median"]
    lines.append("")
    lines.append(f"training step, batch 64 (median): FP {1e3 * fp:.2f} ms; "
                 f"torch.ao QAT-8 {1e3 * peer:.2f} ms ({peer_ratio:.2f}x FP)")
    for key, seconds in steps.items():
        if key.startswith("edgeq_"):
            name = key.removeprefix("edgeq_").replace("_", "-").upper()
            ratio = ratios[key]["wall"]["median"]
            lines.append(f"  edgeq {name:7s}  {1e3 * seconds:6.2f} ms ({ratio:5.2f}x FP, "
                         f"{ratio / peer_ratio:5.2f}x torch.ao)")
    return "\n".join(lines)


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(cfg: Config) -> dict:
    splits = load_digits_splits(seed=0)
    if cfg.train_subset is not None:
        n = cfg.train_subset
        splits = dataclasses.replace(splits, x_train=splits.x_train[:n], y_train=splits.y_train[:n])
    fp_models, fp_accs, fp_times = {}, [], []
    for seed in cfg.seeds:
        fp_models[seed], acc, seconds = train_fp(cfg, splits, seed)
        fp_accs.append(acc)
        fp_times.append(seconds)
        progress(f"FP seed {seed}: acc {100 * acc:.2f}%")
    results = [{"method": "FP", "bits": 32, **summarise(fp_accs, fp_times, fp_times)}]
    for algorithm in cfg.algorithms:
        for bits in cfg.bits:
            results.append(qat_row(cfg, splits, fp_models, algorithm, bits))
    peer = [train_peer(cfg, splits, fp_models[s], s) for s in cfg.seeds]
    results.append({"method": "torch.ao QAT (peer)", "bits": 8,
                    **summarise(*(list(column) for column in zip(*peer, strict=True)))})
    progress("timing single training steps")
    steps = repeated_step_timings(cfg, splits, fp_models[cfg.seeds[0]])
    return {"config": dataclasses.asdict(cfg), "environment": environment(),
            "results": results, **steps}


def run_steps_only(cfg: Config) -> dict:
    """Only the training-step timings (FP model of the first seed)."""
    splits = load_digits_splits(seed=0)
    fp_model, _, _ = train_fp(cfg, splits, cfg.seeds[0])
    return {"config": dataclasses.asdict(cfg), "environment": environment(),
            **repeated_step_timings(cfg, splits, fp_model)}


def format_steps(data: dict) -> str:
    """Median step times, and ratios to FP as the median of per-round ratios with their
    interquartile range and the spread of the repetitions' medians."""
    wall, cpu, ratios = data["step_seconds"], data["step_cpu_seconds"], data["step_ratio_to_fp"]
    lines = [f"{'method':16s} {'wall ms':>7s} {'x FP':>5s} {'IQR':>11s} {'repeats':>11s} "
             f"{'CPU ms':>7s} {'x FP':>5s} {'IQR':>11s}"]
    for key in wall:
        w, c = ratios[key]["wall"], ratios[key]["cpu"]
        reps = w["repeat_medians"]
        lines.append(f"{key:16s} {1e3 * wall[key]:7.2f} {w['median']:5.2f} "
                     f"{w['q1']:5.2f}-{w['q3']:<5.2f} {min(reps):5.2f}-{max(reps):<5.2f} "
                     f"{1e3 * cpu[key]:7.2f} {c['median']:5.2f} {c['q1']:5.2f}-{c['q3']:.2f}")
    w = ratios["fp"]["wall"]
    lines.append(f"({len(reps)} repetition(s), {w['rounds']} rounds of {ROUND} steps per "
                 "method; x FP: median of per-round ratios)")
    return "\n".join(lines)


def qat_row(cfg, splits, fp_models, algorithm, bits) -> dict:
    row = {"method": algorithm.upper(), "bits": bits}
    runs = []
    for seed in cfg.seeds:
        try:
            runs.append(train_qat(cfg, splits, fp_models[seed], algorithm, bits, seed))
        except ConfigError as exc:  # e.g. a range the algorithm does not support
            progress(f"{algorithm} {bits}-bit unsupported: {exc}")
            return {**row, "unsupported": str(exc)}
        progress(f"{algorithm} {bits}-bit seed {seed}: acc {100 * runs[-1][0]:.2f}%")
    return {**row, **summarise(*(list(column) for column in zip(*runs, strict=True)))}


def environment() -> dict:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor() or "unknown", "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, few epochs")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5)")
    parser.add_argument("--steps-only", action="store_true",
                        help="only time training steps (wall and CPU, ratios to FP)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="repetitions of the step timing (default 3; 1 with --quick)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the model is tiny, and one thread "
                        "keeps timings stable on a shared machine)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        print("error: --threads must be >= 1", file=sys.stderr)
        return 2
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run_and_report(args)
    finally:
        torch.set_num_threads(previous_threads)  # main() may run inside another process


def _run_and_report(args: argparse.Namespace) -> int:
    cfg = Config.quick() if args.quick else Config()
    if args.seeds is not None:
        if args.seeds < 1:
            print("error: --seeds must be >= 1", file=sys.stderr)
            return 2
        cfg = dataclasses.replace(cfg, seeds=tuple(range(args.seeds)))
    if args.repeat is not None:
        if args.repeat < 1:
            print("error: --repeat must be >= 1", file=sys.stderr)
            return 2
        cfg = dataclasses.replace(cfg, timing_repeats=args.repeat)
    if args.steps_only:
        data = run_steps_only(cfg)
        table = format_steps(data)
        data["table"] = table
        write_json(args.out, data)
        print(table)
        return 0
    data = run(cfg)
    table = format_table(data["results"], data["step_seconds"], data["step_ratio_to_fp"],
                         len(cfg.seeds))
    table += "\n\nTraining steps, wall and CPU time:\n" + format_steps(data)
    data["table"] = table
    write_json(args.out, data)
    print(table)
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
