"""`edgeq demo --task landmarks` end to end at a tiny size: one run, many checks."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from edgeq.cli import main
from edgeq.engine import load
from edgeq.lab import pipeline
from edgeq.lab.tasks import landmarks
from tests.landmarks_demo import require_tool

SUMMARY_KEYS = ("fp_nme", "fq_nme", "tq_nme", "engine_nme", "baseline_mean_nme",
                "baseline_oracle_pose_nme", "bit_exact", "fp_weight_bytes", "int_weight_bytes")
BINS = ("nme_yaw_0_30", "nme_yaw_30_60", "nme_yaw_60_90", "nme_bins_mean")


@pytest.fixture
def demo_run(landmark_demo):
    """The README's command, shrunk (tests/landmarks_demo.py): one run per session."""
    return landmark_demo


def test_summary_has_every_key_with_sane_values(demo_run, capsys):
    out, summary = demo_run
    for key in SUMMARY_KEYS:
        assert key in summary, key
    for stage in ("fp", "fq", "tq", "engine", "baseline_mean", "baseline_oracle_pose"):
        for b in BINS:
            assert 0 < summary[f"{stage}_{b}"] < 100, (stage, b)
        assert 0 < summary[f"{stage}_nme"] < 100
    assert summary["bit_exact"] is True and summary["dory_bit_exact"] is True
    assert summary["engine_nme"] == summary["tq_nme"]  # same integers -> same NME
    assert summary["int_weight_bytes"] < summary["fp_weight_bytes"] / 3  # 8-bit weights
    assert summary["baseline_oracle_pose_nme"] < summary["baseline_mean_nme"]
    assert summary["metric"] == "nme" and summary["higher_is_better"] is False


def test_deployed_c_program_is_bit_exact(demo_run):
    """The C program built by gcc ran on the test faces: same integers as TQ torch, so
    the same NME; the picture shows its points."""
    require_tool("gcc")
    out, summary = demo_run
    assert summary["deployed"] == "c:host"
    assert summary["deployed_bit_exact"] is True
    assert summary["deployed_nme"] == summary["tq_nme"] == summary["engine_nme"]
    for b in BINS:
        assert summary[f"deployed_{b}"] == summary[f"engine_{b}"]
    meta = json.loads((out / "landmarks_task.json").read_text())
    assert meta["picture_stage"] == "deployed"
    assert "same for the C program (host)" in (out / "table.txt").read_text()


def test_deployed_outputs_pads_the_last_batch(demo_run):
    """A batch size that does not divide the set (30 = 24 + 6): the program the demo
    built for batch 24 (a cache hit), the last batch padded, outputs unchanged."""
    require_tool("gcc")
    out, _ = demo_run
    x = np.random.default_rng(0).uniform(-1, 1, (30, 3, 32, 32)).astype(np.float32)
    want = pipeline.engine_outputs(out / "model_tq.onnx", x)
    got = pipeline.deployed_outputs(out / "model_tq.onnx", x, batch=24)
    assert got.shape == want.shape and np.array_equal(got, want)


def test_deployed_is_skipped_without_a_compiler(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert pipeline.deployed_outputs("never-read.onnx", np.zeros((1, 3, 32, 32))) is None
    assert "gcc" in pipeline.deployed_skip_reason()


def test_engine_output_is_tq_torch_bit_for_bit(demo_run):
    """Re-run the exported TQ file in the engine and compare with F2T of the saved FQ."""
    import torch

    from edgeq.lab.config import PipelineConfig
    from edgeq.lab.pipeline import FLOAT32_SIGNIFICAND, rebuild_fq
    from edgeq.lab.tasks import make_task
    from edgeq.train.f2t import f2t

    out, _ = demo_run
    config = PipelineConfig.load(out / "config.json")
    task = make_task(config)
    task.load(progress=False)
    x = task.inputs("test")
    tq = f2t(rebuild_fq(config, out / "fq_state.pt", task), x[:1],
             significant_bits=FLOAT32_SIGNIFICAND)
    engine = load(out / "model_tq.onnx")
    (got,) = engine.run({engine.inputs[0].name: x.numpy()}).values()
    with torch.no_grad():
        want = tq(tq.quantise_input(x)).numpy()
    assert np.array_equal(np.asarray(got), want)
    assert np.asarray(got).shape == (len(x), 62)


def test_whitening_json_is_the_training_statistics(demo_run):
    from edgeq.data.face3d import MorphableModel, ParamWhitening, generate

    out, _ = demo_run
    saved = ParamWhitening.load(out / "whitening.json")
    train = generate(64, size=32, seed=0, mm=MorphableModel.synthetic(0), progress=False)
    p = train.params.astype(np.float64)
    np.testing.assert_allclose(saved.mean, p.mean(0), rtol=1e-5, atol=1e-6)
    std = p.std(0)
    np.testing.assert_allclose(saved.std[std > 1e-6], std[std > 1e-6], rtol=1e-4)


def test_landmarks_png_is_a_picture_of_the_test_faces(demo_run):
    out, _ = demo_run
    data = (out / "landmarks.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (depth, colour) == (8, 2)  # 8-bit RGB
    faces = landmarks.PICTURE_FACES
    side = 32 * landmarks.PICTURE_SCALE + 4
    assert (width, height) == (faces * side, side)
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4:idat])[0]
    raw = zlib.decompress(data[idat + 4:idat + 4 + length])
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + 3 * width)[:, 1:]
    pixels = rows.reshape(height, width, 3)
    green = np.all(pixels == (0, 255, 0), axis=-1).sum()
    red = np.all(pixels == (255, 40, 40), axis=-1).sum()
    assert green > faces * 68 and red > faces * 20  # true and predicted points drawn


def test_f2t_report_on_a_landmarks_run(demo_run, capsys):
    out, _ = demo_run
    assert main(["f2t-report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "max LSB" in text and "samples 24" in text


def test_demo_rejects_an_unknown_task(capsys):
    assert main(["demo", "--task", "faces"]) == 2
