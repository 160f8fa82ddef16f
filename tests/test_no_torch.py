"""The deployment side must work without torch (DESIGN §5): importing it pulls none in."""

import subprocess
import sys

IMPORTS = """
import sys
import edgeq.engine, edgeq.numerics, edgeq.cli
import edgeq.engine.analysis, edgeq.engine.tensor_io, edgeq.engine.onnx.exporter
"""

RUN = """
import contextlib, io, numpy as np, onnx, sys
from onnx import TensorProto, helper, numpy_helper
from edgeq.cli import main
w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
    [1, 1, 5, 5])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), sys.argv[1])
np.save(sys.argv[2], np.ones((1, 1, 5, 5), np.float32))
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["inspect", sys.argv[1]]) == 0
    assert main(["run", sys.argv[1], "--input", "x=" + sys.argv[2]]) == 0
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
    args = str(tmp_path / "m.onnx"), str(tmp_path / "x.npy")
    assert torch_modules_after(IMPORTS + RUN, *args) == ""
