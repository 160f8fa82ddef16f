"""The README's marked command blocks, read and run as a user would type them."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(marker: str) -> list[str]:
    """The commands of the ```bash block after ``<!-- marker -->``, without comment lines
    and without trailing ``  # ...`` comments."""
    m = re.search(rf"<!-- {re.escape(marker)} -->\n```bash\n(.*?)```", README.read_text(), re.S)
    assert m is not None, f"README.md has no bash block marked {marker}"
    return [ln.split("  #")[0].strip() for ln in m.group(1).splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def run_commands(commands: list[str], cwd: Path) -> list[str]:
    """Run each command in ``cwd`` (``edgeq`` as this interpreter's ``-m edgeq.cli``),
    asserting exit 0; their standard outputs."""
    outputs = []
    for cmd in commands:
        argv = shlex.split(cmd)
        if argv[0] == "edgeq":
            argv = [sys.executable, "-m", "edgeq.cli", *argv[1:]]
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
        assert proc.returncode == 0, (cmd, proc.stderr[-2000:])
        outputs.append(proc.stdout)
    return outputs
