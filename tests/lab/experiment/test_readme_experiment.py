"""The README's experiment section: its design is valid as written (algorithm x bits on
digits, 3 seeds, 2 folds) and its commands run it, with one epoch per phase on a digits
subset in place of the README's settings, in one worker process (the README's
``--workers 2`` is exercised by tests/lab/experiment/test_runner.py)."""

from __future__ import annotations

import csv
import json
import re
import shlex

import edgeq.data
from edgeq.cli import main
from edgeq.lab.experiment.design import Design
from tests.conftest import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def _design_text() -> str:
    text = README.read_text()
    return re.search(r"<!-- readme-experiment-design -->\n```json design\n(.*?)```", text,
                     re.S).group(1)


def _commands() -> list[str]:
    text = README.read_text()
    block = re.search(r"<!-- readme-experiment -->\n```bash\n(.*?)```", text, re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("edgeq ")]


def test_the_readme_design_is_valid_as_written():
    design = Design.from_json(json.loads(_design_text()))
    assert list(design.factors) == ["algorithm", "bits"]
    assert design.seeds == (0, 1, 2) and design.cv.folds == 2
    runs = design.runs()
    assert len(runs) == 2 * 2 * 3 * 2
    assert {r.config["task"]["name"] for r in runs} == {"digits"}


def _small_splits(real):
    def load_small(seed=0, fractions=(0.6, 0.2, 0.2)):
        s = real(seed, fractions)
        return type(s)(s.x_train[:128], s.y_train[:128], s.x_val[:32], s.y_val[:32],
                       s.x_test[:64], s.y_test[:64])
    return load_small


def test_the_readme_commands_run_the_design(tmp_path, monkeypatch, capsys):
    data = json.loads(_design_text())
    data["base"]["training"].update(fp_epochs=1, qat_epochs=1)  # the only change
    (tmp_path / "design.json").write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(edgeq.data, "load_digits_splits",
                        _small_splits(edgeq.data.load_digits_splits))
    commands = _commands()
    assert [c.split()[1] for c in commands] == ["experiment", "experiment", "experiment-report"]
    for command in commands:
        argv = shlex.split(command.replace("--workers 2", "--workers 1"))[1:]
        assert main(argv + (["--quiet"] if argv[0] == "experiment" else [])) == 0, command
    out = tmp_path / data["output_dir"]
    with open(out / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and {r["status"] for r in rows} == {"done"}
    printed = capsys.readouterr().out
    # the README shows the report's table as the command prints it
    header = ("| algorithm | bits | runs | fp_accuracy | fq_accuracy | tq_accuracy | "
              "deployed_accuracy | cv_fq_accuracy |")
    assert header in printed and header in README.read_text()
    for name in ("report.md", "report.json", "report.html"):
        assert (out / name).is_file()
