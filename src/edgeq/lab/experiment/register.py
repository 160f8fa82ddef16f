"""The run register ``runs.csv``: one row per run of a design, rewritten atomically.

Columns: ``run`` (the run id, also its directory under ``runs/``), ``cell``, one column
per factor (its level), ``seed``, ``fold`` (empty without cross-validation), ``status``
(``pending``, ``done`` or ``failed``), ``seconds``, ``error`` (one line) and then every
metric the runs reported (``fp_accuracy``, ``tq_accuracy``, ...). A spreadsheet opens it
as it is; :func:`read_register` reads it back for ``--resume`` and the reports.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from edgeq.engine.tensor_io import write_atomic
from edgeq.errors import ConfigError
from edgeq.lab.experiment.design import Design, RunSpec

REGISTER = "runs.csv"
STATUSES = ("pending", "done", "failed")
FIXED = ("run", "cell", "seed", "fold", "status", "seconds", "error")


class Register:
    """Status, error and metrics of every run, kept in design order."""

    def __init__(self, design: Design, runs: list[RunSpec]) -> None:
        self.factors = list(design.factors)
        self.runs = runs
        self.rows: dict[str, dict] = {
            r.run_id: {"run": r.run_id, "cell": r.cell, **dict(r.levels), "seed": r.seed,
                       "fold": "" if r.fold is None else r.fold, "status": "pending",
                       "seconds": "", "error": ""}
            for r in runs}
        self.metrics: list[str] = []  # metric columns, in order of first appearance

    def update(self, run_id: str, status: str, seconds: float | None = None,
               error: str = "", metrics: dict | None = None) -> None:
        row = self.rows[run_id]
        row.update(status=status, error=error.replace("\n", " "),
                   seconds="" if seconds is None else round(seconds, 2))
        for key in list(row):
            if key in self.metrics:
                del row[key]
        for key, value in (metrics or {}).items():
            if key not in self.metrics:
                self.metrics.append(key)
            row[key] = value

    def status(self, run_id: str) -> str:
        return self.rows[run_id]["status"]

    def columns(self) -> list[str]:
        return ["run", "cell", *self.factors, "seed", "fold", "status", "seconds", "error",
                *self.metrics]

    def save(self, out: Path) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns(), lineterminator="\n")
        writer.writeheader()
        for run in self.runs:
            writer.writerow(self.rows[run.run_id])
        text = buf.getvalue().encode()
        write_atomic(out / REGISTER, lambda f: f.write(text))


def read_register(path: Path, factors=()) -> list[dict]:
    """The rows of a ``runs.csv``, numbers parsed (metrics float, seed/fold int); the
    ``factors`` columns stay text (a level named "4" is not the number 4)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no run register (is this an experiment directory?)") \
            from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or any(c not in reader.fieldnames for c in FIXED):
        raise ConfigError(f"{path}: not a run register (its header needs {list(FIXED)})")
    rows = []
    for i, row in enumerate(reader, start=2):
        if None in row or row.get("status") not in STATUSES:
            raise ConfigError(f"{path}:{i}: malformed register row")
        rows.append({k: v if k in factors else _parse(k, v) for k, v in row.items()})
    return rows


def _parse(key: str, value: str):
    if key in ("seed", "fold"):
        return int(value) if value != "" else None
    if key in ("run", "cell", "status", "error") or value == "":
        return value
    if value in ("True", "False"):
        return value == "True"
    try:
        return float(value)
    except ValueError:
        return value

