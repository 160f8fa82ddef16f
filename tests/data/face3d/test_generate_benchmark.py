"""Smoke run of benchmarks/face3d_generate.py (the script quoted for generation speed)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "face3d_generate.py"


def test_benchmark_quick(tmp_path):
    out = tmp_path / "g.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "peer: JPEG decode" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["size"] for r in rows] == [64, 120]
    assert all(r["generate_per_s"] > 0 and r["jpeg_decode_per_s"] > 0 for r in rows)
