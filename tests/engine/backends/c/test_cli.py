"""`edgeq compile`, `edgeq run --backend` and the bad-input paths of the C backend."""

from __future__ import annotations

import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeq.cli import main
from edgeq.engine.backends.c import compile_model, project
from edgeq.engine.ir import Graph, Node, QuantInfo, Value
from edgeq.engine.tensor_io import read_text_vector
from edgeq.errors import BackendError, BuildError, RangeError
from edgeq.numerics import IntRange

DRONET = "../shared/fixtures/quantlab/dronet/"
MODEL = DRONET + "DRONETV3_ql_integerized.onnx"


@pytest.fixture(scope="module")
def dronet_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "dronet"
    assert main(["compile", MODEL, "--out", str(out)]) == 0
    return out


def test_compile_writes_a_project_that_runs(dronet_dir, tmp_path, capsys):
    for name in ("model.h", "model.c", "weights.c", "main.c", "Makefile", "eq_conv.c", "run_model"):
        assert (dronet_dir / name).exists(), name
    _, x = read_text_vector(DRONET + "input.txt")
    np.save(tmp_path / "in.npy", x.astype(np.uint8))
    proc = subprocess.run([str(dronet_dir / "run_model"), str(tmp_path / "in.npy"),
                           str(tmp_path / "out.npy"), "--repeat", "3", "--per-layer"],
                          capture_output=True, text=True, check=True)
    assert np.load(tmp_path / "out.npy").tolist() == [[435, 0]]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("latency_ms_median ") and float(lines[0].split()[1]) > 0
    layers = [ln.split() for ln in lines[1:]]
    assert layers[0][:4] == ["layer", "0", "Mul_1_rqs", "ConvRequant"]
    assert all(len(parts) == 5 for parts in layers)


def test_compile_prints_arena_and_ratio(tmp_path, capsys):
    assert main(["compile", MODEL, "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "arena 400000 bytes, lower bound 400000 bytes (ratio 1.000)" in out


def test_compile_of_a_batch_prints_the_per_sample_arenas(tmp_path, capsys):
    """A digits ResNet (symbolic batch) at batch 3 on 2 threads runs sample by sample: two
    arenas of one sample's plan."""
    from edgeq.engine.onnx.exporter import export_onnx
    from tests.engine.passes.graphs import tq_graph

    graph = tq_graph("resnet", significant_bits=24)
    export_onnx(graph, tmp_path / "cnn.onnx")
    one = compile_model(graph, tmp_path / "one").plan.arena_bytes
    assert main(["compile", str(tmp_path / "cnn.onnx"), "--out", str(tmp_path / "d"),
                 "--batch", "3", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert (f"the batch runs sample by sample: arena {2 * one} bytes = 2 x {one} (one sample "
            "per thread)") in out


def test_non_empty_out_needs_force(dronet_dir, capsys):
    before = sorted(p.name for p in dronet_dir.iterdir())
    assert main(["compile", MODEL, "--out", str(dronet_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not empty" in err and "--force" in err
    assert err.count("\n") == 1
    assert sorted(p.name for p in dronet_dir.iterdir()) == before


def test_unwritable_out(tmp_path, capsys):
    assert main(["compile", MODEL, "--out", str(tmp_path / "no" / "such" / "dir")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_run_backend_c(capsys):
    assert main(["run", MODEL, "--input", DRONET + "input.txt", "--backend", "c"]) == 0
    assert "435, 0" in capsys.readouterr().out


def _softmax_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], name="sm")], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_op_no_selected_backend_supports(tmp_path, capsys):
    _softmax_model(tmp_path / "sm.onnx")
    assert main(["compile", str(tmp_path / "sm.onnx"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "node 'sm' (Softmax)" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_explicit_rule_c_cannot_honour(tmp_path):
    from edgeq.engine import load

    _softmax_model(tmp_path / "sm.onnx")
    with pytest.raises(BackendError, match="sm"):
        load(tmp_path / "sm.onnx", backend="default=reference,Softmax=c")


def _unbounded_conv_graph():
    """An int8 input with no declared range: the accumulator bound cannot be proven."""
    w = np.ones((2, 1, 1, 1), dtype=np.int8)
    values = {
        "x": Value("x", (1, 1, 2, 2), np.dtype(np.int8)),
        "w": Value("w", w.shape, np.dtype(np.int8), QuantInfo(IntRange.from_bits(8, True)), w),
        "y": Value("y", (1, 2, 2, 2), np.dtype(np.int64)),
    }
    node = Node("Conv", "conv", ["x", "w"], ["y"], {"kernel_shape": [1, 1]})
    return Graph([node], values, ["x"], ["y"])


def test_unprovable_accumulator_bound(tmp_path):
    with pytest.raises(RangeError, match="conv"):
        compile_model(_unbounded_conv_graph(), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_missing_compiler(tmp_path, monkeypatch):
    t = project.TARGETS["host"]
    monkeypatch.setitem(project.TARGETS, "host", project.Target("host", "no-such-gcc-9", t.cflags,
                                                                t.ldflags))
    with pytest.raises(BuildError, match="no-such-gcc-9.*not found"):
        compile_model(MODEL, tmp_path / "o")
    assert list(tmp_path.iterdir()) == []  # the temp build dir is gone too


def test_failed_build_shows_the_first_compiler_error(tmp_path, monkeypatch):
    t = project.TARGETS["host"]
    bad = project.Target("host", t.cc, t.cflags + " -include no_such_header.h", t.ldflags)
    monkeypatch.setitem(project.TARGETS, "host", bad)
    with pytest.raises(BuildError) as info:
        compile_model(MODEL, tmp_path / "o")
    msg = str(info.value)
    assert "no_such_header.h" in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []


def test_thread_count_out_of_range(tmp_path, capsys):
    assert main(["compile", MODEL, "--out", str(tmp_path / "o"), "--threads", "0"]) == 1
    err = capsys.readouterr().err
    assert "threads must be in [1, 16], got 0" in err and not (tmp_path / "o").exists()
