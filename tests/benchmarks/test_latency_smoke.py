"""Smoke run of benchmarks/latency.py at tiny size: every peer is timed in the same run,
the JSON is written, and (when gcc is there) the C output is checked bit-exact."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "latency.py"


def _load():
    spec = importlib.util.spec_from_file_location("latency_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["latency_bench"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_times_every_peer_and_writes_json(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "results" / "latency.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [(r["batch"], r["threads"]) for r in rows] == [(1, 1), (4, 1)]
    for r in rows:
        for peer in ("ORT int8", "ORT FP32", "torch FP32"):
            assert r[peer] > 0, peer
    printed = capsys.readouterr().out
    assert data["table"] in printed and "C/int8" in printed
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: no edgeq C column")
    assert all(r["edgeq C"] > 0 for r in rows)
    assert data["bit_exact"] == {"1": True, "4": True}
    layers = data["per_layer"]
    # the NCHW input goes NHWC (layout pass), then the first convolution
    assert layers[0]["op"] == "LayoutConvert" and not layers[0]["macs"]
    assert layers[1]["op"] == "ConvRequant" and layers[1]["macs"] > 0
    assert sum(row["share"] for row in layers) == pytest.approx(1.0, abs=1e-6)
    assert "bit-exact" in printed


def test_bad_repeat_exits_non_zero(tmp_path):
    bench = _load()
    assert bench.main(["--quick", "--repeat", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
