"""3DDFA's NME, per yaw bin, and the two baselines reported beside every result.

NME (3DDFA ``benchmark_aflw2000.py``): for each face, the mean over the 68 points of the
2D Euclidean error, divided by ``sqrt(w * h)`` of the ground-truth landmarks' bounding
box. Yaw bins: ``|yaw| <= 30``, ``30 < |yaw| <= 60``, ``|yaw| > 60``; 3DDFA's headline
figure is the unweighted mean of the three bin means (``nme_bins_mean``). Percent.
"""

from __future__ import annotations

import numpy as np

from edgeq.data.face3d.model import MorphableModel, reconstruct_landmarks

BINS = (("nme_yaw_0_30", 0, 30), ("nme_yaw_30_60", 30, 60), ("nme_yaw_60_90", 60, np.inf))


def nme(pred: np.ndarray, true: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per-face NME in percent: ``pred``, ``true`` ``[N,2,68]``, ``boxes [N,4]``
    (x0, y0, x1, y1 of the true landmarks)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    boxes = np.asarray(boxes, np.float64)
    err = np.linalg.norm(pred - true, axis=-2).mean(-1)
    norm = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    return 100 * err / norm


def nme_report(pred, true, boxes, yaw) -> dict:
    """``{nme, nme_yaw_0_30, nme_yaw_30_60, nme_yaw_60_90, nme_bins_mean}`` in percent.

    An empty bin is NaN; ``nme_bins_mean`` averages the non-empty bins."""
    per = nme(pred, true, boxes)
    ay = np.abs(np.asarray(yaw, np.float64))
    out = {"nme": float(per.mean()) if len(per) else float("nan")}
    for key, lo, hi in BINS:
        sel = ((ay > lo) | (lo == 0)) & (ay <= hi)
        out[key] = float(per[sel].mean()) if sel.any() else float("nan")
    bins = [out[k] for k, _, _ in BINS if not np.isnan(out[k])]
    out["nme_bins_mean"] = float(np.mean(bins)) if bins else float("nan")
    return out


def baseline_mean_params(train, test, mm: MorphableModel) -> dict:
    """Predict the training set's mean 62-vector for every test face."""
    mean = np.asarray(train.params, np.float64).mean(0)
    pred = reconstruct_landmarks(np.broadcast_to(mean, test.params.shape), mm, test.size)
    return nme_report(pred, test.landmarks, test.boxes, test.yaw)


def baseline_oracle_pose(test, mm: MorphableModel) -> dict:
    """The true pose (``[s*R | t]``) with zero shape and expression: the floor of a
    pose-only predictor."""
    p = np.array(test.params, np.float64)
    p[:, 12:] = 0
    pred = reconstruct_landmarks(p, mm, test.size)
    return nme_report(pred, test.landmarks, test.boxes, test.yaw)
