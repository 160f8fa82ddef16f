"""The landmark app: pre -> network -> post, and `edgeq landmarks`, on tiny ONNX models."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from edgeq.apps.landmarks import LandmarkApp, full_image_roi
from edgeq.cli import main
from edgeq.data.face3d import MorphableModel, ParamWhitening, generate
from edgeq.errors import ConfigError, EdgeqError

S = 64


def write_model(path, weight, bias, size=S):
    """x [1,3,S,S] -> GlobalAveragePool -> Flatten -> Gemm(W [62,3], b [62]) -> y [1,62]."""
    inits = [numpy_helper.from_array(np.asarray(weight, np.float32), "W"),
             numpy_helper.from_array(np.asarray(bias, np.float32), "b")]
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny3ddfa",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 62])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def landmarks_by_hand(params, mm, size):
    """3DDFA's reconstruction point by point: X_k from rows 3k..3k+2 of u + W a, then
    v = P X_k + t, x = v0 - 1, y = 120 - v1, scaled from the 120 frame to the crop."""
    p = [float(v) for v in params]
    out = np.zeros((2, 68))
    for k in range(68):
        X = [float(mm.u[3 * k + c, 0])
             + sum(float(mm.w_shp[3 * k + c, j]) * p[12 + j] for j in range(40))
             + sum(float(mm.w_exp[3 * k + c, j]) * p[52 + j] for j in range(10))
             for c in range(3)]
        v0 = p[0] * X[0] + p[1] * X[1] + p[2] * X[2] + p[3]
        v1 = p[4] * X[0] + p[5] * X[1] + p[6] * X[2] + p[7]
        out[:, k] = [(v0 - 1) * size / 120, (120 - v1) * size / 120]
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A generated face, the whitening, and a model that outputs that face's whitened
    parameters whatever the image (W = 0)."""
    d = tmp_path_factory.mktemp("app")
    mm = MorphableModel.synthetic()
    train = generate(256, size=S, seed=11, mm=mm, progress=False)
    wh = ParamWhitening.fit(train.params)
    wh.save(d / "whitening.json")
    face = train.subset(slice(7, 8))
    write_model(d / "const.onnx", np.zeros((62, 3)), wh.whiten(face.params)[0])
    Image.fromarray(face.images[0].transpose(1, 2, 0)).save(d / "face.png")
    return d, mm, wh, face


def test_postprocess_matches_independent_reconstruction(setup):
    d, mm, wh, face = setup
    app = LandmarkApp(d / "const.onnx")
    out = app.run_network(app.preprocess(face.images[0].transpose(1, 2, 0))[0])
    params = wh.mean.astype(np.float64) + out * wh.std
    expect = landmarks_by_hand(params, mm, S)
    np.testing.assert_allclose(app.postprocess(out), expect, atol=2e-3)
    # the generator's own ground truth for this face agrees too
    np.testing.assert_allclose(app.postprocess(out), face.landmarks[0], atol=2e-3)


def test_full_image_roi_is_identity_on_a_crop(setup):
    d, _, _, face = setup
    app = LandmarkApp(d / "const.onnx")
    pts = app(d / "face.png")  # no box: the image is the crop
    np.testing.assert_allclose(pts, face.landmarks[0], atol=2e-3)
    x, roi = app.preprocess(d / "face.png")
    np.testing.assert_allclose(roi, [0, 0, S, S])
    np.testing.assert_allclose(x[0], (face.images[0] - 127.5) / 128, atol=1e-6)


def test_detector_box_maps_points_back_to_the_image(setup):
    d, mm, wh, face = setup
    app = LandmarkApp(d / "const.onnx")
    big = np.zeros((300, 400, 3), np.uint8)
    box = (100, 80, 200, 180)  # mean size 100 -> ROI side 158, centre (150, 144)
    pts = app(big, box)
    crop_pts = face.landmarks[0].astype(np.float64)
    x0, y0 = round(150 - 79), round(144 - 79)  # the ROI rounded to whole pixels
    np.testing.assert_allclose(pts[0], crop_pts[0] * 158 / S + x0, atol=2e-3)
    np.testing.assert_allclose(pts[1], crop_pts[1] * 158 / S + y0, atol=2e-3)


def test_preprocess_feeds_the_normalised_crop(tmp_path, setup):
    d, _, _, _ = setup
    weight = np.zeros((62, 3))
    weight[0, 0], weight[1, 1], weight[2, 2] = 1, 1, 1
    write_model(tmp_path / "mean.onnx", weight, np.zeros(62))
    (tmp_path / "whitening.json").write_text((d / "whitening.json").read_text())
    app = LandmarkApp(tmp_path / "mean.onnx")
    img = np.empty((50, 80, 3), np.uint8)
    img[:] = [10, 128, 250]
    out = app.run_network(app.preprocess(img)[0])
    # full-image ROI: an 80 x 80 square centred on the 50-row image, zero-padded 15 rows
    # above and below; the crop mean is 50/80 of the colour plus 30/80 of black (0)
    for c, v in enumerate([10, 128, 250]):
        expect = (50 * (v - 127.5) + 30 * (0 - 127.5)) / 80 / 128
        assert out[c] == pytest.approx(expect, abs=0.02)
    np.testing.assert_allclose(full_image_roi(img.shape), [0, -15, 80, 65])


