"""Runs the README's third-party benchmark command (a quick run) and checks its JSON."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]


def test_readme_ort_models_command(tmp_path):
    pytest.importorskip("onnxruntime.quantization")
    pytest.importorskip("torch")
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- readme-thirdparty -->\n```bash\n(.*?)```", text, re.S).group(1)
    (cmd,) = [ln for ln in block.splitlines() if ln.strip()]
    argv = [a if a != "OUT.json" else str(tmp_path / "out.json") for a in shlex.split(cmd)]
    assert argv[0] == "python"
    proc = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads((tmp_path / "out.json").read_text())["rows"]
    assert row["batch"] == 1 and row["exact"] == 1.0 and row["values"] == 62
    assert row["c_ms"] > 0 and row["ort_ms"] > 0
