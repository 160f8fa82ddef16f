"""Running a design: every run in its own directory, in parallel processes, resumable.

Layout of the experiment directory::

    design.json          the design as given (``--resume`` refuses a different one)
    runs.csv             the register: status, error and metrics of every run
    runs/<run>/          config.json (resolved), run.json (status), result.json (when
                         done) and the pipeline's files (ONNX models, fidelity.txt ...)
    report.json, report.md, report.html   statistics (edgeq experiment-report)

Every resolved config is validated before the first run starts. A run that raises is
marked failed with its one-line error; the others continue. Only the parent process
writes the register, always atomically (temporary file + rename); a run's
``result.json`` is written last and atomically, so it marks a finished run.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

from edgeq.engine.tensor_io import write_json
from edgeq.errors import ConfigError, EdgeqError
from edgeq.lab.experiment.design import Design, RunSpec
from edgeq.lab.experiment.register import Register

DESIGN_FILE = "design.json"
RESULT_FILE = "result.json"
RUN_FILE = "run.json"


class ExperimentFailed(EdgeqError):
    """Some runs of an experiment failed (the others finished and were recorded)."""


def run_experiment(design: Design, out: str | Path, workers: int = 1, resume: bool = False,
                   log: Callable[[str], None] | None = print,
                   tensorboard: bool = False) -> Register:
    """Run every unfinished run of ``design`` into ``out``; write the register and the
    report. ExperimentFailed (after everything else finished) when any run failed.
    ``tensorboard``: event files per run in ``runs/<run>/tensorboard``."""
    from edgeq.lab.experiment.report import write_report

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {workers!r}")
    log = log or (lambda _msg: None)
    run_kwargs = _run_kwargs(resume, tensorboard)
    runs = design.runs()  # validates every resolved config before anything runs
    out = Path(out)
    _prepare(out, design, resume)
    register = Register(design, runs)
    todo = []
    for run in runs:
        done = _finished(out, run) if resume else None
        if done is not None:
            register.update(run.run_id, "done", done.get("seconds"),
                            metrics=_flat(done["metrics"]))
        else:
            todo.append(run)
    for run in todo:
        _write_run_files(out, run)
    register.save(out)
    if resume and len(todo) < len(runs):
        log(f"resume: {len(runs) - len(todo)} of {len(runs)} runs already finished")
    count = len(runs) - len(todo)
    for run, outcome in _execute_all(out, todo, workers, run_kwargs):
        count += 1
        register.update(run.run_id, outcome["status"], outcome.get("seconds"),
                        outcome.get("error", ""), _flat(outcome.get("metrics", {})))
        register.save(out)
        write_json(out / "runs" / run.run_id / RUN_FILE, _run_json(run, outcome))
        log(_progress_line(count, len(runs), run, outcome))
    write_report(out)
    failed = [r for r in runs if register.status(r.run_id) == "failed"]
    if failed:
        first = register.rows[failed[0].run_id]["error"]
        raise ExperimentFailed(f"{out}: {len(failed)} of {len(runs)} runs failed; first: "
                               f"{failed[0].describe()}: {first} (see {out / 'runs.csv'})")
    return register


def _run_seed():
    from edgeq.lab.pipeline import run_seed

    return run_seed


def _run_kwargs(resume: bool, tensorboard: bool) -> dict:
    """run_seed's optional training features this tree has: checkpoints every epoch
    (always, so that any run can be resumed), resume, TensorBoard."""
    params = inspect.signature(_run_seed()).parameters
    if tensorboard and "tensorboard" not in params:
        raise ConfigError("--tensorboard: this edgeq's pipeline writes no event files")
    wanted = {"checkpoint": True, "resume": resume, "tensorboard": tensorboard}
    return {k: v for k, v in wanted.items() if k in params and (v or k == "resume")}


def _prepare(out: Path, design: Design, resume: bool) -> None:
    """Create ``out``; refuse another experiment's directory or a changed design."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output directory {out} exists and is not a directory")
    stored = out / DESIGN_FILE
    if stored.is_file():
        if not resume:
            raise ConfigError(f"{out} already holds an experiment; use --resume to continue "
                              "it or choose another --out")
        try:
            previous = json.loads(stored.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{stored}: not valid JSON ({exc})") from None
        if previous != design.to_json():
            raise ConfigError(f"{stored}: the design differs from the one this directory was "
                              "run with; --resume needs the same design (or another --out)")
    elif out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"output directory {out} is not empty and holds no experiment "
                          f"({DESIGN_FILE} missing)")
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output directory {out}: cannot create it "
                          f"({exc.strerror or exc})") from None
    write_json(stored, design.to_json())