def test_app_errors(tmp_path, setup):
    d, _, _, _ = setup
    with pytest.raises(ConfigError, match="backend 'gpu'"):
        LandmarkApp(d / "const.onnx", backend="gpu")
    write_model(tmp_path / "m.onnx", np.zeros((62, 3)), np.zeros(62))
    with pytest.raises(ConfigError, match="whitening.json"):
        LandmarkApp(tmp_path / "m.onnx")  # no whitening.json beside it
    app = LandmarkApp(d / "const.onnx")
    for bad in ((1, 2, 3), (5, 5, 1, 9), ("a", 1, 2, 3), (0, 0, np.inf, 4)):
        with pytest.raises(EdgeqError, match="box"):
            app.preprocess(np.zeros((10, 10, 3), np.uint8), bad)


def cli(*args):
    return main(["landmarks", *map(str, args)])


def test_cli_writes_annotated_png(setup, tmp_path, capsys):
    d, _, _, face = setup
    out = tmp_path / "annotated.png"
    assert cli(d / "const.onnx", d / "face.png", "--out", out) == 0
    assert "wrote" in capsys.readouterr().out
    drawn = np.asarray(Image.open(out).convert("RGB"))
    assert drawn.shape == (S, S, 3)
    # a green dot at the first landmark
    x, y = np.rint(face.landmarks[0][:, 30]).astype(int)
    assert tuple(drawn[y, x]) in {(0, 255, 0), (0, 90, 0)}
    boxed = tmp_path / "boxed.png"
    assert cli(d / "const.onnx", d / "face.png", "--box", "10,10,50,50", "--out", boxed) == 0
    assert boxed.exists()


@pytest.mark.parametrize("args, message", [
    (["{d}/missing.png"], "missing.png"),
    (["{d}/garbage.png"], "garbage.png"),
    (["{d}/face.png", "--box", "1,2,3"], "box"),
    (["{d}/face.png", "--box", "30,30,10,50"], "box"),
    (["{d}/face.png", "--whitening", "{d}/nope.json"], "nope.json"),
])
def test_cli_bad_inputs(setup, tmp_path, capsys, args, message):
    d, _, _, _ = setup
    (d / "garbage.png").write_bytes(b"not a png")
    out = tmp_path / "o.png"
    args = [a.format(d=d) for a in args]
    assert cli(d / "const.onnx", *args, "--out", out) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_missing_model_and_out_folder(setup, tmp_path, capsys):
    d, _, _, _ = setup
    assert cli(tmp_path / "none.onnx", d / "face.png", "--out", tmp_path / "o.png") == 1
    assert "none.onnx" in capsys.readouterr().err
    assert cli(d / "const.onnx", d / "face.png", "--out", tmp_path / "no" / "o.png") == 1
    assert "does not exist" in capsys.readouterr().err


def test_app_imports_no_torch(setup, tmp_path):
    d, _, _, _ = setup
    code = (
        "import sys\n"
        "from edgeq.cli import main\n"
        f"assert main(['landmarks', r'{d / 'const.onnx'}', r'{d / 'face.png'}', "
        f"'--out', r'{tmp_path / 'x.png'}']) == 0\n"
        "print('TORCH:' + ','.join(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "TORCH:"


class _IntModel:
    """Stands in for an integer model: returns fixed int64 codes."""

    def __init__(self, codes, meta=None):
        self.codes, self.source = codes, "int.onnx"
        self.graph = type("G", (), {"meta": meta or {}})()

    def run(self, feeds):
        return {"y": self.codes}


def test_integer_output_is_dequantised_or_refused(setup):
    from edgeq.engine import TensorInfo
    from edgeq.engine.ir import QuantInfo
    from edgeq.errors import ModelFileError
    from edgeq.numerics import IntRange

    d, _, _, _ = setup
    app = LandmarkApp(d / "const.onnx")
    x = np.zeros((1, 3, S, S), np.float32)
    codes = np.arange(-31, 31, dtype=np.int64).reshape(1, 62)
    app.input = TensorInfo("x", (1, 3, S, S), np.dtype(np.float32), None)
    rng = IntRange(256, -128, 1)
    app.output = TensorInfo("y", (1, 62), np.dtype(np.int64), QuantInfo(rng, 0.25))
    app.model = _IntModel(codes)
    np.testing.assert_array_equal(app.run_network(x), codes[0] * 0.25)
    # an accumulator output: no QuantInfo, its eps in graph.meta (per channel here)
    app.output = TensorInfo("y", (1, 62), np.dtype(np.int64), None)
    per_channel = [0.5] * 31 + [0.125] * 31
    app.model = _IntModel(codes, {"eps": {"y": per_channel}})
    np.testing.assert_array_equal(app.run_network(x), codes[0] * np.array(per_channel))
    app.model = _IntModel(codes)
    with pytest.raises(ModelFileError, match="int.onnx.*'y' carries no eps"):
        app.run_network(x)
