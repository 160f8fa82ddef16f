"""Real-format loaders on fixtures written here in the real formats, and 3DDFA's ROI crop."""

import pickle

import numpy as np
import pytest
from scipy.io import savemat

from edgeq.data.face3d.loaders import (
    crop_roi,
    crop_to_image,
    landmarks_to_crop,
    load_3ddfa_list,
    load_300wlp_mat,
    load_300wlp_pts_mat,
    load_aflw2000_mat,
    load_whitening_pkl,
    read_image,
    read_pts,
    resize_bilinear,
    roi_from_box,
    roi_from_landmarks,
)
from edgeq.errors import DatasetFileError

RNG = np.random.default_rng(0)
PTS = RNG.uniform(50, 400, (2, 68))


def pose_para(pitch_deg, yaw_deg, roll_deg):
    return np.array([[np.radians(pitch_deg), np.radians(yaw_deg), np.radians(roll_deg),
                      220.0, 240.0, 10.0, 0.0012]])


@pytest.fixture()
def lp_mat(tmp_path):
    path = tmp_path / "AFW_134212_1_0.mat"
    savemat(path, {"pt2d": PTS, "Pose_Para": pose_para(-10, 45, 5),
                   "Shape_Para": RNG.normal(size=(199, 1)), "Exp_Para": RNG.normal(size=(29, 1)),
                   "roi": np.array([[10.0, 20.0, 300.0, 310.0]]),
                   "Color_Para": np.ones((1, 7)), "Illum_Para": np.ones((1, 10)),
                   "Tex_Para": np.ones((199, 1))})
    return path


def test_300wlp_mat(lp_mat):
    face = load_300wlp_mat(lp_mat)
    np.testing.assert_allclose(face.landmarks, PTS, rtol=1e-6)
    assert face.yaw == pytest.approx(45) and face.pitch == pytest.approx(-10)
    assert face.roll == pytest.approx(5)
    assert face.shape_para.shape == (199,) and face.exp_para.shape == (29,)


def test_300wlp_mat_transposed_pt2d(tmp_path):
    path = tmp_path / "t.mat"
    savemat(path, {"pt2d": PTS.T, "Pose_Para": pose_para(0, -70, 0),
                   "Shape_Para": np.zeros((199, 1)), "Exp_Para": np.zeros((29, 1))})
    face = load_300wlp_mat(path)
    np.testing.assert_allclose(face.landmarks, PTS, rtol=1e-6)
    assert face.yaw == pytest.approx(-70)


def test_300wlp_pts_mat(tmp_path):
    path = tmp_path / "AFW_134212_1_0_pts.mat"
    savemat(path, {"pts_2d": PTS.T, "pts_3d": PTS.T + 1})
    np.testing.assert_allclose(load_300wlp_pts_mat(path), PTS, rtol=1e-6)


def test_aflw2000_mat(tmp_path):
    path = tmp_path / "image00002.mat"
    pt3d = np.concatenate([PTS, RNG.normal(size=(1, 68))])
    pt2d = RNG.uniform(0, 450, (2, 21))
    pt2d[:, 3] = -1  # AFLW marks a missing point with -1
    savemat(path, {"pt3d_68": pt3d, "pt2d": pt2d, "Pose_Para": pose_para(3, -20, 1),
                   "Shape_Para": np.zeros((199, 1)), "Exp_Para": np.zeros((29, 1)),
                   "roi": np.array([[1.0, 2.0, 3.0, 4.0]])})
    face = load_aflw2000_mat(path)
    np.testing.assert_allclose(face.landmarks, PTS, rtol=1e-6)
    assert face.yaw == pytest.approx(-20)


def test_mat_errors_name_the_file_and_key(tmp_path, lp_mat):
    with pytest.raises(DatasetFileError, match="nope.mat.*no such file"):
        load_300wlp_mat(tmp_path / "nope.mat")
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DatasetFileError, match="bad.mat"):
        load_aflw2000_mat(bad)
    no_key = tmp_path / "nokey.mat"
    savemat(no_key, {"pt2d": PTS})
    with pytest.raises(DatasetFileError, match="nokey.mat.*'Pose_Para'"):
        load_300wlp_mat(no_key)
    with pytest.raises(DatasetFileError, match="AFW_134212_1_0.mat.*'pt3d_68'"):
        load_aflw2000_mat(lp_mat)  # a 300W-LP file has no pt3d_68
    wrong = tmp_path / "wrong.mat"
    savemat(wrong, {"pt2d": np.zeros((2, 21)), "Pose_Para": pose_para(0, 0, 0),
                    "Shape_Para": np.zeros((199, 1)), "Exp_Para": np.zeros((29, 1))})
    with pytest.raises(DatasetFileError, match=r"wrong.mat.*'pt2d' has shape \[2, 21\]"):
        load_300wlp_mat(wrong)
    for err in (DatasetFileError,):
        try:
            load_300wlp_mat(no_key)
        except err as e:
            assert "\n" not in str(e)


