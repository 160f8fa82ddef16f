import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "qat_digits.py"


def _load():
    spec = importlib.util.spec_from_file_location("qat_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["qat_digits"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_results_and_prints_the_table(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "results" / "qat_digits.json"
    start = time.perf_counter()
    assert bench.main(["--quick", "--out", str(out)]) == 0
    assert time.perf_counter() - start < 40
    data = json.loads(out.read_text())
    rows = {(r["method"], r["bits"]): r for r in data["results"]}
    assert set(rows) >= {("FP", 32), ("torch.ao QAT (peer)", 8)}
    for algorithm in ("STE", "PACT", "TQT", "ANA", "INQ"):
        assert (algorithm, 2) in rows and "acc_mean" in rows[(algorithm, 2)]
    assert "unsupported" in rows[("INQ", 8)]  # 256 power-of-two levels do not fit int32
    assert rows[("FP", 32)]["acc_mean"] > 0.5  # far above chance (0.1) even when quick
    assert rows[("PACT", 8)]["acc_mean"] > 0.5
    steps = data["step_seconds"]
    assert {"fp", "torch_ao_qat_8", "edgeq_pact_8"} <= set(steps)
    assert all(v > 0 for v in steps.values())
    printed = capsys.readouterr().out
    assert data["table"] in printed and "x torch.ao" in printed


def test_bad_arguments_exit_non_zero(tmp_path):
    bench = _load()
    assert bench.main(["--quick", "--seeds", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(SystemExit):
        bench.main(["--bogus"])
