"""Runs every command of the README's `compile` example on the Dronet fixture."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgeq.engine.tensor_io import read_text_vector
from tests.readme import readme_commands, run_commands

ROOT = Path(__file__).resolve().parents[4]
DRONET = ROOT / "../shared/fixtures/quantlab/dronet"


def test_readme_compile_example(tmp_path, cross_toolchain):
    for name in ("DRONETV3_ql_integerized.onnx", "input.txt"):
        shutil.copy(DRONET / name, tmp_path / name)
    _, x = read_text_vector(DRONET / "input.txt")
    np.save(tmp_path / "input.npy", x.astype(np.uint8))
    commands = readme_commands("readme-compile")
    assert len(commands) == 6
    outputs = run_commands(commands, tmp_path)
    assert "arena 400000 bytes, lower bound 400000 bytes (ratio 1.000)" in outputs[0]
    assert outputs[1].startswith("latency_ms_median ")
    assert np.load(tmp_path / "output.npy").tolist() == [[435, 0]]  # written by the a72 run
    assert "435, 0" in outputs[4] and "435, 0" in outputs[5]
