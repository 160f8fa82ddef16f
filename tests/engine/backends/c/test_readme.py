"""Runs every command of the README's `compile` example on the Dronet fixture."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgeq.engine.tensor_io import read_text_vector

ROOT = Path(__file__).resolve().parents[4]
DRONET = ROOT / "../shared/fixtures/quantlab/dronet"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- readme-compile -->\n```bash\n(.*?)```", text, re.S).group(1)
    return [ln.split("  #")[0].strip() for ln in block.splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def test_readme_compile_example(tmp_path, cross_toolchain):
    for name in ("DRONETV3_ql_integerized.onnx", "input.txt"):
        shutil.copy(DRONET / name, tmp_path / name)
    _, x = read_text_vector(DRONET / "input.txt")
    np.save(tmp_path / "input.npy", x.astype(np.uint8))
    commands = readme_commands()
    assert len(commands) == 6
    outputs = []
    for cmd in commands:
        argv = shlex.split(cmd)
        if argv[0] == "edgeq":
            argv = [sys.executable, "-m", "edgeq.cli", *argv[1:]]
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, (cmd, proc.stderr)
        outputs.append(proc.stdout)
    assert "arena 400000 bytes, lower bound 400000 bytes (ratio 1.000)" in outputs[0]
    assert outputs[1].startswith("latency_ms_median ")
    assert np.load(tmp_path / "output.npy").tolist() == [[435, 0]]  # written by the a72 run
    assert "435, 0" in outputs[4] and "435, 0" in outputs[5]
