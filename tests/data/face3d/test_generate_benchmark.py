"""Smoke runs of the face3d benchmarks (generation speed; small-CNN learnability)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "face3d_generate.py"
TIMEOUT = 900  # wall seconds: a hang guard, generous for heavily shared machines


def test_benchmark_quick(tmp_path):
    out = tmp_path / "g.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "peer: JPEG decode" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [r["size"] for r in rows] == [64, 120]
    assert all(r["generate_per_s"] > 0 and r["jpeg_decode_per_s"] > 0 for r in rows)


def test_sanity_cnn_quick(tmp_path):
    script = SCRIPT.with_name("face3d_sanity_cnn.py")
    out = tmp_path / "s.json"
    done = subprocess.run([sys.executable, str(script), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "peer: mean parameters" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    # the oracle pose beats the mean-parameter baseline on the same test set
    oracle, mean = rows["peer: oracle pose, alpha=0"], rows["peer: mean parameters"]
    assert oracle["nme_bins_mean"] < mean["nme_bins_mean"]
