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
