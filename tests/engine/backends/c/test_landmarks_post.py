"""3DDFA post-processing in the generated C program (kernels/eq_landmarks.c): equal to
the Python post-processing (edgeq.data.face3d) on the host and on cortex-a72 (qemu),
on the TQ model of a real tiny demo run (tests/landmarks_demo.py)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from edgeq.cli import main
from edgeq.data.face3d import MorphableModel, ParamWhitening, reconstruct_landmarks
from edgeq.data.face3d.loaders import crop_to_image
from edgeq.engine import load
from edgeq.engine.backends.c import compile_cached
from edgeq.engine.backends.c.landmarks import LandmarkPost, run_landmarks
from edgeq.errors import BuildError, ModelFileError
from tests.landmarks_demo import require_tool
from tests.readme import readme_commands, run_commands

POINT_ATOL = 2e-5  # px: float64 sums in another order, then float32 (≤ 1-2 ulps at 32 px)
ROI = (10.3, 20.7, 90.2, 100.5)  # rounded to (10, 21, 90, 100) by both sides


@pytest.fixture(scope="module")
def tq(landmark_demo):
    """The demo's TQ model, its whitening, the test faces (float) and the reference
    backend's outputs on them."""
    from edgeq.lab.config import PipelineConfig
    from edgeq.lab.tasks import make_task

    run, summary = landmark_demo
    model = load(run / "model_tq.onnx")
    task = make_task(PipelineConfig.load(run / "config.json"))
    task.load(progress=False)
    x = task.inputs("test").numpy()
    (ref,) = model.run({model.inputs[0].name: x}).values()
    return run, summary, model, ParamWhitening.load(run / "whitening.json"), x, ref, task


def python_points(model, wh, y, size, roi=None):
    eps = np.asarray(model.graph.meta["eps"][model.outputs[0].name], np.float64)
    pts = reconstruct_landmarks(wh.dewhiten(y.astype(np.float64) * eps),
                                MorphableModel.synthetic(), size)
    return pts if roi is None else np.stack([crop_to_image(p, roi, size) for p in pts])


def test_host_post_equals_python(tq):
    require_tool("gcc")
    _, _, model, wh, x, ref, _ = tq
    post = LandmarkPost.for_graph(model.graph, wh)
    cm = compile_cached(model.graph, "host", batch=1, post=post)  # the app's build
    for i in range(3):
        out, pts = run_landmarks(cm, x[i:i + 1])
        assert np.array_equal(out, ref[i:i + 1])
        np.testing.assert_allclose(pts, python_points(model, wh, ref[i:i + 1], 32),
                                   rtol=0, atol=POINT_ATOL)
        _, pts = run_landmarks(cm, x[i:i + 1], ROI)
        np.testing.assert_allclose(pts, python_points(model, wh, ref[i:i + 1], 32, ROI),
                                   rtol=0, atol=POINT_ATOL)


def test_cortex_a72_deploys_the_demo_model(cross_toolchain, tq):
    """The demo's TQ model on the target: every test face under qemu-aarch64 -cpu
    cortex-a72, bit for bit the reference's integers, so the NME is engine_nme; the
    points computed on the target equal the Python post-processing."""
    _, summary, model, wh, x, ref, task = tq
    post = LandmarkPost.for_graph(model.graph, wh)
    cm = compile_cached(model.graph, "cortex-a72", batch=len(x), post=post)
    assert cm.command()[:3] == ["qemu-aarch64", "-cpu", "cortex-a72"]
    out, pts = run_landmarks(cm, x)
    assert np.array_equal(out, ref)
    eps = np.asarray(model.graph.meta["eps"][model.outputs[0].name], np.float64)
    assert task.evaluate(out * eps, "test")["nme"] == summary["engine_nme"]
    np.testing.assert_allclose(pts, python_points(model, wh, ref, 32), rtol=0, atol=POINT_ATOL)


def test_compile_cli_with_the_landmark_task(tq, tmp_path, capsys):
    """The README's lines: `edgeq compile ... --task landmarks_3ddfa`, then run_model
    --landmarks (whitening.json found beside the model)."""
    require_tool("gcc")
    run, _, model, wh, x, ref, _ = tq
    out = tmp_path / "lm_c"
    assert main(["compile", str(run / "model_tq.onnx"), "--out", str(out),
                 "--task", "landmarks_3ddfa"]) == 0
    assert "--landmarks PTS.npy" in capsys.readouterr().out
    np.save(tmp_path / "x.npy", x[:1])
    subprocess.run([str(out / "run_model"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"),
                    "--landmarks", str(tmp_path / "p.npy")], check=True)
    pts = np.load(tmp_path / "p.npy")
    assert pts.shape == (1, 2, 68) and pts.dtype == np.float32
    np.testing.assert_allclose(pts, python_points(model, wh, ref[:1], 32), rtol=0,
                               atol=POINT_ATOL)
    assert "eq_landmarks_3ddfa" in (out / "post.c").read_text()
    assert "eq_landmarks_3ddfa(const eq_lm_model" in (out / "eq_landmarks.c").read_text()


def test_landmarks_flag_needs_a_post_processing(tq, tmp_path):
    require_tool("gcc")
    _, _, model, _, x, _, _ = tq
    cm = compile_cached(model.graph, "host", batch=len(x))  # the demo's build: no post
    with pytest.raises(BuildError, match="without a post-processing"):
        run_landmarks(cm, x)


def test_compile_task_errors(tq, tmp_path, capsys):
    run, _, model, _, _, _, _ = tq
    assert main(["compile", str(run / "model_tq.onnx"), "--out", str(tmp_path / "o"),
                 "--whitening", str(run / "whitening.json")]) != 0
    assert "--whitening needs --task" in capsys.readouterr().err
    assert main(["compile", str(run / "model_tq.onnx"), "--out", str(tmp_path / "o"),
                 "--task", "landmarks_3ddfa", "--whitening", str(tmp_path / "none.json")]) != 0
    assert "none.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    graph = model.graph.copy()
    graph.meta.pop("eps")
    with pytest.raises(ModelFileError, match="carries no eps"):
        LandmarkPost.for_graph(graph, ParamWhitening.load(run / "whitening.json"))


def test_readme_deploy_lines(cross_toolchain, tq, tmp_path):
    """The README's lines on the tiny demo's files (32 px instead of 64): the app with
    --backend c, the cortex-a72 build with the landmark task, run under qemu."""
    from PIL import Image

    run, _, model, wh, x, ref, task = tq
    shutil.copytree(run, tmp_path / "edgeq-demo-landmarks")
    Image.fromarray(task.faces["test"].images[0].transpose(1, 2, 0)).save(tmp_path / "face.png")
    np.save(tmp_path / "face.npy", x[:1])
    commands = readme_commands("readme-landmarks-deploy")
    assert len(commands) == 3
    run_commands(commands, tmp_path)
    assert (tmp_path / "face_c.png").is_file()
    assert np.array_equal(np.load(tmp_path / "params.npy"), ref[:1])
    np.testing.assert_allclose(np.load(tmp_path / "points.npy"),
                               python_points(model, wh, ref[:1], 32), rtol=0, atol=POINT_ATOL)
