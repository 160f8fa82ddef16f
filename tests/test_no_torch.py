"""The deployment side must work without torch (DESIGN §5): importing it pulls none in."""

import subprocess
import sys

IMPORTS = """
import sys
import edgeq.engine, edgeq.numerics, edgeq.cli
import edgeq.engine.analysis, edgeq.engine.tensor_io, edgeq.engine.demo
"""

RUN = """
import contextlib, io, onnx, sys
from edgeq.cli import main
from edgeq.engine.demo import build_model
onnx.save(build_model(0), sys.argv[1])
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["inspect", sys.argv[1]]) == 0
"""

REPORT = """
print(",".join(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))))
"""


def torch_modules_after(code: str, *argv: str) -> str:
    # a fresh interpreter: this test process may have imported torch for other tests
    cmd = [sys.executable, "-c", code + REPORT, *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_engine_numerics_cli_import_no_torch():
    assert torch_modules_after(IMPORTS) == ""


def test_loading_and_inspecting_a_model_imports_no_torch(tmp_path):
    assert torch_modules_after(IMPORTS + RUN, str(tmp_path / "m.onnx")) == ""
