"""benchmarks/landmarks_deployed.py on the session's tiny landmarks demo run: the C
program's own points (post-processing on the target) give the engine's NME."""

import importlib.util
import json
import sys
from pathlib import Path

from tests.landmarks_demo import require_tool

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "landmarks_deployed.py"


def _load():
    spec = importlib.util.spec_from_file_location("landmarks_deployed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["landmarks_deployed"] = module
    spec.loader.exec_module(module)
    return module


def test_cortex_a72_nme_is_the_engine_nme(landmark_demo, tmp_path, capsys):
    # the build (batch = all test faces, with the post-processing) is the one
    # tests/engine/backends/c/test_landmarks_post.py makes: one cache entry per session
    require_tool("aarch64-linux-gnu-gcc", "qemu-aarch64")
    run, summary = landmark_demo
    out = tmp_path / "r.json"
    assert _load().main([str(run), "--targets", "cortex-a72", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    a72 = data["targets"]["cortex-a72"]
    assert a72["command"] == ["qemu-aarch64", "-cpu", "cortex-a72"]
    assert a72["bit_exact"] is True
    assert data["engine"]["nme"] == summary["engine_nme"]  # the pipeline's own figure
    for key in ("nme", "nme_yaw_0_30", "nme_yaw_30_60", "nme_yaw_60_90", "nme_bins_mean"):
        # points equal the Python ones within 2e-5 px on a 32 px crop
        assert abs(a72[key] - summary[f"engine_{key}"]) < 1e-3
    assert data["fp_nme"] == summary["fp_nme"] and data["n_test"] == 24
    assert data["baselines"]["mean"]["nme"] == summary["baseline_mean_nme"]
    assert "cortex-a72 (qemu)" in capsys.readouterr().out


def test_not_a_run_directory_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert _load().main([str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "config.json" in err and err.count("\n") == 1
    assert not out.exists()
