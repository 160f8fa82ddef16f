"""`edgeq landmarks` on the files a real (tiny) `edgeq demo --task landmarks` run wrote:
the integer model_tq.onnx now carries its output ε, so the app reads it (issue 9)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeq.apps.landmarks import LandmarkApp, run_cli
from edgeq.cli import main
from edgeq.data.face3d import MorphableModel, ParamWhitening, generate
from tests.apps.test_landmarks_app import landmarks_by_hand
from tests.landmarks_demo import TINY_SIZE, require_tool

C_POINT_ATOL = 2e-5  # px: C vs Python post-processing, ≤ 1-2 float32 ulps of a 32 px crop


@pytest.fixture(scope="module")
def face(landmark_demo, tmp_path_factory):
    """A face the network never saw, as a PNG crop."""
    d = tmp_path_factory.mktemp("face")
    f = generate(1, size=TINY_SIZE, seed=12345, progress=False)
    Image.fromarray(f.images[0].transpose(1, 2, 0)).save(d / "face.png")
    return d / "face.png"


def by_hand(out62, eps, wh, mm, size):
    """De-whitening (float64), then 3DDFA's reconstruction point by point."""
    p = [float(o) * float(e) * float(s) + float(m)
         for o, e, s, m in zip(out62, np.broadcast_to(eps, (62,)), wh.std, wh.mean, strict=True)]
    return landmarks_by_hand(p, mm, size)


def test_cli_on_the_demo_tq_model(landmark_demo, face, tmp_path, capsys):
    run, _ = landmark_demo
    out = tmp_path / "a.png"
    assert main(["landmarks", str(run / "model_tq.onnx"), str(face), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert Image.open(out).size == (TINY_SIZE, TINY_SIZE)


def test_tq_points_are_the_integer_outputs_dewhitened(landmark_demo, face):
    """eps (from the file) x the engine's integers, de-whitened and reconstructed by hand."""
    from edgeq.engine import load

    run, _ = landmark_demo
    app = LandmarkApp(run / "model_tq.onnx")
    x, _ = app.preprocess(face)
    model = load(run / "model_tq.onnx")
    (y,) = model.run({model.inputs[0].name: x}).values()
    assert np.issubdtype(y.dtype, np.integer)
    eps = np.asarray(model.graph.meta["eps"][model.outputs[0].name], np.float64)
    want = by_hand(y[0], eps, ParamWhitening.load(run / "whitening.json"),
                   MorphableModel.synthetic(), TINY_SIZE)
    np.testing.assert_allclose(app(face), want, atol=1e-3)  # float32 de-whitening


def test_tq_points_match_the_float_models(landmark_demo, face, tmp_path):
    """Same 68 points as the FQ float graph (same weights: quantisation error only) and,
    more loosely, as the FP model (quantisation plus one QAT epoch)."""
    run, _ = landmark_demo
    tq = run_cli(str(run / "model_tq.onnx"), str(face), str(tmp_path / "tq.png"))
    wh = str(run / "whitening.json")
    fq = run_cli(str(run / "model_fq.onnx"), str(face), str(tmp_path / "fq.png"), whitening=wh)
    fp = run_cli(str(run / "model_fp.onnx"), str(face), str(tmp_path / "fp.png"), whitening=wh)
    assert np.abs(tq - fq).max() < 0.25  # px of a 32 px crop
    assert np.abs(tq - fp).max() < 1.5


@pytest.mark.parametrize("box", [None, "3,5,27,30"])
def test_c_backend_gives_the_same_points(landmark_demo, face, tmp_path, box):
    """--backend c: the network and the post-processing run in the generated C program."""
    require_tool("gcc")
    run, _ = landmark_demo
    model = str(run / "model_tq.onnx")
    ref = run_cli(model, str(face), str(tmp_path / "r.png"), box=box)
    got = run_cli(model, str(face), str(tmp_path / "c.png"), box=box, backend="c")
    np.testing.assert_allclose(got, ref, rtol=0, atol=C_POINT_ATOL)
    args = ["landmarks", model, str(face), "--out", str(tmp_path / "c2.png"), "--backend", "c"]
    assert main(args) == 0
