"""Synthetic 3DDFA faces, 3DDFA's parameterisation and metrics, and real-format loaders.

NumPy only (no torch): the landmark application uses it on the deployment side.

- :class:`MorphableModel` - a procedural 68-point model in 3DDFA's layout.
- :func:`generate` -> :class:`FaceSet` - rendered crops with 62-parameter labels.
- :class:`ParamWhitening` - ``(p - mean) / std``, stored as ``whitening.json``.
- :func:`reconstruct_landmarks`, :func:`nme`, :func:`nme_report`, baselines.
- :func:`normalise_images` - the network input rule, 3DDFA's ``(x - 127.5) / 128``.
"""

import numpy as np

from edgeq.data.face3d.generate import FaceSet, generate, landmark_boxes
from edgeq.data.face3d.metrics import (
    baseline_mean_params,
    baseline_oracle_pose,
    nme,
    nme_report,
)
from edgeq.data.face3d.model import (
    FRAME,
    MorphableModel,
    pose_from_params,
    reconstruct_landmarks,
)
from edgeq.data.face3d.whitening import WHITENING_FILE, ParamWhitening

INPUT_MEAN = 127.5
INPUT_SCALE = 128.0


def normalise_images(images: np.ndarray) -> np.ndarray:
    """uint8 images -> the network's float input ``(x - 127.5) / 128`` (3DDFA's
    ``NormalizeGjz``), float32, same shape."""
    return ((np.asarray(images, np.float32) - INPUT_MEAN) / INPUT_SCALE).astype(np.float32)


__all__ = [
    "FRAME",
    "INPUT_MEAN",
    "INPUT_SCALE",
    "WHITENING_FILE",
    "FaceSet",
    "MorphableModel",
    "ParamWhitening",
    "baseline_mean_params",
    "baseline_oracle_pose",
    "generate",
    "landmark_boxes",
    "nme",
    "nme_report",
    "normalise_images",
    "pose_from_params",
    "reconstruct_landmarks",
]
