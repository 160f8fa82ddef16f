"""Every command of the README's PTQ example runs, in order, and does what it says.

The commands run in this process (``edgeq.cli.main`` and the benchmark's ``main``) on the
files they name, in a temporary directory: the same argument parsing and code as the
shell commands, without five interpreter start-ups."""

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def example_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- ptq-example -->\n```bash\n(.*?)```", text, re.S).group(1)
    block = block.replace("\\\n", " ")
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def _benchmark_main():
    spec = importlib.util.spec_from_file_location("ptq_bench", ROOT / "benchmarks" / "ptq.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ptq_bench"] = module
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.slow
def test_readme_ptq_example(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from edgeq.cli import main

    monkeypatch.chdir(tmp_path)
    cmds = example_commands()
    assert len(cmds) == 5
    for cmd in cmds:
        argv = shlex.split(cmd)
        if argv[0] == "edgeq":
            code = main(argv[1:])
        else:
            assert argv[:2] == ["python", "benchmarks/ptq.py"], cmd
            code = _benchmark_main()(argv[2:])
        assert code == 0, f"{cmd}\n{capsys.readouterr().err[-2000:]}"
    d = tmp_path / "digits"
    assert {"memory.png", "macs.png", "digits_k4.onnx", "digits_k4.json"} <= \
        {p.name for p in d.iterdir()}
    assert (d / "explore" / "report.md").read_text().startswith("# PTQ exploration")
    out = capsys.readouterr().out
    assert "integer" in out and "wrote digits/explore/" in out
