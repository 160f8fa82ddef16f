"""``edgeq experiment`` and ``edgeq experiment-report``: argparse wiring only (the work
is imported when a command runs, so ``edgeq --help`` stays torch-free)."""

from __future__ import annotations

import argparse
import sys


def add_experiment_commands(sub) -> None:
    exp = sub.add_parser("experiment", help="run a factorial design of pipeline configs "
                         "over seeds and cross-validation folds")
    exp.add_argument("design", metavar="DESIGN.json")
    exp.add_argument("--out", metavar="DIR", help="experiment directory (default: the "
                     "design's output_dir)")
    exp.add_argument("--workers", type=int, default=1, metavar="N",
                     help="runs in parallel processes (default 1)")
    exp.add_argument("--resume", action="store_true",
                     help="continue DIR: skip finished runs, redo the unfinished ones")
    exp.add_argument("--tensorboard", action="store_true",
                     help="TensorBoard event files per run (runs/<run>/tensorboard)")
    exp.add_argument("--dry-run", action="store_true",
                     help="validate every run and list them; run nothing, write nothing")
    exp.add_argument("--quiet", action="store_true", help="no per-run lines")
    exp.set_defaults(func=cmd_experiment)

    rep = sub.add_parser("experiment-report", help="statistics of an experiment directory "
                         "(report.json, report.md, report.html)")
    rep.add_argument("run_dir", metavar="DIR")
    rep.set_defaults(func=cmd_experiment_report)


def cmd_experiment(args: argparse.Namespace) -> int:
    from edgeq.lab.experiment.design import Design
    from edgeq.lab.experiment.report import write_report
    from edgeq.lab.experiment.runner import run_experiment

    design = Design.load(args.design)
    out = args.out or design.output_dir
    if args.dry_run:
        runs = design.runs()  # validates every resolved config
        for run in runs:
            print(f"{run.run_id}  ({run.cell}, seed {run.seed}"
                  + ("" if run.fold is None else f", fold {run.fold}") + ")")
        print(f"{len(runs)} runs in {len(design.cells())} cells, all valid; would write "
              f"{out}/")
        return 0
    log = None if args.quiet else (lambda line: print(line, flush=True))
    run_experiment(design, out, workers=args.workers, resume=args.resume, log=log,
                   tensorboard=args.tensorboard)
    print(write_report(out), end="")
    print(f"\nwrote {out}/ (runs.csv, runs/, report.json, report.md, report.html)")
    return 0


def cmd_experiment_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgeq.lab.experiment.report import write_report

    print(write_report(Path(args.run_dir)), end="")
    print(f"\nwrote {args.run_dir}/report.json, report.md, report.html", file=sys.stdout)
    return 0
