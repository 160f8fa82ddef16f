"""One tiny `edgeq demo --task landmarks` run per test session, shared by the pipeline,
app and C post-processing tests (registered in tests/conftest.py).

64 training faces at 32 px, width 0.25, one epoch per phase: the numbers are poor, the
files are real (model_fp/fq/tq.onnx, whitening.json, summary.json with the deployed C
figures when gcc is present). The C backend's build cache lives in a session tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

TINY_SIZE = 32
TINY_SIZES = {"n_train": 64, "n_val": 4, "n_test": 24}


def require_tool(*tools: str) -> None:
    """Skip (with the reason) when a tool is missing; fail under CI=true."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        reason = f"{', '.join(missing)} not found on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def landmark_demo(tmp_path_factory, build_cache):
    """``(run directory, summary dict)`` of the shrunk README command."""
    from edgeq.cli import main
    from edgeq.lab.tasks import landmarks

    out = tmp_path_factory.mktemp("lm") / "demo"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(landmarks, "DEMO_SIZES", TINY_SIZES)
        mp.setattr(landmarks, "DEMO_MODEL", {"width": 0.25, "input_size": TINY_SIZE})
        mp.setattr(landmarks, "DEMO_TRAINING", {"fp_epochs": 1, "qat_epochs": 1,
                                                "schedule": "onecycle"})
        code = main(["demo", "--task", "landmarks", "--out", str(out), "--quiet"])
    assert code == 0
    yield out, json.loads((out / "summary.json").read_text())
