"""benchmarks/training_features.py at its smoke size: runs, writes JSON, prints the table."""

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "training_features.py"


def test_quick_run_times_every_feature_of_both_phases(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("training_features", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["training_features"] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "training_features.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = {(r["phase"], r["feature"]): r for r in data["rows"]}
    assert set(rows) == {(p, f) for p in ("fp", "qat") for f in bench.FEATURES}
    assert all(r["epoch_seconds"] > 0 for r in rows.values())
    assert rows[("fp", "off")]["ratio_to_off"] == rows[("qat", "off")]["cpu_ratio_to_off"] == 1.0
    assert data["checkpoint_bytes"] > 4 * 10000  # the digits CNN's weights, at least
    assert "checkpoint save" in capsys.readouterr().out
