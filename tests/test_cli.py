"""The edgeq command line: run, inspect, demo, exit codes and error messages."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.cli import main


def int_add_model(path: Path) -> Path:
    """y = x + [10, 20] on int64: an output whose values we know without running it."""
    const = numpy_helper.from_array(np.array([[10, 20]], np.int64), "c")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["y"], name="add")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1, 2])],
        initializer=[const],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def tiny(tmp_path) -> Path:
    return int_add_model(tmp_path / "tiny.onnx")


@pytest.fixture
def x_npy(tmp_path) -> Path:
    np.save(tmp_path / "x.npy", np.array([[1, 2]], np.int64))
    return tmp_path / "x.npy"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- run ------------------------------------------------------------------------------------


def test_run_prints_integer_values(capsys, tiny, x_npy):
    code, out, _ = run_cli(capsys, "run", tiny, "--input", f"x={x_npy}")
    assert code == 0
    assert "y: shape [1, 2] int64" in out
    assert "11, 22" in out


def test_format_values():
    from edgeq.cli import format_values

    assert format_values(np.array([[435.0, 0.0]])) == "435, 0"
    assert format_values(np.array([1234567.0, 0.25, -1e-7])) == "1234567, 0.25, -1e-07"
    assert format_values(np.arange(12), limit=3) == "0, 1, 2, ... (12 values)"


def test_run_text_vector_alone_takes_the_single_input(capsys, tmp_path, tiny):
    vec = tmp_path / "in.txt"
    vec.write_text("# input (shape [1, 2]),\n-5,\n0,\n")
    code, out, _ = run_cli(capsys, "run", tiny, "--input", vec)
    assert code == 0 and "5, 20" in out


def test_run_writes_npz(capsys, tmp_path, tiny, x_npy):
    out_file = tmp_path / "res.npz"
    code, _, _ = run_cli(capsys, "run", tiny, "-i", f"x={x_npy}", "--out", out_file)
    assert code == 0
    with np.load(out_file) as data:
        assert data["y"].tolist() == [[11, 22]]


def test_run_out_failure_leaves_nothing(capsys, tmp_path, tiny, x_npy):
    target = tmp_path / "adir"
    target.mkdir()  # renaming a file over a directory fails
    code, _, err = run_cli(capsys, "run", tiny, "-i", f"x={x_npy}", "--out", target)
    assert code == 1 and err.startswith("error: ") and "adir" in err
    assert list(target.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "tiny.onnx", "x.npy"]


def test_run_dronet_golden_output(capsys, dronet_dir, tmp_path):
    model = dronet_dir / "DRONETV3_ql_integerized.onnx"
    out_file = tmp_path / "dronet.npz"
    code, out, _ = run_cli(
        capsys,
        "run",
        model,
        "--input",
        dronet_dir / "input.txt",
        "--layout",
        "hwc",
        "--out",
        out_file,
    )
    assert code == 0
    assert "435, 0" in out  # output.txt of the fixture
    with np.load(out_file) as data:
        assert data["128"].tolist() == [[435, 0]]


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "not supplied"),  # missing input
        (["--input", "y={npy}"], "unknown input"),
        (["--input", "x={npy}", "--input", "x={npy}"], "twice"),
        (["--input", "x=missing.npy"], "no such file"),
    ],
)
def test_run_input_errors(capsys, tiny, x_npy, extra, message):
    argv = [a.format(npy=x_npy) for a in extra]
    code, out, err = run_cli(capsys, "run", tiny, *argv)
    assert code == 1
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1  # one line, no traceback


def test_run_wrong_shape(capsys, tmp_path, tiny):
    np.save(tmp_path / "big.npy", np.zeros((1, 3), np.int64))
    code, _, err = run_cli(capsys, "run", tiny, "-i", f"x={tmp_path / 'big.npy'}")
    assert code == 1 and "shape" in err


@pytest.mark.parametrize("content", [b"", b"not an onnx file at all"])
def test_bad_model_file(capsys, tmp_path, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    code, _, err = run_cli(capsys, "inspect", bad)
    assert code == 1 and err.startswith("error: ") and "bad.onnx" in err


def test_missing_model_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", tmp_path / "nope.onnx")
    assert code == 1 and "nope.onnx" in err


# -- inspect ---------------------------------------------------------------------------------------


def test_inspect_tiny(capsys, tiny):
    code, out, _ = run_cli(capsys, "inspect", tiny)
    assert code == 0
    row = next(line for line in out.splitlines() if " add " in line)
    # one Add on [1,2] int64: the constant is 2 x 8 bytes, the output too
    assert row.split() == ["0", "add", "Add", "[1,2]", "[1,2]", "int64", "int64", "16", "16"]


def test_inspect_dronet_shows_the_integer_ops(capsys, dronet_dir):
    code, out, _ = run_cli(capsys, "inspect", dronet_dir / "DRONETV3_ql_integerized.onnx")
    assert code == 0
    ops = [line.split()[2] for line in out.splitlines() if line[:3].strip().isdigit()]
    assert ops.count("Conv") == 10 and ops.count("RequantShift") == 10
    assert ops.count("HarmonisedAdd") == 3
    # the first conv: 32 output channels x 100 x 100 x a 5x5 single-channel kernel
    first = next(line for line in out.splitlines() if "Conv" in line)
    assert first.split()[-1] == f"{32 * 100 * 100 * 25:,}"


# -- usage -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [[], ["bogus"], ["run"], ["run", "m.onnx", "--layout", "nhwc"], ["inspect"]]
)
def test_usage_errors_exit_2(capsys, argv):
    assert main(argv) == 2


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "run" in capsys.readouterr().out


def test_subprocess_exit_codes_and_no_traceback(tmp_path):
    def cli(*args):
        cmd = [sys.executable, "-m", "edgeq.cli", *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    missing = cli("run", tmp_path / "missing.onnx")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr
    assert cli("frobnicate").returncode == 2


def test_signed_input_flag_for_quantlab_files(capsys, tmp_path):
    """A QuantLab/DORY file fed signed data: refused by default, accepted with the flag."""
    from onnx import helper

    from tests.engine.onnx.quantlab_builder import make_model

    adder = helper.make_node(
        "Add", ["a", "a"], ["y"], in1_mul=1, in1_add=0, in1_shift=0, in1_n_levels=256,
        in1_rq=0, in2_mul=1, in2_add=0, in2_shift=0, in2_n_levels=256, in2_rq=0, out_mul=1,
        out_add=0, out_shift=0, out_n_levels=256, out_rq=0, out_signed=1)
    path = tmp_path / "signed.onnx"
    path.write_bytes(make_model([adder], [], [("a", [3])], "y", [3], 13).SerializeToString())
    np.save(tmp_path / "a.npy", np.array([-100, 3, 100]))
    code, _, err = run_cli(capsys, "run", path, "-i", f"a={tmp_path / 'a.npy'}")
    assert code == 1 and "--signed-input" in err
    code, out, _ = run_cli(capsys, "run", path, "-i", f"a={tmp_path / 'a.npy'}", "--signed-input")
    assert code == 0 and "-128, 6, 127" in out  # 2a, clipped to the signed 8-bit output
