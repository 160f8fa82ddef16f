"""Phase 2: sensitivities, groups, the greedy search within its budget, the report."""

import json

import numpy as np
import onnx
import pytest

from edgeq.cli import main
from edgeq.engine import load
from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.onnx import import_onnx
from edgeq.engine.ptq.calibration import calibrate
from edgeq.engine.ptq.explore import eval_set, explore
from edgeq.engine.ptq.plan import make_plan
from tests.engine.ptq.models import calib_arrays, small_cnn


@pytest.fixture(scope="module")
def result():
    g = import_onnx(small_cnn())
    cal = calibrate(g, calib_arrays(), 64, progress=False)
    ev = calib_arrays(150, seed=4)
    ev["labels"] = np.argmax(run_graph(g, ev)["logits"], axis=1)  # FP accuracy is 100 %
    res = explore(g, make_plan(g), cal, eval_set(g, ev, "eval"), (8, 6, 4),
                  ("dynamic", "kmeans"), max_drop=2.0)
    return g, res


def test_budget_is_met_and_memory_is_saved(result):
    _, res = result
    s = res["search"]
    assert res["fp_metric"] == 100.0
    assert 100.0 - s["score"]["metric"] <= 2.0
    # at least as small as the best uniform width that meets the budget
    ok = [b for b, r in res["groups"]["network"].items() if 100.0 - r["metric"] <= 2.0]
    uniform = res["groups"]["network"][min(ok)]["savings"]
    assert s["savings"]["weights"] + s["savings"]["activations"] >= \
        uniform["weights"] + uniform["activations"]
    # every accepted step met the budget; a rejected one did not
    for step in s["steps"]:
        assert (100.0 - step["metric"] <= 2.0) == step["accepted"]


def test_savings_are_hand_counted(result):
    _, res = result
    # all weights at 4 bits: 4/32 of the float32 storage, so 87.5 % saved
    assert res["groups"]["weights"][4]["savings"]["weights"] == pytest.approx(87.5)
    assert res["groups"]["weights"][4]["savings"]["activations"] == pytest.approx(0.0)
    # the float weight bits: 36 + 288 + 576 + 1280 weights at 32 bits
    assert res["memory_fp_bits"]["weights"] == 32 * (36 + 288 + 576 + 1280)


def test_one_at_a_time_is_less_harmful_than_everything(result):
    _, res = result
    net = res["groups"]["network"][4]["l2"]
    assert all(per[4]["l2"] < net for per in res["one_at_a_time"].values())


def test_cli_writes_the_report_directory(tmp_path, capsys):
    onnx.save(small_cnn(), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", **calib_arrays(32))
    out = tmp_path / "report"
    assert main(["explore", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "c.npz"),
                 "--bits", "8,4", "--max-l2", "0.5", "--out", str(out), "--quiet"]) == 0
    assert "Greedy search" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {"analysis.json", "exploration.json", "report.md", "best.json", "best.onnx",
            "sensitivity.png", "hist_conv1_w.png"} <= names
    data = json.loads((out / "exploration.json").read_text())
    assert data["final"]["exact"] is True and data["search"]["score"]["l2"] <= 0.5
    assert load(out / "best.onnx").graph.values["w1"].quant is not None
    # a second run refuses the existing directory, and no label means --max-l2 is needed
    assert main(["explore", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "c.npz"),
                 "--out", str(out), "--quiet"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["explore", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "c.npz"),
                 "--out", str(tmp_path / "r2"), "--quiet"]) == 1
    assert "--max-l2" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "m.onnx", "report"]
