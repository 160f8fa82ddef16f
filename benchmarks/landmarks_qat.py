"""QAT of the 3DDFA MobileNetV1 on synthetic faces: NME of FP vs PACT 8/4 bit vs TQT 8 bit.

For every width (default 0.25, 0.5 and 1.0 at 64 px) and seed: train the float network
(FP, the named peer every quantised row is compared with), then fine-tune a copy of it
with each QAT variant through edgeq's F2F conversion (``Policy.uniform``: weights signed
per channel, activations unsigned per tensor; the input quantised by the task's input
rule), and measure the test NME (3DDFA's box-normalised 68-point NME, percent, mean over
faces, plus the unweighted mean of the three yaw bins) of the fake-quantised network.
All widths and seeds see the same generated faces (data seed 0); the training seed
changes the initialisation and the batch order. Training runs single-threaded; the time
per epoch is CPU time (wall time is in the JSON), which load from other processes on a
shared machine barely changes, and each QAT epoch is also given as a ratio to the FP
epoch of the same seed.

Prints one table (mean ± std over seeds) with the mean-parameter and true-pose
baselines, and writes ``benchmarks/results/landmarks_qat.json``.

    python benchmarks/landmarks_qat.py                     # full run (hours on 2 cores)
    python benchmarks/landmarks_qat.py --n-train 8000 --fp-epochs 4 --qat-epochs 2
    python benchmarks/landmarks_qat.py --quick             # smoke run (seconds)

Seeds (or widths) can run in separate processes (``--first-seed S --seeds 1``) and be
merged afterwards: ``--merge A.json B.json ... --out MERGED.json [--table TABLE.txt]``
pools the runs per (width, method, bits) after checking that the files share their
data and training settings, and recomputes mean ± std.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from edgeq.engine.tensor_io import write_json
from edgeq.errors import ConfigError, EdgeqError
from edgeq.lab.config import PipelineConfig
from edgeq.lab.pipeline import CALIBRATION_SAMPLES, input_spec
from edgeq.lab.tasks import make_task
from edgeq.lab.training import predict, train

DEFAULT_OUT = Path(__file__).parent / "results" / "landmarks_qat.json"
VARIANTS = (("PACT", "pact", 8), ("PACT", "pact", 4), ("TQT", "tqt", 8))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: tiny data, 1 epoch")
    p.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--size", type=int, default=64, help="input size in pixels")
    p.add_argument("--seeds", type=int, default=3, help="number of training seeds")
    p.add_argument("--first-seed", type=int, default=0,
                   help="first training seed (run seeds in separate processes, then --merge)")
    p.add_argument("--n-train", type=int, default=24000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--fp-epochs", type=int, default=8)
    p.add_argument("--qat-epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--qat-lr", type=float, default=5e-4)
    p.add_argument("--cache-dir", default=None, help="cache the generated faces here")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    p.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                   help="merge finished result files into --out instead of training")
    p.add_argument("--table", type=Path, metavar="TXT",
                   help="with --merge: also write the table as text")
    args = p.parse_args(argv)
    if args.quick:
        args.widths, args.seeds, args.size = [0.25], 1, 32
        args.n_train, args.n_test, args.fp_epochs, args.qat_epochs = 64, 24, 1, 1
    if args.seeds < 1 or args.threads < 1 or args.first_seed < 0:
        raise ConfigError("--seeds and --threads must be >= 1, --first-seed >= 0")
    if args.table is not None and not args.merge:
        raise ConfigError("--table needs --merge")
    return args


def config_for(args, width: float, policy: dict | None = None) -> PipelineConfig:
    data = {
        "task": {"name": "landmarks_3ddfa", "seed": 0, "batch_size": args.batch_size,
                 "n_train": args.n_train, "n_val": 1, "n_test": args.n_test,
                 "cache_dir": args.cache_dir},
        "model": {"name": "mobilenet_v1_3ddfa", "width": width, "input_size": args.size},
        "training": {"fp_epochs": args.fp_epochs, "qat_epochs": args.qat_epochs,
                     "lr": args.lr, "qat_lr": args.qat_lr, "schedule": "onecycle"},
    }
    if policy is not None:
        data["policy"] = policy
    return PipelineConfig.from_json(data)


def timed_train(model, task, cfg, seed, epochs, lr, controller=None) -> tuple[float, float]:
    """Train; returns (wall, CPU) seconds per epoch. Single-threaded, CPU time is what
    other processes on a shared machine do not change."""
    start, cpu = time.perf_counter(), time.process_time()
    train(model, task.batches("train", cfg.task.batch_size, seed), epochs, lr,
          f"seed {seed}", controller=controller, progress=False, loss_fn=task.loss,
          schedule=cfg.training.schedule)
    n = max(epochs, 1)
    return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


def run_width(args, task, width: float, on_seed=None) -> list[dict]:
    """Every variant at ``width`` over the seeds; ``on_seed(rows)`` gets the summary rows
    after each seed (so a long run cut short still leaves its finished seeds)."""
    from edgeq.train.controller import QATController, observing
    from edgeq.train.f2f import f2f
    from edgeq.train.spec import ScheduleSpec

    cfg = config_for(args, width)
    x_test, x_calib = task.inputs("test"), task.inputs("train", CALIBRATION_SAMPLES)
    rows = {("FP", 32): []}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        torch.manual_seed(seed)
        fp = make_task(cfg).build_model()
        fp_epoch = timed_train(fp, task, cfg, seed, args.fp_epochs, args.lr)
        rows[("FP", 32)].append(_result(task, predict(fp, x_test), fp_epoch, fp_epoch, seed))
        for label, algorithm, bits in VARIANTS:
            qcfg = config_for(args, width, {"uniform": {"bits": bits, "algorithm": algorithm}})
            fq, _ = f2f(copy.deepcopy(fp), qcfg.build_policy(), x_test[:1],
                        input_spec=input_spec(qcfg))
            with observing(fq):
                predict(fq, x_calib)
            ctl = QATController(fq, ScheduleSpec(start_epoch=0))
            q_epoch = timed_train(fq, task, qcfg, seed, args.qat_epochs, args.qat_lr, ctl)
            rows.setdefault((label, bits), []).append(
                _result(task, predict(fq, x_test), q_epoch, fp_epoch, seed))
        print(f"width {width} seed {seed}: done", file=sys.stderr, flush=True)
        if on_seed is not None:
            on_seed([_summarise(width, m, b, runs) for (m, b), runs in rows.items()])
    return [_summarise(width, method, bits, runs) for (method, bits), runs in rows.items()]


def _result(task, outputs, epoch: tuple[float, float], fp_epoch: tuple[float, float],
            seed: int) -> dict:
    m = task.evaluate(outputs, "test")
    return {"seed": seed, "nme": m["nme"], "nme_bins_mean": m["nme_bins_mean"], "epoch_s": epoch[0],
            "epoch_cpu_s": epoch[1], "epoch_ratio": epoch[1] / fp_epoch[1]}


def _summarise(width, method, bits, runs) -> dict:
    def ms(key):
        vals = [r[key] for r in runs]
        return statistics.fmean(vals), statistics.pstdev(vals) if len(vals) > 1 else 0.0

    (nme, nme_sd), (bins, bins_sd) = ms("nme"), ms("nme_bins_mean")
    (ep, _), (cpu, _), (ratio, _) = ms("epoch_s"), ms("epoch_cpu_s"), ms("epoch_ratio")
    return {"width": width, "method": method, "bits": bits, "nme_mean": nme,
            "nme_std": nme_sd, "nme_bins_mean_mean": bins, "nme_bins_mean_std": bins_sd,
            "epoch_seconds": ep, "epoch_cpu_seconds": cpu, "epoch_ratio_to_fp": ratio,
            "runs": runs}


def format_table(rows: list[dict], baselines: dict, n_seeds: int) -> str:
    head = (f"{'width':>6s} {'method':8s} {'bits':>4s} {'NME % (mean±std)':>18s} "
            f"{'bins mean %':>14s} {'CPU s/epoch':>11s} {'x FP':>5s}")
    lines = [head]
    for r in rows:
        label = "FP32" if r["method"] == "FP" else f"{r['method']}"
        bits = "32" if r["method"] == "FP" else str(r["bits"])
        lines.append(f"{r['width']:>6.2f} {label:8s} {bits:>4s} "
                     f"{r['nme_mean']:>10.2f} ± {r['nme_std']:<5.2f} "
                     f"{r['nme_bins_mean_mean']:>8.2f} ± {r['nme_bins_mean_std']:<4.2f}"
                     f"{r['epoch_cpu_seconds']:>11.1f} {r['epoch_ratio_to_fp']:>5.2f}")
    lines.append(f"baselines (test set): mean parameters {baselines['mean']['nme']:.2f}, "
                 f"true pose with α=0 {baselines['oracle_pose']['nme']:.2f}; {n_seeds} seed(s)")
    return "\n".join(lines)


# -- merging files of separate processes -------------------------------------------------
# Settings that must agree for runs to be pooled (the rest say which seeds/widths ran where).
SHARED_SETTINGS = ("size", "n_train", "n_test", "fp_epochs", "qat_epochs", "batch_size",
                   "lr", "qat_lr", "threads")


def _read_results(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        data["settings"], data["results"], data["baselines"]  # noqa: B018 (presence check)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such result file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a landmarks_qat result file ({exc})") from None
    return data


def _seeds_of(data: dict, runs: list[dict]) -> list[int]:
    """Each run's training seed (files before ``seed`` was recorded ran seeds from 0)."""
    first = data["settings"].get("first_seed", 0)
    return [r.get("seed", first + i) for i, r in enumerate(runs)]


