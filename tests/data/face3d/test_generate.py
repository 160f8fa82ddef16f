"""The synthetic generator: determinism, shapes, ROI framing and self-occlusion."""

import numpy as np
import pytest

from edgeq.data.face3d import FaceSet, MorphableModel, generate
from edgeq.data.face3d.generate import generate_chunk


@pytest.fixture(scope="module")
def mm():
    return MorphableModel.synthetic()


@pytest.fixture(scope="module")
def faces(mm):
    return generate(300, size=64, seed=3, mm=mm, progress=False)


def test_model_shapes_and_layout(mm):
    assert mm.u.shape == (204, 1) and mm.w_shp.shape == (204, 40)
    assert mm.w_exp.shape == (204, 10)
    assert {a.dtype for a in (mm.u, mm.w_shp, mm.w_exp)} == {np.dtype(np.float32)}
    # x, y, z interleaved per point: reshape(3, -1, order='F') puts the chin (point 8)
    # lowest in y and the nose tip (30) foremost in z
    pts = mm.u.reshape(3, -1, order="F")
    assert np.argmin(pts[1]) == 8 and np.argmax(pts[2]) == 30
    again = MorphableModel.synthetic()
    assert np.array_equal(again.w_shp, mm.w_shp)
    assert not np.array_equal(MorphableModel.synthetic(seed=1).w_shp, mm.w_shp)


def test_shapes_and_dtypes(faces):
    assert len(faces) == 300 and faces.size == 64
    assert faces.images.shape == (300, 3, 64, 64) and faces.images.dtype == np.uint8
    assert faces.params.shape == (300, 62) and faces.params.dtype == np.float32
    assert faces.landmarks.shape == (300, 2, 68) and faces.boxes.shape == (300, 4)
    assert faces.yaw.shape == (300,)
    sub = faces.subset(np.arange(10, 20))
    assert isinstance(sub, FaceSet) and len(sub) == 10
    assert np.array_equal(sub.images, faces.images[10:20])


def test_deterministic_and_independent_of_n(mm, faces):
    # chunks of 256 are seeded by (seed, chunk): the same seed gives the same first chunk
    # whatever n, bit for bit; another seed gives other faces
    first = generate(256, size=64, seed=3, mm=mm, progress=False)
    assert np.array_equal(first.images, faces.images[:256])
    assert np.array_equal(first.params, faces.params[:256])
    other = generate(4, size=64, seed=4, mm=mm, progress=False)
    assert not np.array_equal(other.images, faces.images[:4])


def test_pose_ranges_cover_all_yaw_bins(faces):
    assert faces.yaw.min() >= -90 and faces.yaw.max() <= 90
    counts = np.histogram(np.abs(faces.yaw), [0, 30, 60, 90])[0]
    assert counts.min() > 60  # uniform yaw: about 100 per bin


def test_roi_rule_frames_the_landmarks(faces):
    # 3DDFA's ROI: a square of side sqrt(2) * max(w, h) around the landmarks; with
    # +-10% scale jitter and 4 px (of 120) shift, the box side is 64 / sqrt(2) / U(0.9,1.1)
    w = faces.boxes[:, 2] - faces.boxes[:, 0]
    h = faces.boxes[:, 3] - faces.boxes[:, 1]
    side = np.maximum(w, h)
    assert np.all(side > 64 / np.sqrt(2) / 1.11) and np.all(side < 64 / np.sqrt(2) / 0.89)
    centre = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
    assert np.abs(centre - 32).max() < 5 * 4 * 64 / 120  # within 5 sigma of the jitter
    assert abs(np.mean(centre) - 32) < 0.5


def test_cache_roundtrip(tmp_path, mm):
    a = generate(20, size=64, seed=5, mm=mm, progress=False, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    b = generate(20, size=64, seed=5, mm=mm, progress=False, cache_dir=tmp_path)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.yaw, b.yaw)


def test_faces_differ_from_background(faces):
    # the face region (landmark box) is not just more background: mean absolute
    # difference between the box interior and the image border is clearly positive
    img = faces.images.astype(float)
    diffs = []
    for i in range(50):
        x0, y0, x1, y1 = faces.boxes[i].astype(int)
        inner = img[i, :, y0 + 2:y1 - 2, x0 + 2:x1 - 2].mean((1, 2))
        border = np.concatenate([img[i, :, :2].reshape(3, -1), img[i, :, -2:].reshape(3, -1)],
                                1).mean(1)
        diffs.append(np.abs(inner - border).sum())
    assert np.median(diffs) > 20


def test_self_occlusion_hides_the_far_jaw(mm):
    # At |yaw| ~ 80 deg, the far half of the jaw contour (17 points, 0-16) lies behind the
    # head: the z-buffer holds a nearer surface at its pixel. The near half is visible.
    rng = np.random.default_rng(0)
    faces, depth = generate_chunk(48, 64, rng, mm, return_depth=True)
    from edgeq.data.face3d.model import reconstruct_vertices

    v = reconstruct_vertices(faces.params.astype(np.float64), mm)  # [N,3,68], z = depth
    lm = faces.landmarks
    hidden_far, hidden_near, n = 0, 0, 0
    for i in np.flatnonzero(np.abs(faces.yaw) > 70):
        cols = np.clip(np.rint(lm[i, 0]).astype(int), 0, 63)
        rows = np.clip(np.rint(lm[i, 1]).astype(int), 0, 63)
        hidden = depth[i, rows, cols] > v[i, 2] + 3.0  # a surface 3 units nearer covers it
        jaw_z = v[i, 2, :17]
        far = np.argsort(jaw_z)[:5]  # the five deepest jaw points
        near = np.argsort(jaw_z)[-5:]
        hidden_far += hidden[far].sum()
        hidden_near += hidden[near].sum()
        n += 5
    assert n >= 10
    assert hidden_far / n > 0.8 and hidden_near / n < 0.2


def test_bad_cache_file_is_named(tmp_path):
    from edgeq.errors import DatasetFileError

    with pytest.raises(DatasetFileError, match="missing.npz"):
        FaceSet.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DatasetFileError, match="junk.npz"):
        FaceSet.load(tmp_path / "junk.npz")
