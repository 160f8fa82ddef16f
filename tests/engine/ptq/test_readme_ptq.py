"""Every command of the README's PTQ example runs, in order, and does what it says."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def example_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- ptq-example -->\n```bash\n(.*?)```", text, re.S).group(1)
    block = block.replace("\\\n", " ")
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_readme_ptq_example(tmp_path):
    pytest.importorskip("torch")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    cmds = example_commands()
    assert len(cmds) == 5
    for cmd in cmds:
        cmd = cmd.replace("benchmarks/", f"{ROOT}/benchmarks/")
        if cmd.startswith("edgeq "):
            cmd = f"{sys.executable} -m edgeq.cli " + cmd[len("edgeq "):]
        elif cmd.startswith("python "):
            cmd = f"{sys.executable} " + cmd[len("python "):]
        done = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{cmd}\n{done.stderr[-2000:]}"
    d = tmp_path / "digits"
    assert {"memory.png", "macs.png", "digits_k4.onnx", "digits_k4.json"} <= \
        {p.name for p in d.iterdir()}
    assert (d / "explore" / "report.md").read_text().startswith("# PTQ exploration")