def merge_results(paths: list[Path]) -> dict:
    """One result dict pooling the runs of ``paths``; ConfigError when their settings or
    test sets differ, or one seed of one row appears twice."""
    files = [(p, _read_results(p)) for p in paths]
    (p0, first), groups = files[0], {}
    for path, data in files:
        for key in SHARED_SETTINGS:
            if data["settings"].get(key) != first["settings"].get(key):
                raise ConfigError(f"{path}: settings.{key} = {data['settings'].get(key)!r} "
                                  f"differs from {p0}'s {first['settings'].get(key)!r}")
        if data["baselines"] != first["baselines"]:
            raise ConfigError(f"{path}: its baselines differ from {p0}'s (other test faces)")
        for row in data["results"]:
            runs = groups.setdefault((row["width"], row["method"], row["bits"]), {})
            for seed, run in zip(_seeds_of(data, row["runs"]), row["runs"], strict=True):
                if seed in runs:
                    raise ConfigError(f"{path}: width {row['width']} {row['method']} "
                                      f"{row['bits']} seed {seed} is already in another file")
                runs[seed] = {**run, "seed": seed}
    rows = [_summarise(w, m, b, [runs[s] for s in sorted(runs)])
            for (w, m, b), runs in sorted(groups.items(), key=_row_order)]
    wanted = max(d["settings"].get("first_seed", 0) + d["settings"]["seeds"] for _, d in files)
    complete = all(len(r["runs"]) == wanted for r in rows)
    n_seeds = min(len(r["runs"]) for r in rows)
    settings = {**first["settings"], "widths": sorted({r["width"] for r in rows}),
                "seeds": n_seeds, "first_seed": 0, "merged_from": [str(p) for p in paths]}
    settings.pop("merge", None), settings.pop("table", None)
    return {"settings": settings, "complete": complete, "results": rows,
            "baselines": first["baselines"],
            "table": format_table(rows, first["baselines"], n_seeds),
            "seconds": sum(d["seconds"] for _, d in files),
            "environment": first["environment"]}


