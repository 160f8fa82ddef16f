"""Readers for the real 3DDFA data formats and 3DDFA's ROI crop (NumPy; scipy/Pillow lazily).

- 300W-LP: ``<name>.jpg`` + ``<name>.mat`` with ``pt2d`` (2x68), ``Pose_Para`` (1x7 =
  pitch, yaw, roll [rad], tdx, tdy, tdz, scale), ``Shape_Para`` (199x1), ``Exp_Para``
  (29x1); ``landmarks/<subset>/<name>_pts.mat`` with ``pts_2d`` (68x2).
- AFLW2000-3D: ``<name>.jpg`` + ``<name>.mat`` with ``pt3d_68`` (3x68), ``pt2d`` (2x21,
  -1 where missing), ``Pose_Para``, ``Shape_Para``, ``Exp_Para``.
- 3DDFA training lists: one relative file name per line, plus a pickled float32 ``(N, 62)``
  array of (whitened) parameters whose row i belongs to line i; ``param_whitening.pkl``
  (V1: ``param_mean``/``param_std``; V2: ``mean``/``std``).
- iBUG ``.pts``: ``version: 1``, ``n_points: N``, ``{``, N lines ``x y``, ``}``.

Every missing or malformed file raises :class:`~edgeq.errors.DatasetFileError` naming it.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.data.face3d.model import N_PARAMS
from edgeq.data.face3d.whitening import ParamWhitening
from edgeq.errors import ConfigError, DatasetFileError

PathLike = str | os.PathLike


@dataclass(frozen=True, eq=False)
class MatFace:
    """One 300W-LP or AFLW2000-3D annotation.

    ``landmarks [2,68]`` (x, y in image pixels), ``pitch``/``yaw``/``roll`` in degrees,
    ``shape_para [199]``, ``exp_para [29]`` (BFM coefficients, kept for completeness)."""

    landmarks: np.ndarray
    pitch: float
    yaw: float
    roll: float
    shape_para: np.ndarray
    exp_para: np.ndarray


def _loadmat(path: PathLike) -> dict:
    from scipy.io import loadmat

    try:
        return loadmat(str(path))
    except FileNotFoundError:
        raise DatasetFileError(f"'{path}': no such file") from None
    except Exception as e:  # scipy raises several types for corrupt files
        raise DatasetFileError(f"'{path}': not a readable .mat file ({e})") from None


def _mat_array(data: dict, path: PathLike, key: str, shape: tuple[int, ...],
               transposed_ok: bool = False) -> np.ndarray:
    """``data[key]`` as float64 of ``shape``; singleton axes may differ (MATLAB stores
    vectors as 1xN or Nx1), a transposed matrix only if ``transposed_ok``."""
    if key not in data:
        raise DatasetFileError(f"'{path}': missing key '{key}'")
    a = np.asarray(data[key])
    core = tuple(d for d in shape if d != 1)
    if np.issubdtype(a.dtype, np.number):
        if a.squeeze().shape == core:
            return a.astype(np.float64).reshape(shape)
        if transposed_ok and a.shape == shape[::-1]:
            return a.T.astype(np.float64)
    raise DatasetFileError(f"'{path}': key '{key}' has shape {list(a.shape)}, "
                           f"expected {list(shape)}")


def _mat_face(data: dict, path: PathLike, landmarks: np.ndarray) -> MatFace:
    pose = _mat_array(data, path, "Pose_Para", (7,))
    pitch, yaw, roll = np.degrees(pose[:3])
    return MatFace(landmarks.astype(np.float32), float(pitch), float(yaw), float(roll),
                   _mat_array(data, path, "Shape_Para", (199,)).astype(np.float32),
                   _mat_array(data, path, "Exp_Para", (29,)).astype(np.float32))


def load_300wlp_mat(path: PathLike) -> MatFace:
    """A 300W-LP ``.mat``: ``pt2d`` (2x68) landmarks and the pose."""
    data = _loadmat(path)
    return _mat_face(data, path, _mat_array(data, path, "pt2d", (2, 68), transposed_ok=True))


def load_300wlp_pts_mat(path: PathLike) -> np.ndarray:
    """A 300W-LP ``landmarks/<subset>/<name>_pts.mat``: ``pts_2d`` (68x2) -> ``[2,68]``."""
    data = _loadmat(path)
    return _mat_array(data, path, "pts_2d", (68, 2)).T.astype(np.float32)


def load_aflw2000_mat(path: PathLike) -> MatFace:
    """An AFLW2000-3D ``.mat``: ``pt3d_68`` (3x68; rows 0-1 are the 2D landmarks, as in
    3DDFA's benchmark) and the pose."""
    data = _loadmat(path)
    pt3d = _mat_array(data, path, "pt3d_68", (3, 68))
    return _mat_face(data, path, pt3d[:2])


def read_pts(path: PathLike) -> np.ndarray:
    """An iBUG ``.pts`` file -> ``[2, N]`` float32 (coordinates as written)."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetFileError(f"'{path}': cannot read .pts file ({e})") from None
    header = dict(ln.split(":", 1) for ln in lines if ":" in ln and "{" not in ln)
    try:
        n = int(header["n_points"])
        start, end = lines.index("{") + 1, lines.index("}")
        pts = np.array([[float(v) for v in ln.split()] for ln in lines[start:end]])
    except (KeyError, ValueError) as e:
        raise DatasetFileError(f"'{path}': malformed .pts file ({e})") from None
    if pts.shape != (n, 2):
        raise DatasetFileError(f"'{path}': n_points is {n} but {len(pts)} 'x y' lines "
                               "were found")
    return pts.T.astype(np.float32)


def load_3ddfa_list(list_path: PathLike, params_path: PathLike):
    """A 3DDFA training list and its ``param_all_norm*.pkl``: ``(names, params [N,62])``.

    The parameters are returned as stored (3DDFA stores them whitened)."""
    try:
        names = [ln.strip() for ln in Path(list_path).read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetFileError(f"'{list_path}': cannot read list file ({e})") from None
    params = np.asarray(_load_pickle(params_path))
    if params.ndim != 2 or params.shape[1] != N_PARAMS or not np.issubdtype(params.dtype,
                                                                            np.number):
        raise DatasetFileError(f"'{params_path}': expected a numeric (N, {N_PARAMS}) array, "
                               f"got shape {list(params.shape)}")
    if len(params) != len(names):
        raise DatasetFileError(f"'{params_path}': {len(params)} parameter rows but "
                               f"'{list_path}' lists {len(names)} files")
    return names, params.astype(np.float32)


def load_whitening_pkl(path: PathLike) -> ParamWhitening:
    """3DDFA's ``param_whitening.pkl`` (V1 keys ``param_mean``/``param_std``) or V2's
    ``param_mean_std_62d_120x120.pkl`` (``mean``/``std``)."""
    data = _load_pickle(path)
    for mean_key, std_key in (("param_mean", "param_std"), ("mean", "std")):
        if isinstance(data, dict) and mean_key in data and std_key in data:
            try:
                return ParamWhitening(np.asarray(data[mean_key]), np.asarray(data[std_key]))
            except ConfigError as e:
                raise DatasetFileError(f"'{path}': {e}") from None
    raise DatasetFileError(f"'{path}': expected a dict with 'param_mean'/'param_std' or "
                           "'mean'/'std'")


def _load_pickle(path: PathLike):
    try:
        with open(path, "rb") as f:
            return pickle.load(f)  # noqa: S301 - the user's own dataset files
    except FileNotFoundError:
        raise DatasetFileError(f"'{path}': no such file") from None
    except Exception as e:  # unpickling raises many types for corrupt input
        raise DatasetFileError(f"'{path}': not a readable pickle ({e})") from None


# ------------------------------------------------------------------------ ROI and crop


def roi_from_landmarks(pts: np.ndarray) -> np.ndarray:
    """3DDFA's ROI from landmarks ``[2,K]``: the square of side ``max(w, h)`` around the
    landmarks' box, grown to its diagonal ``sqrt(2) * max(w, h)`` about the same centre.
    Returns ``[x0, y0, x1, y1]`` (float64)."""
    pts = np.asarray(pts, np.float64)
    lo, hi = pts[:2].min(1), pts[:2].max(1)
    centre = (lo + hi) / 2
    half = np.sqrt(2) * (hi - lo).max() / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def roi_from_box(box) -> np.ndarray:
    """3DDFA's ROI from a face detector box ``[x0, y0, x1, y1]``: side
    ``int(1.58 * mean(w, h))``, centre moved down by ``0.14 * mean(w, h)``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    old = (x1 - x0 + y1 - y0) / 2
    cx, cy = x1 - (x1 - x0) / 2, y1 - (y1 - y0) / 2 + old * 0.14
    side = int(old * 1.58)
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def _int_roi(roi) -> np.ndarray:
    return np.rint(np.asarray(roi, np.float64)).astype(np.int64)


def crop_roi(image: np.ndarray, roi, size: int) -> np.ndarray:
    """Crop ``image [H,W,C]`` (uint8) to the ROI rounded to integers, zero-padding outside
    the image (3DDFA's ``crop_img``), and resize bilinearly to ``size x size``."""
    img = np.asarray(image)
    x0, y0, x1, y1 = _int_roi(roi)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty ROI {list(roi)}")
    h, w = img.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0) + img.shape[2:], img.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return resize_bilinear(out, size)


def resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``[H,W,...]`` to ``size x size`` with half-pixel centres (as
    OpenCV's INTER_LINEAR when enlarging); uint8 in, uint8 out."""
    h, w = img.shape[:2]

    def axis(n_in):
        x = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        i0 = np.floor(x).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, x - i0

    r0, r1, fr = axis(h)
    c0, c1, fc = axis(w)
    f = img.astype(np.float64)
    fr = fr.reshape(-1, 1, *([1] * (img.ndim - 2)))
    fc = fc.reshape(1, -1, *([1] * (img.ndim - 2)))
    top = f[r0][:, c0] * (1 - fc) + f[r0][:, c1] * fc
    bot = f[r1][:, c0] * (1 - fc) + f[r1][:, c1] * fc
    out = top * (1 - fr) + bot * fr
    return np.clip(np.rint(out), 0, 255).astype(img.dtype) if img.dtype == np.uint8 else out


def landmarks_to_crop(pts: np.ndarray, roi, size: int) -> np.ndarray:
    """Image-pixel landmarks ``[2,K]`` -> pixels of the ``size`` crop of the (rounded) ROI."""
    x0, y0, x1, y1 = _int_roi(roi)
    pts = np.asarray(pts, np.float64)
    return np.stack([(pts[0] - x0) * size / (x1 - x0),
                     (pts[1] - y0) * size / (y1 - y0)]).astype(np.float32)


def crop_to_image(pts: np.ndarray, roi, size: int) -> np.ndarray:
    """Crop-pixel landmarks ``[2,K]`` -> image pixels (3DDFA's ``x * (ex - sx) / 120 +
    sx`` with the crop size in place of 120)."""
    x0, y0, x1, y1 = _int_roi(roi)
    pts = np.asarray(pts, np.float64)
    return np.stack([pts[0] * (x1 - x0) / size + x0,
                     pts[1] * (y1 - y0) / size + y0]).astype(np.float32)


def read_image(path: PathLike) -> np.ndarray:
    """An image file -> ``uint8 [H, W, 3]`` RGB (Pillow)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DatasetFileError(f"'{path}': no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DatasetFileError(f"'{path}': cannot read image ({e})") from None


# -------------------------------------------------------------------- real faces -> FaceSet

ANNOTATIONS = ("aflw2000", "300wlp", "pts")


def load_faces(image_paths, size: int = 120, annotation: str = "aflw2000"):
    """Real annotated images -> a :class:`~edgeq.data.face3d.FaceSet` of ROI crops.

    Each image's annotation sits beside it with the same stem: ``.mat`` for
    ``aflw2000``/``300wlp``, ``.pts`` for ``pts``. The ROI comes from the landmarks
    (3DDFA's rule, as in its AFLW2000-3D benchmark crops); landmarks and NME boxes are in
    crop pixels (NME is scale-invariant, so this matches 3DDFA's image-space figure up to
    the ROI rounding). ``params`` are NaN (the BFM coefficients of these datasets are not
    3DDFA's 62 parameters); ``yaw`` is NaN for ``.pts`` (no pose)."""
    from edgeq.data.face3d.generate import FaceSet, landmark_boxes

    if annotation not in ANNOTATIONS:
        raise ConfigError(f"unknown annotation '{annotation}' (one of {', '.join(ANNOTATIONS)})")
    images, marks, yaws = [], [], []
    for path in map(Path, image_paths):
        if annotation == "pts":
            pts, yaw = read_pts(path.with_suffix(".pts")), float("nan")
        else:
            reader = load_aflw2000_mat if annotation == "aflw2000" else load_300wlp_mat
            face = reader(path.with_suffix(".mat"))
            pts, yaw = face.landmarks, face.yaw
        if pts.shape != (2, 68):
            raise DatasetFileError(f"'{path}': annotation has {pts.shape[1]} points, not 68")
        roi = roi_from_landmarks(pts)
        images.append(crop_roi(read_image(path), roi, size).transpose(2, 0, 1))
        marks.append(landmarks_to_crop(pts, roi, size))
        yaws.append(yaw)
    n = len(images)
    lm = np.stack(marks) if n else np.zeros((0, 2, 68), np.float32)
    return FaceSet(np.stack(images) if n else np.zeros((0, 3, size, size), np.uint8),
                   np.full((n, N_PARAMS), np.nan, np.float32), lm, landmark_boxes(lm),
                   np.asarray(yaws, np.float32))
