"""benchmarks/landmarks_qat.py at its smoke size: runs, writes JSON, prints the table."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

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


def _file(path, seeds_setting, runs_by_row, first_seed=None, n_train=8000, baseline=20.0):
    """A result file as the benchmark writes it, with hand-chosen NME values."""
    settings = {"size": 64, "n_train": n_train, "n_test": 256, "fp_epochs": 4,
                "qat_epochs": 1, "batch_size": 64, "lr": 3e-3, "qat_lr": 5e-4, "threads": 1,
                "seeds": seeds_setting, "widths": [1.0]}
    if first_seed is not None:
        settings["first_seed"] = first_seed
    rows = [{"width": 1.0, "method": m, "bits": b,
             "runs": [{"nme": v, "nme_bins_mean": v + 1, "epoch_s": 10.0, "epoch_cpu_s": 2.0,
                       "epoch_ratio": 1.0 if m == "FP" else 1.5} for v in vals]}
            for (m, b), vals in runs_by_row.items()]
    data = {"settings": settings, "complete": False, "results": rows, "seconds": 5.0,
            "baselines": {"mean": {"nme": baseline}, "oracle_pose": {"nme": 5.0}},
            "table": "", "environment": {}}
    path.write_text(json.dumps(data))
    return path


def test_merge_pools_seeds_of_separate_processes(tmp_path, capsys):
    """Seed 0 from a cut 3-seed run (no recorded seeds) + seeds 1 and 2 run alone:
    mean and population std by hand over NME 6, 8, 10 -> 8 ± sqrt(8/3)."""
    bench = _load()
    rows = lambda *v: {("FP", 32): v, ("PACT", 8): [x - 1 for x in v]}  # noqa: E731
    a = _file(tmp_path / "a.json", 3, rows(6.0))
    b = _file(tmp_path / "b.json", 1, rows(8.0), first_seed=1)
    c = _file(tmp_path / "c.json", 1, rows(10.0), first_seed=2)
    out, table = tmp_path / "m.json", tmp_path / "t.txt"
    assert bench.main(["--merge", str(c), str(a), str(b), "--out", str(out),
                       "--table", str(table)]) == 0
    data = json.loads(out.read_text())
    fp, pact = data["results"]
    assert (fp["method"], pact["method"], pact["bits"]) == ("FP", "PACT", 8)
    assert [r["seed"] for r in fp["runs"]] == [0, 1, 2]
    assert fp["nme_mean"] == 8.0 and abs(fp["nme_std"] - (8 / 3) ** 0.5) < 1e-12
    assert pact["nme_mean"] == 7.0 and pact["nme_bins_mean_mean"] == 8.0
    assert data["complete"] is True and data["seconds"] == 15.0
    text = table.read_text()
    assert "8.00 ± 1.63" in text and "--n-train 8000" in text
    assert "width 1.0: seeds [0, 1, 2]; complete=True" in text
    assert data["table"] in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    ({"n_train": 4000}, "settings.n_train"),
    ({"baseline": 21.0}, "baselines differ"),
    ({"first_seed": 0}, "seed 0 is already in another file"),
])
def test_merge_refuses_files_that_do_not_belong_together(tmp_path, capsys, change, message):
    bench = _load()
    rows = {("FP", 32): [6.0]}
    a = _file(tmp_path / "a.json", 1, rows, first_seed=0)
    b = _file(tmp_path / "b.json", 1, rows, **{"first_seed": 1, **change})
    out = tmp_path / "m.json"
    assert bench.main(["--merge", str(a), str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "b.json" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_merge_names_a_missing_or_broken_file(tmp_path, capsys):
    bench = _load()
    (tmp_path / "bad.json").write_text("{")
    for name, message in (("none.json", "no such result file"), ("bad.json", "not a")):
        assert bench.main(["--merge", str(tmp_path / name), "--out",
                           str(tmp_path / "m.json")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and name in err and message in err
