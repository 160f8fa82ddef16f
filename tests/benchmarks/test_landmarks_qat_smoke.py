"""benchmarks/landmarks_qat.py at its smoke size: runs, writes JSON, prints the table."""

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "landmarks_qat.py"


def _load():
    spec = importlib.util.spec_from_file_location("landmarks_qat", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["landmarks_qat"] = module
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_every_row(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "results" / "landmarks_qat.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["complete"] is True
    rows = {(r["method"], r["bits"]): r for r in data["results"]}
    assert set(rows) == {("FP", 32), ("PACT", 8), ("PACT", 4), ("TQT", 8)}
    for r in rows.values():
        assert 0 < r["nme_mean"] < 100 and r["epoch_cpu_seconds"] > 0 and len(r["runs"]) == 1
    assert rows[("FP", 32)]["epoch_ratio_to_fp"] == 1.0
    assert 0 < data["baselines"]["oracle_pose"]["nme"] < data["baselines"]["mean"]["nme"]
    assert data["table"] in capsys.readouterr().out


def test_bad_width_is_a_one_line_error(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "x.json"
    assert bench.main(["--widths", "0.001", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "model.width" in err and not out.exists()