def _row_order(item) -> tuple:
    (width, method, bits), _ = item
    order = [("FP", 32)] + [(label, b) for label, _, b in VARIANTS]
    return width, order.index((method, bits)) if (method, bits) in order else len(order)


def table_text(merged: dict) -> str:
    """The table with the settings it was measured with and the seeds per width."""
    s = merged["settings"]
    seeds = {}
    for r in merged["results"]:
        seeds.setdefault(r["width"], sorted(run["seed"] for run in r["runs"]))
    head = (f"landmarks_qat: NME % (mean ± std over seeds) and CPU seconds per training epoch "
            f"(single thread), merged from {len(s['merged_from'])} file(s),\n"
            f"each with --n-train {s['n_train']} --n-test {s['n_test']} --fp-epochs "
            f"{s['fp_epochs']} --qat-epochs {s['qat_epochs']} --size {s['size']} "
            f"(data seed 0 for all)")
    per_width = "; ".join(f"width {w}: seeds {v}" for w, v in seeds.items())
    return f"{head}\n{merged['table']}\n{per_width}; complete={merged['complete']}\n"


def _merge_main(args) -> int:
    merged = merge_results(args.merge)
    write_json(args.out, merged)
    if args.table is not None:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".txt", dir=args.table.parent)
        with os.fdopen(fd, "w") as f:
            f.write(table_text(merged))
        os.replace(tmp, args.table)
    print(merged["table"])
    print(f"wrote {args.out}" + (f" and {args.table}" if args.table else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        if args.merge:
            return _merge_main(args)
        for w in args.widths:
            config_for(args, w)  # validates widths and sizes before any work
    except EdgeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)  # main() may run inside another process (tests)


def _run(args) -> int:
    task = make_task(config_for(args, args.widths[0]))
    task.load(progress=False)  # the faces depend on the size, not on the width
    start = time.perf_counter()
    baselines = task.baselines()
    rows: list[dict] = []
    for i, w in enumerate(args.widths):  # JSON after every seed: a long run can be cut
        def partial(width_rows, done=rows):
            n = len(width_rows[0]["runs"])
            write_json(args.out, _results(args, done + width_rows, baselines,
                                          format_table(done + width_rows, baselines, n),
                                          start, complete=False))
        rows += run_width(args, task, w, partial)
        table = format_table(rows, baselines, args.seeds)
        write_json(args.out, _results(args, rows, baselines, table, start,
                                      complete=i == len(args.widths) - 1))
    print(table)
    print(f"wrote {args.out}")
    return 0


def _results(args, rows, baselines, table, start, complete: bool) -> dict:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return {"settings": settings, "complete": complete, "results": rows,
            "baselines": baselines, "table": table, "seconds": time.perf_counter() - start,
            "environment": {"python": platform.python_version(), "torch": torch.__version__,
                            "cpus": os.cpu_count()}}


if __name__ == "__main__":
    sys.exit(main())