PTS_TEXT = "version: 1\nn_points:  68\n{\n" + "\n".join(
    f"{x:.3f} {y:.3f}" for x, y in PTS.T) + "\n}\n"


def test_read_pts(tmp_path):
    path = tmp_path / "face.pts"
    path.write_text(PTS_TEXT)
    np.testing.assert_allclose(read_pts(path), PTS, atol=1e-3)


def test_read_pts_errors(tmp_path):
    with pytest.raises(DatasetFileError, match="missing.pts"):
        read_pts(tmp_path / "missing.pts")
    short = tmp_path / "short.pts"
    short.write_text(PTS_TEXT.replace("n_points:  68", "n_points: 67"))
    with pytest.raises(DatasetFileError, match="short.pts.*n_points is 67"):
        read_pts(short)
    junk = tmp_path / "junk.pts"
    junk.write_text("version: 1\nn_points: 2\n{\n1 2\nx y\n}\n")
    with pytest.raises(DatasetFileError, match="junk.pts"):
        read_pts(junk)


def test_3ddfa_list_and_params(tmp_path):
    names = [f"HELEN_{i}_0_{j}.jpg" for i in range(3) for j in range(2)]
    (tmp_path / "train_aug_120x120.list.train").write_text("\n".join(names) + "\n")
    params = RNG.normal(size=(6, 62)).astype(np.float32)
    with open(tmp_path / "param_all_norm.pkl", "wb") as f:
        pickle.dump(params, f)
    got_names, got = load_3ddfa_list(tmp_path / "train_aug_120x120.list.train",
                                     tmp_path / "param_all_norm.pkl")
    assert got_names == names and np.array_equal(got, params)
    with open(tmp_path / "short.pkl", "wb") as f:
        pickle.dump(params[:5], f)
    with pytest.raises(DatasetFileError, match="short.pkl.*5 parameter rows.*6 files"):
        load_3ddfa_list(tmp_path / "train_aug_120x120.list.train", tmp_path / "short.pkl")
    with open(tmp_path / "cols.pkl", "wb") as f:
        pickle.dump(params[:, :61], f)
    with pytest.raises(DatasetFileError, match=r"cols.pkl.*\(N, 62\)"):
        load_3ddfa_list(tmp_path / "train_aug_120x120.list.train", tmp_path / "cols.pkl")
    (tmp_path / "broken.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DatasetFileError, match="broken.pkl"):
        load_3ddfa_list(tmp_path / "train_aug_120x120.list.train", tmp_path / "broken.pkl")
    with pytest.raises(DatasetFileError, match="nolist"):
        load_3ddfa_list(tmp_path / "nolist", tmp_path / "param_all_norm.pkl")
    with pytest.raises(DatasetFileError, match="absent.pkl.*no such file"):
        load_3ddfa_list(tmp_path / "train_aug_120x120.list.train", tmp_path / "absent.pkl")


def test_whitening_pkl_v1_and_v2(tmp_path):
    mean, std = RNG.normal(size=62).astype(np.float32), RNG.uniform(1, 2, 62).astype(np.float32)
    with open(tmp_path / "param_whitening.pkl", "wb") as f:
        pickle.dump({"param_mean": mean, "param_std": std}, f)
    with open(tmp_path / "v2.pkl", "wb") as f:
        pickle.dump({"mean": mean, "std": std}, f)
    for name in ("param_whitening.pkl", "v2.pkl"):
        w = load_whitening_pkl(tmp_path / name)
        assert np.array_equal(w.mean, mean) and np.array_equal(w.std, std)
    with open(tmp_path / "other.pkl", "wb") as f:
        pickle.dump({"m": mean}, f)
    with pytest.raises(DatasetFileError, match="other.pkl"):
        load_whitening_pkl(tmp_path / "other.pkl")
    with pytest.raises(DatasetFileError, match="absent.pkl.*no such file"):
        load_whitening_pkl(tmp_path / "absent.pkl")


def test_roi_from_landmarks_hand_case():
    pts = np.array([[10.0, 30.0, 20.0], [20.0, 60.0, 40.0]])  # box 20 x 40, centre (20, 40)
    half = 40 * np.sqrt(2) / 2
    np.testing.assert_allclose(roi_from_landmarks(pts),
                               [20 - half, 40 - half, 20 + half, 40 + half])


def test_roi_from_box_hand_case():
    # mean size (100 + 120) / 2 = 110; side int(173.8) = 173; centre (150, 160 + 15.4)
    np.testing.assert_allclose(roi_from_box([100, 100, 200, 220]),
                               [150 - 86.5, 175.4 - 86.5, 150 + 86.5, 175.4 + 86.5])


def test_crop_pads_with_zeros_outside_the_image():
    img = RNG.integers(1, 256, (4, 4, 3)).astype(np.uint8)
    out = crop_roi(img, [-2, -2, 6, 6], 8)  # same size: no resampling
    assert np.array_equal(out[2:6, 2:6], img)
    assert out[:2].max() == 0 and out[6:].max() == 0 and out[:, :2].max() == 0


def test_resize_bilinear_half_pixel_centres():
    img = np.array([[0, 100], [200, 40]], np.uint8)[..., None]
    out = resize_bilinear(img, 4)[..., 0].astype(float)
    # output centres map to input x = -0.25, 0.25, 0.75, 1.25 -> clipped 0, .25, .75, 1
    w = np.array([0, 0.25, 0.75, 1])
    row = lambda a, b: a * (1 - w) + b * w  # noqa: E731
    expect = np.array([row(0, 100) * (1 - wr) + row(200, 40) * wr for wr in w])
    np.testing.assert_array_equal(out, np.rint(expect))


def test_crop_coordinate_maps():
    roi = [10.2, 19.8, 109.9, 120.1]  # rounds to 10, 20, 110, 120: 100 px -> 50 px crop
    pts = np.array([[10.0, 60.0, 110.0], [20.0, 70.0, 120.0]])
    crop = landmarks_to_crop(pts, roi, 50)
    np.testing.assert_allclose(crop, [[0, 25, 50], [0, 25, 50]])
    np.testing.assert_allclose(crop_to_image(crop, roi, 50), pts, atol=1e-4)


def test_read_image(tmp_path):
    from PIL import Image

    arr = RNG.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), arr)
    (tmp_path / "b.png").write_bytes(b"garbage")
    with pytest.raises(DatasetFileError, match="b.png"):
        read_image(tmp_path / "b.png")
    with pytest.raises(DatasetFileError, match="c.jpg"):
        read_image(tmp_path / "c.jpg")