def _finished(out: Path, run: RunSpec) -> dict | None:
    """The stored result of a finished run, or None (unfinished, or unreadable)."""
    path = out / "runs" / run.run_id / RESULT_FILE
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and "metrics" in result else None


def _write_run_files(out: Path, run: RunSpec) -> None:
    run_dir = out / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    write_json(run_dir / "config.json", run.config)
    write_json(run_dir / RUN_FILE, _run_json(run, {"status": "pending"}))


def _run_json(run: RunSpec, outcome: dict) -> dict:
    return {"run": run.run_id, "cell": run.cell, "levels": dict(run.levels), "seed": run.seed,
            "fold": run.fold, "status": outcome["status"], "error": outcome.get("error", ""),
            "seconds": outcome.get("seconds")}


def _execute_all(out: Path, todo: list[RunSpec], workers: int, run_kwargs: dict):
    """(run, outcome) as runs finish: in this process for one worker, else in a pool of
    spawned processes (fresh interpreters: no forked torch thread pools)."""
    cv = _cv_of(out)
    if workers == 1 or len(todo) <= 1:
        for run in todo:
            yield run, execute_run(run.config, run.fold, cv, str(out), run.run_id,
                                   run_kwargs)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)),
                             mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(execute_run, run.config, run.fold, cv, str(out), run.run_id,
                               run_kwargs): run for run in todo}
        for future in as_completed(futures):
            run = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # the worker process died (killed, out of memory)
                outcome = {"status": "failed",
                           "error": f"worker process died: {type(exc).__name__}: {exc}"}
            yield run, outcome


def _cv_of(out: Path) -> tuple[int, int] | None:
    cv = json.loads((out / DESIGN_FILE).read_text()).get("cv")
    return None if cv is None else (cv["folds"], cv.get("seed", 0))


def execute_run(config: dict, fold: int | None, cv: tuple[int, int] | None, out: str,
                run_id: str, run_kwargs: dict | None = None) -> dict:
    """One run (in a worker process or not): the outcome as a plain dict, never raising
    for a failure of the run itself. ``run_kwargs`` go to run_seed (``checkpoint``,
    ``resume``, ``tensorboard``, see :func:`_run_kwargs`); without checkpoints an
    unfinished run starts again from scratch."""
    import torch

    from edgeq.lab.config import PipelineConfig
    from edgeq.lab.tasks import make_task

    start = time.perf_counter()
    run_dir = Path(out) / "runs" / run_id
    threads = torch.get_num_threads()
    try:
        cfg = PipelineConfig.from_json(config)
        task = make_task(cfg)
        if task.threads is not None:
            torch.set_num_threads(task.threads)
        task.load(progress=False)
        if fold is not None:
            task.use_fold(fold, *cv)
        result = _run_seed()(cfg, cfg.seeds[0], run_dir, False, task, **(run_kwargs or {}))
        if fold is not None:  # the cross-validation score: the held-out fold
            result.metrics.update(_held_out(cfg, task, run_dir))
        record = asdict(result)
        record["fold"] = fold
        write_json(run_dir / RESULT_FILE, record)
        return {"status": "done", "seconds": time.perf_counter() - start,
                "metrics": result.metrics}
    except EdgeqError as exc:
        error = str(exc)
    except Exception as exc:  # a bug or a user model's error: recorded, the others go on
        text = str(exc).strip()
        error = f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"
    finally:
        torch.set_num_threads(threads)
    return {"status": "failed", "seconds": time.perf_counter() - start, "error": error}


def _held_out(cfg, task, run_dir: Path) -> dict:
    """``cv_fq_<metric>``: the trained FQ network on the held-out fold (the task's val
    split under :meth:`~edgeq.lab.tasks.base.Task.use_fold`)."""
    from edgeq.lab.pipeline import FQ_STATE, rebuild_fq
    from edgeq.lab.training import predict

    fq = rebuild_fq(cfg, run_dir / FQ_STATE, task)
    scores = task.evaluate(predict(fq, task.inputs("val")), "val")
    return {f"cv_fq_{k}": v for k, v in scores.items()}


def _flat(metrics: dict) -> dict:
    """Register columns: numbers as they are, booleans as True/False."""
    return {k: v for k, v in metrics.items() if isinstance(v, (bool, int, float))}


def _progress_line(i: int, n: int, run: RunSpec, outcome: dict) -> str:
    secs = outcome.get("seconds")
    tail = f"({secs:.1f} s)" if secs is not None else ""
    if outcome["status"] == "failed":
        return f"[{i}/{n}] failed {run.run_id}: {outcome['error']} {tail}"
    return f"[{i}/{n}] done   {run.run_id} {tail}"
