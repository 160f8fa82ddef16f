"""Synthetic 3DDFA samples: parameter sampling, the ROI rule with jitter, rendering, caching.

Pose: yaw uniform in +-90 deg (equal yaw bins), pitch and roll uniform in +-30 deg.
Shape: alpha_shp ~ N(0, 1) clipped at +-3. Expression: sparse, with a strong "mouth open"
mode, eye closing, smiles, brow raises and puckers.

Scale and translation come from 3DDFA's ROI rule on the rotated landmarks (a square of
side sqrt(2)*max(w, h) around the landmarks' box, mapped to the 120-pixel frame), with
detector-like jitter: scale x U(0.9, 1.1) and N(0, 4 px) translation in the 120 frame.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.data.face3d.model import (
    FRAME,
    N_EXP,
    N_PARAMS,
    N_SHAPE,
    MorphableModel,
    reconstruct_landmarks,
    rotation_matrix,
)
from edgeq.data.face3d.render import render_faces
from edgeq.errors import DatasetFileError

CHUNK = 256  # samples per chunk; each chunk has its own seed, so n does not change them
GENERATOR_VERSION = 1  # bump when the generator changes: invalidates caches


@dataclass
class FaceSet:
    """A set of face crops with their 3DDFA parameters and 68 landmarks.

    ``images uint8 [N,3,S,S]`` (RGB), ``params float32 [N,62]`` (de-whitened, in the 120
    ROI frame), ``landmarks float32 [N,2,68]`` (x, y in crop pixels of size S),
    ``boxes float32 [N,4]`` (x0, y0, x1, y1 of the landmarks: NME's normaliser),
    ``yaw float32 [N]`` (degrees).
    """

    images: np.ndarray
    params: np.ndarray
    landmarks: np.ndarray
    boxes: np.ndarray
    yaw: np.ndarray

    def __len__(self) -> int:
        return len(self.params)

    @property
    def size(self) -> int:
        """Crop side S in pixels."""
        return int(self.images.shape[-1])

    def subset(self, idx) -> FaceSet:
        """The samples at ``idx`` (a slice, index array or boolean mask)."""
        return FaceSet(self.images[idx], self.params[idx], self.landmarks[idx],
                       self.boxes[idx], self.yaw[idx])

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, images=self.images, params=self.params,
                         landmarks=self.landmarks, boxes=self.boxes, yaw=self.yaw)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def load(path: str | os.PathLike) -> FaceSet:
        """Read a set written by :meth:`save`."""
        try:
            with np.load(path) as z:
                return FaceSet(z["images"], z["params"], z["landmarks"], z["boxes"],
                               z["yaw"])
        except (OSError, KeyError, ValueError) as e:
            raise DatasetFileError(f"cannot read face set '{path}': {e}") from None


def landmark_boxes(landmarks: np.ndarray) -> np.ndarray:
    """``[N,4]`` boxes (x0, y0, x1, y1) of ``[N,2,68]`` landmarks."""
    lo, hi = landmarks.min(-1), landmarks.max(-1)
    return np.concatenate([lo, hi], -1).astype(np.float32)


def sample_pose_shape(n: int, mm: MorphableModel, rng: np.random.Generator):
    """Sample ``n`` faces: ``(params [n,62] float64, shapes [n,68,3], yaw_deg [n])``."""
    yaw = rng.uniform(-90, 90, n)
    pitch = rng.uniform(-30, 30, n)
    roll = rng.uniform(-30, 30, n)
    a_shp = np.clip(rng.standard_normal((n, N_SHAPE)), -3, 3)
    a_exp = _sample_expressions(n, rng)
    shapes = mm.shape_points(a_shp, a_exp)  # [n, 68, 3]
    R = rotation_matrix(np.radians(yaw), np.radians(pitch), np.radians(roll))
    rotated = shapes @ np.swapaxes(R, -1, -2)  # [n, 68, 3], y up
    lo, hi = rotated[..., :2].min(1), rotated[..., :2].max(1)
    centre = (lo + hi) / 2
    side = np.sqrt(2) * (hi - lo).max(1) * rng.uniform(0.9, 1.1, n)
    s = FRAME / side
    jitter = rng.normal(0, 4, (n, 2))
    # image x = v0 - 1 = s (X - cx) + 60 + jx ;  image y = 120 - v1 = 60 - s (Y - cy) + jy
    t = np.stack([FRAME / 2 + 1 - s * centre[:, 0] + jitter[:, 0],
                  FRAME / 2 - s * centre[:, 1] - jitter[:, 1],
                  FRAME / 2 - s * rotated[..., 2].mean(1)], 1)
    pose = np.concatenate([s[:, None, None] * R, t[:, :, None]], 2).reshape(n, 12)
    params = np.concatenate([pose, a_shp, a_exp], 1)
    return params, shapes, yaw


def _sample_expressions(n: int, rng: np.random.Generator) -> np.ndarray:
    a = np.zeros((n, N_EXP))
    strong = rng.random(n) < 0.5
    a[:, 0] = np.where(strong, rng.uniform(0, 1.2, n), rng.uniform(0, 0.2, n))  # mouth
    a[:, 1] = np.clip(rng.normal(0, 0.5, n), -1, 1)  # smile
    a[:, 2] = rng.uniform(-0.5, 1.0, n)  # brows
    closed = rng.random(n) < 0.25
    a[:, 3] = np.where(closed, rng.uniform(0.3, 1.0, n), rng.uniform(0, 0.3, n))  # eyes
    a[:, 4] = np.where(rng.random(n) < 0.3, rng.uniform(0, 1, n), 0)  # pucker
    a[:, 5:] = rng.standard_normal((n, N_EXP - 5))
    return a


def generate_chunk(n: int, size: int, rng: np.random.Generator, mm: MorphableModel,
                   return_depth: bool = False):
    """One batch of ``n`` samples (a :class:`FaceSet`, plus the depth buffer if asked)."""
    params, shapes, yaw = sample_pose_shape(n, mm, rng)
    rendered = render_faces(params, shapes, mm, size, rng, return_depth=return_depth)
    images = rendered[0] if return_depth else rendered
    landmarks = reconstruct_landmarks(params, mm, size)
    faces = FaceSet(images, params.astype(np.float32), landmarks,
                    landmark_boxes(landmarks), yaw.astype(np.float32))
    return (faces, rendered[1]) if return_depth else faces


def generate(n: int, size: int = 64, seed: int = 0, mm: MorphableModel | None = None,
             progress: bool = True, cache_dir: str | os.PathLike | None = None) -> FaceSet:
    """Generate ``n`` synthetic faces of ``size`` x ``size`` pixels, deterministically.

    Samples come in chunks of 256, each seeded by ``(seed, chunk index)``, so the first
    ``k`` samples do not depend on ``n`` (for ``k`` a multiple of 256). With
    ``cache_dir``, the set is read from / written to an ``.npz`` there, keyed on
    ``n``, ``size``, ``seed``, the model and the generator version.
    """
    if n < 0 or size < 8:
        raise ValueError(f"generate: need n >= 0 and size >= 8, got n={n}, size={size}")
    mm = MorphableModel.synthetic() if mm is None else mm
    cache = _cache_path(cache_dir, n, size, seed, mm) if cache_dir is not None else None
    if cache is not None and cache.exists():
        return FaceSet.load(cache)
    chunks = []
    n_chunks = -(-n // CHUNK)
    bar = _progress(n, f"faces {size}px", progress)
    for c in range(n_chunks):
        rng = np.random.default_rng([seed, c])
        chunks.append(generate_chunk(min(CHUNK, n - c * CHUNK), size, rng, mm))
        bar.update(len(chunks[-1]))
    bar.close()
    faces = _concat(chunks, size)
    if cache is not None:
        faces.save(cache)
    return faces


def _concat(chunks: list[FaceSet], size: int) -> FaceSet:
    if not chunks:
        return FaceSet(np.zeros((0, 3, size, size), np.uint8),
                       np.zeros((0, N_PARAMS), np.float32), np.zeros((0, 2, 68), np.float32),
                       np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    return FaceSet(*(np.concatenate([getattr(c, k) for c in chunks])
                     for k in ("images", "params", "landmarks", "boxes", "yaw")))


def _cache_path(cache_dir, n: int, size: int, seed: int, mm: MorphableModel) -> Path:
    digest = hashlib.sha1(mm.u.tobytes() + mm.w_shp.tobytes() + mm.w_exp.tobytes())
    name = f"face3d_v{GENERATOR_VERSION}_n{n}_s{size}_seed{seed}_{digest.hexdigest()[:10]}.npz"
    return Path(cache_dir) / name


class _NoBar:
    def update(self, k: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a training-side dependency
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="img", leave=False)
