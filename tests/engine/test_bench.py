"""``edgeq bench`` and the bound columns of ``edgeq inspect``, through the CLI.

The per-layer MACs are checked against hand counts of the concat net (DigitsConcatNet,
width 8, 1x8x8 input), not against the analyser that computes them.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.cli import main
from edgeq.engine.onnx.exporter import export_onnx
from tests.engine.passes.graphs import tq_graph

# hand counts per image: conv output elements x weights per output element
MACS = {
    "stem_2": 8 * 8 * 8 * (1 * 3 * 3),  # stem conv 1->8, 3x3, 8x8 out (fused name)
    "branch1_2": 8 * 8 * 8 * (8 * 1 * 1),
    "branch3_2": 8 * 8 * 8 * (8 * 3 * 3),
    "mix_2": 16 * 4 * 4 * (16 * 3 * 3),
    "fc": 10 * 16,
}


@pytest.fixture(scope="module")
def concat_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "concat.onnx"
    export_onnx(tq_graph("concat", significant_bits=24), path)
    return path


@pytest.fixture(scope="module")
def float_onnx(tmp_path_factory) -> Path:
    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("bench") / "float.onnx"
    onnx.save(model, path)
    return path


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _summary(out: str) -> tuple[float, float]:
    ms = float(re.search(r"latency \(median\): ([\d.e+-]+) ms", out).group(1))
    ips = float(re.search(r"throughput: ([\d.e+-]+) images/s", out).group(1))
    return ms, ips


def _layers(out: str) -> dict[str, list[str]]:
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s*\d+\s", line)]
    return {r[1]: r for r in rows}


def test_reference_bench_per_layer(capsys, concat_onnx):
    code, out, err = run_cli(capsys, "bench", concat_onnx, "--backend", "reference",
                             "--batch", "3", "--repeat", "2", "--per-layer")
    assert code == 0, err
    ms, ips = _summary(out)
    assert ips == pytest.approx(3e3 / ms, rel=0.01)
    rows = _layers(out)
    assert rows["stem_0"][2] == "Conv" and rows["stem_0"][4] == f"{MACS['stem_2']:,}"
    assert rows["fc"][4] == f"{MACS['fc']:,}"
    assert "RequantShift" in {r[2] for r in rows.values()}
    shares = [float(r[-1].rstrip("%")) for r in rows.values()]
    assert sum(shares) == pytest.approx(100, abs=0.5)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_c_bench_per_layer_reads_the_harness_table(capsys, concat_onnx):
    code, out, err = run_cli(capsys, "bench", concat_onnx, "--backend", "c", "--batch", "2",
                             "--repeat", "3", "--per-layer")
    assert code == 0, err
    ms, ips = _summary(out)
    assert ms > 0 and ips == pytest.approx(2e3 / ms, rel=0.01)
    rows = _layers(out)
    # the C program runs the fused graph: each conv + requant is one ConvRequant layer
    for name in ("stem_2", "branch1_2", "branch3_2", "mix_2"):
        assert rows[name][2] == "ConvRequant", rows[name]
        assert rows[name][4] == f"{MACS[name]:,}"  # per image, though the batch is 2
        us, gmacs = float(rows[name][3]), float(rows[name][5])
        # both columns are printed rounded (us to 0.1, GMAC/s to 0.01): bound the gap
        lo = MACS[name] * 2 / ((us + 0.05) * 1e3) - 0.006
        hi = MACS[name] * 2 / (max(us - 0.05, 1e-3) * 1e3) + 0.006
        assert lo <= gmacs <= hi, (name, us, gmacs)


def test_ort_bench_on_a_float_model(capsys, float_onnx):
    code, out, err = run_cli(capsys, "bench", float_onnx, "--backend", "ort", "--batch", "4",
                             "--threads", "1", "--repeat", "3")
    assert code == 0, err
    assert "backend ort, batch 4, threads 1, 3 runs" in out
    ms, ips = _summary(out)
    assert ips == pytest.approx(4e3 / ms, rel=0.01)


@pytest.mark.parametrize("argv,message", [
    (["--backend", "ort"], "onnxruntime cannot run"),  # the edgeq dialect's own ops
    (["--backend", "ort", "--per-layer"], "--per-layer needs --backend c or reference"),
    (["--batch", "0"], "--batch must be >= 1"),
    (["--backend", "reference", "--threads", "2"], "reference backend runs one"),
])
def test_bench_errors_are_one_line(capsys, concat_onnx, argv, message):
    code, out, err = run_cli(capsys, "bench", concat_onnx, *argv)
    assert code == 1 and message in err and err.count("\n") == 1 and err.startswith("error:")


def test_fixed_batch_model_refuses_another_batch(capsys, dronet_dir):
    code, _, err = run_cli(capsys, "bench", dronet_dir / "DRONETV3_ql_integerized.onnx",
                           "--backend", "reference", "--batch", "2")
    assert code == 1 and "fixed batch of 1; use --batch 1" in err


def test_inspect_shows_proven_accumulator_bounds(capsys, dronet_dir):
    code, out, _ = run_cli(capsys, "inspect", dronet_dir / "DRONETV3_ql_integerized.onnx")
    assert code == 0
    header = next(line for line in out.splitlines() if line.lstrip().startswith("#"))
    assert "acc bound" in header and header.split()[-1] == "MACs"
    first = next(line.split() for line in out.splitlines() if " Conv_0 " in line)
    # Conv_0: 5x5 weights on a u8 input, 2-pixel zero padding; the interval is the
    # prover's (checked against hand counts in tests/engine/passes/test_ranges.py), here
    # it must show with its width, before the MACs
    assert re.fullmatch(r"\[-\d+,\d+\]", first[-3]) and first[-2] == "int32"
    lo, hi = map(int, first[-3][1:-1].split(","))
    w = onnx.load(dronet_dir / "DRONETV3_ql_integerized.onnx").graph.initializer
    weight = next(numpy_helper.to_array(t) for t in w if t.name.endswith("PASS_0.weight"))
    # per output channel: the sum of positive weights x 255 (resp. negative) bounds it
    per_channel = weight.reshape(32, -1)
    assert hi == int(np.clip(per_channel, 0, None).sum(axis=1).max() * 255)
    assert lo == int(np.clip(per_channel, None, 0).sum(axis=1).min() * 255)
    rq = next(line.split() for line in out.splitlines() if " Mul_1_rqs " in line)
    assert rq[-1] == "int32" and rq[-2] == "int32"  # acc and rq widths, no MACs


def test_inspect_of_an_unprovable_graph_says_why(capsys, tmp_path):
    from tests.test_cli import int_add_model

    code, out, _ = run_cli(capsys, "inspect", int_add_model(tmp_path / "t.onnx"))
    assert code == 0 and "accumulator bounds: not proven" in out and "'add'" in out


def test_the_readme_bench_commands_run(capsys, concat_onnx, float_onnx):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    lines = [line.split("#")[0].split() for line in readme.splitlines()
             if line.startswith("edgeq bench ")
             and "--target" not in line]  # cortex-a72 costs: tests/engine/backends/armcl
    assert {"c", "reference", "ort"} <= {a[a.index("--backend") + 1] for a in lines}
    for argv in lines:
        backend = argv[argv.index("--backend") + 1]
        if backend == "c" and shutil.which("gcc") is None:
            continue
        model = float_onnx if backend == "ort" else concat_onnx
        argv = [str(model) if a == "MODEL.onnx" else a for a in argv[1:]]
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, (argv, err)
        assert "latency (median)" in out and "images/s" in out
        assert ("GMAC/s" in out) == ("--per-layer" in argv)