def test_load_faces_crops_real_annotated_images(tmp_path):
    from PIL import Image

    from edgeq.data.face3d import nme
    from edgeq.data.face3d.loaders import load_faces

    img = RNG.integers(0, 256, (450, 450, 3)).astype(np.uint8)
    for name, yaw in (("image00002", 20.0), ("image00004", -75.0)):
        Image.fromarray(img).save(tmp_path / f"{name}.png")
        savemat(tmp_path / f"{name}.mat", {
            "pt3d_68": np.concatenate([PTS, np.zeros((1, 68))]),
            "pt2d": np.zeros((2, 21)), "Pose_Para": pose_para(0, yaw, 0),
            "Shape_Para": np.zeros((199, 1)), "Exp_Para": np.zeros((29, 1))})
    faces = load_faces(sorted(tmp_path.glob("*.png")), size=60)
    assert faces.images.shape == (2, 3, 60, 60) and np.all(np.isnan(faces.params))
    np.testing.assert_allclose(faces.yaw, [20, -75], atol=1e-4)
    # the landmarks in the crop: ROI side sqrt(2) * max(w, h), rounded, maps to 60 px
    x0, y0, x1, y1 = np.rint(roi_from_landmarks(PTS))
    np.testing.assert_allclose(faces.landmarks[0, 0], (PTS[0] - x0) * 60 / (x1 - x0),
                               atol=1e-3)
    # the crop shows the image at the ROI: pixel (row 30, col 30) of the crop lies at
    # image (y0 + 30.5 * side / 60 - 0.5, ...) - check one crop pixel by bilinear hand
    side = x1 - x0
    xs, ys = x0 + 30.5 * side / 60 - 0.5, y0 + 30.5 * side / 60 - 0.5
    ix, iy = int(np.floor(xs)), int(np.floor(ys))
    fx, fy = xs - ix, ys - iy
    patch = img[iy:iy + 2, ix:ix + 2, 0].astype(float)
    expect = (patch[0, 0] * (1 - fx) * (1 - fy) + patch[0, 1] * fx * (1 - fy)
              + patch[1, 0] * (1 - fx) * fy + patch[1, 1] * fx * fy)
    assert abs(int(faces.images[0, 0, 30, 30]) - expect) <= 1
    assert nme(faces.landmarks, faces.landmarks, faces.boxes).max() == 0
    (tmp_path / "image00004.mat").unlink()
    with pytest.raises(DatasetFileError, match="image00004.mat"):
        load_faces(sorted(tmp_path.glob("*.png")), size=60)


def test_load_faces_pts(tmp_path):
    from PIL import Image

    from edgeq.data.face3d.loaders import load_faces

    Image.fromarray(np.zeros((500, 500, 3), np.uint8)).save(tmp_path / "takeo.png")
    (tmp_path / "takeo.pts").write_text(PTS_TEXT)
    faces = load_faces([tmp_path / "takeo.png"], size=64, annotation="pts")
    assert len(faces) == 1 and np.isnan(faces.yaw[0])
    w = faces.boxes[0, 2] - faces.boxes[0, 0]
    h = faces.boxes[0, 3] - faces.boxes[0, 1]
    assert max(w, h) == pytest.approx(64 / np.sqrt(2), rel=0.02)
