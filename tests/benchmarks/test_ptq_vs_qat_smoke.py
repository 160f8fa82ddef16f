"""The README's PTQ-vs-QAT command at tiny settings: both tasks, PTQ and QAT rows from
the same FP network, the table, JSON and plot written, and the deployed (C) integers
equal to the reference backend's."""

import importlib.util
import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "ptq_vs_qat.py"


def _load():
    spec = importlib.util.spec_from_file_location("ptq_vs_qat", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ptq_vs_qat"] = module
    spec.loader.exec_module(module)
    return module


def _readme_command() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- ptq-vs-qat -->\n```bash\n(.*?)```", text, re.S).group(1)
    (line,) = [x.split("#")[0].strip() for x in block.splitlines() if x.strip()]
    return shlex.split(line)


@pytest.mark.slow
def test_readme_command_writes_table_json_and_plot(tmp_path, monkeypatch, capsys):
    argv = _readme_command()
    assert argv[:2] == ["python", "benchmarks/ptq_vs_qat.py"] and "--quick" in argv
    monkeypatch.chdir(tmp_path)
    assert _load().main(argv[2:]) == 0
    out = tmp_path / argv[argv.index("--out-dir") + 1]
    data = json.loads((out / "ptq_vs_qat.json").read_text())
    assert (out / "ptq_vs_qat.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "ptq_vs_qat.md").read_text()
    assert md == data["table"] and md in capsys.readouterr().out
    for task, metric in (("digits", "accuracy"), ("landmarks", "nme")):
        res = data["results"][task]
        assert res["metric"] == metric
        fams = {(r["family"], r["method"], r["bits"]) for r in res["rows"]}
        assert {("FP", "FP32", 32), ("PTQ", "kmeans", 4), ("PTQ", "dynamic", 8),
                ("QAT", "PACT", 8), ("QAT", "TQT", 4)} <= fams
        fp = res["rows"][0]
        for r in res["rows"][1:]:
            assert 0 < r["weight_bytes"] < fp["weight_bytes"]  # integer weights are smaller
            assert r["act_bytes"] > 0
            if r["family"] == "QAT":
                assert r["torch_engine_exact"] is True
            if shutil.which("gcc"):
                assert r["deployed_exact"] is True, r
        ptq4 = {r["method"]: r for r in res["rows"] if r["family"] == "PTQ" and r["bits"] == 4}
        # 4-bit codebooks are stored as 4-bit indices: no more than 4-bit fixed point
        assert ptq4["kmeans"]["weight_bytes"] <= ptq4["dynamic"]["weight_bytes"]
        assert f"### {task}" in md


def _rows(metric_fp: float) -> list[dict]:
    return [
        {"family": "FP", "method": "FP32", "bits": 32, "metric": metric_fp,
         "weight_bytes": 40_000, "act_bytes": 12_000},
        {"family": "PTQ", "method": "dynamic", "bits": 8, "metric": metric_fp - 0.25,
         "weight_bytes": 10_100, "act_bytes": 3_000, "deployed_exact": True},
        {"family": "PTQ", "method": "kmeans", "bits": 4, "metric": metric_fp - 1.5,
         "weight_bytes": 5_050, "act_bytes": 3_000, "deployed_exact": None},
        {"family": "QAT", "method": "TQT", "bits": 4, "metric": metric_fp - 0.5,
         "weight_bytes": 5_300, "act_bytes": 1_500, "torch_engine_exact": True,
         "deployed_exact": False},
    ]


def test_table_json_and_plot_writer(tmp_path):
    """The writer alone, on a tiny hand-made result (the full run is slow-marked above)."""
    module = _load()
    results = {
        "digits": {"metric": "accuracy", "label": "accuracy %", "higher_is_better": True,
                   "rows": _rows(97.5)},
        "landmarks": {"metric": "nme", "label": "NME %", "higher_is_better": False,
                      "rows": _rows(11.25)},
    }
    md = module.write_results(results, tmp_path / "out", {"digits": {}}, True, 1.5)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == \
        ["ptq_vs_qat.json", "ptq_vs_qat.md", "ptq_vs_qat.png"]  # no temporary left over
    assert (out / "ptq_vs_qat.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "ptq_vs_qat.md").read_text() == md
    data = json.loads((out / "ptq_vs_qat.json").read_text())
    assert data["table"] == md and data["results"] == results and data["seconds"] == 1.5
    lines = md.splitlines()
    assert "### digits (accuracy %, higher is better)" in lines
    assert "### landmarks (NME %, lower is better)" in lines
    # one table row per result row, numbers as given, bit-exactness spelled out
    assert "| FP | FP32 | 32 | 97.50 | 40,000 | 12,000 | — |" in lines
    assert "| PTQ | dynamic | 8 | 97.25 | 10,100 | 3,000 | yes |" in lines
    assert "| PTQ | kmeans | 4 | 9.75 | 5,050 | 3,000 | n/a |" in lines
    assert "| QAT | TQT | 4 | 10.75 | 5,300 | 1,500 | NO |" in lines
    assert sum(line.startswith("| ") and "---" not in line for line in lines) == 2 * (1 + 4)


def test_merge_of_runs_per_task(tmp_path, capsys):
    module = _load()
    one = {"metric": "accuracy", "label": "accuracy %", "higher_is_better": True,
           "rows": _rows(97.5)}
    two = {"metric": "nme", "label": "NME %", "higher_is_better": False, "rows": _rows(11.25)}
    module.write_results({"digits": one}, tmp_path / "a", {"digits": {"x": 1}}, False, 3.0)
    module.write_results({"landmarks": two}, tmp_path / "b", {"landmarks": {"y": 2}}, False, 5.0)
    assert module.main(["--merge", str(tmp_path / "a"), str(tmp_path / "b"),
                        "--out-dir", str(tmp_path / "m")]) == 0
    data = json.loads((tmp_path / "m" / "ptq_vs_qat.json").read_text())
    assert list(data["results"]) == ["digits", "landmarks"]
    assert data["settings"] == {"digits": {"x": 1}, "landmarks": {"y": 2}}
    assert data["seconds"] == 5.0 and data["table"] in capsys.readouterr().out
    with pytest.raises(SystemExit, match="task 'digits' is in two runs"):
        module.merge([tmp_path / "a", tmp_path / "m"], tmp_path / "n")
