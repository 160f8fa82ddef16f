"""A procedural 68-point morphable model in 3DDFA's layout, and 3DDFA's reconstruction.

3DDFA's restricted bases are ``u (204,1)``, ``w_shp (204,40)`` and ``w_exp (204,10)`` with
x, y, z interleaved per point, reconstructed by ``reshape(3, -1, order='F')``. Its arrays
are derived from the Basel Face Model (academic use only), so this module builds arrays
of the same shapes from a seed instead: a hand-placed template in iBUG 68-point order
(millimetre-like units, x to the subject's left = image right, y up, z towards the
camera), 40 smooth random displacement fields with a long-tailed spectrum as the shape
basis, and 5 semantic plus 5 random fields as the expression basis.

The 62-parameter vector is 3DDFA's: ``p[:12].reshape(3,4) = [s*R | t]`` then 40 shape and
10 expression coefficients. The pose frame is the 120x120 ROI crop with y pointing up; the
reconstruction flips it into image rows like 3DDFA-V2 (0-based): ``x = v0 - 1``,
``y = 120 - v1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_POINTS = 68
N_SHAPE = 40
N_EXP = 10
N_PARAMS = 62
FRAME = 120  # 3DDFA's parameter frame: the ROI crop is 120x120 pixels

# iBUG 68-point left/right mirror permutation (point i <-> MIRROR[i]).
MIRROR = np.array(
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


@dataclass(frozen=True, eq=False)
class MorphableModel:
    """Mean shape ``u (204,1)``, shape basis ``w_shp (204,40)``, expression basis
    ``w_exp (204,10)``; float32, x, y, z interleaved per point (3DDFA's layout)."""

    u: np.ndarray
    w_shp: np.ndarray
    w_exp: np.ndarray

    @staticmethod
    def synthetic(seed: int = 0) -> MorphableModel:
        """The procedural model, fully determined by ``seed``."""
        rng = np.random.default_rng(seed)
        tmpl = template()
        u = tmpl.reshape(-1, 1)
        w_shp = _shape_basis(tmpl, rng)
        w_exp = _expression_basis(tmpl, rng)
        return MorphableModel(u.astype(np.float32), w_shp.astype(np.float32),
                              w_exp.astype(np.float32))

    def shape_points(self, alpha_shp: np.ndarray, alpha_exp: np.ndarray) -> np.ndarray:
        """``u + w_shp a + w_exp b`` as points ``[..., 68, 3]`` (batch dims kept)."""
        a = np.asarray(alpha_shp, np.float64)
        b = np.asarray(alpha_exp, np.float64)
        flat = (self.u[:, 0].astype(np.float64) + a @ self.w_shp.T.astype(np.float64)
                + b @ self.w_exp.T.astype(np.float64))
        return flat.reshape(*flat.shape[:-1], N_POINTS, 3)


def template() -> np.ndarray:
    """The 68 template points ``[68, 3]`` in iBUG order (units ~ mm, y up, z to camera)."""
    p = np.zeros((N_POINTS, 3))
    a = -np.pi / 2 + np.pi * np.arange(17) / 16  # jaw: from the right ear round the chin
    p[0:17] = np.stack([70 * np.sin(a), 18 - 108 * np.cos(a), -22 + 40 * np.cos(a)], 1)
    p[17:22] = np.stack([[-58, -48, -37, -26, -14], [36, 42, 44, 43, 40],
                         [4, 12, 17, 19, 19]], 1)
    p[27:31] = [[0, 22, 22], [0, 10, 30], [0, -2, 38], [0, -14, 46]]
    p[31:36] = np.stack([[-14, -7, 0, 7, 14], [-24, -26, -27, -26, -24],
                         [26, 31, 34, 31, 26]], 1)
    p[36:42] = [[-46, 21, 6], [-37, 26, 14], [-27, 26, 15], [-18, 21, 12],
                [-27, 18, 14], [-37, 18, 13]]
    p[48:55] = [[-25, -50, 20], [-16, -44, 28], [-6, -41, 32], [0, -42, 33],
                [6, -41, 32], [16, -44, 28], [25, -50, 20]]
    p[55:60] = [[16, -58, 27], [6, -62, 30], [0, -62, 31], [-6, -62, 30], [-16, -58, 27]]
    p[60:68] = [[-20, -50, 22], [-7, -48, 29], [0, -48, 30], [7, -48, 29],
                [20, -50, 22], [7, -52, 29], [0, -52, 30], [-7, -52, 29]]
    _mirror_fill(p, range(22, 27))
    _mirror_fill(p, range(42, 48))
    return p


def _mirror_fill(p: np.ndarray, idx) -> None:
    for i in idx:
        p[i] = p[MIRROR[i]] * [-1, 1, 1]


def _symmetrise(field: np.ndarray) -> np.ndarray:
    """Average a [68,3] displacement field with its left-right mirror image."""
    return 0.5 * (field + field[MIRROR] * [-1, 1, 1])


def _rbf_field(tmpl: np.ndarray, rng: np.random.Generator, n_centres: int,
               sigma: float) -> np.ndarray:
    centres = tmpl[rng.choice(N_POINTS, n_centres, replace=False)]
    d2 = ((tmpl[:, None, :] - centres[None]) ** 2).sum(-1)
    weights = np.exp(-d2 / (2 * sigma**2))
    return weights @ rng.standard_normal((n_centres, 3))


def _shape_basis(tmpl: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth fields, ~70% symmetric, orthonormalised, scaled by k^-0.9 (BFM-like tail)."""
    cols = []
    for _ in range(N_SHAPE):
        f = _rbf_field(tmpl, rng, n_centres=3, sigma=rng.uniform(15, 50))
        if rng.random() < 0.7:
            f = _symmetrise(f)
        cols.append(f.reshape(-1))
    q, _ = np.linalg.qr(np.stack(cols, 1))
    # ~7 units RMS displacement per point for alpha ~ N(0, 1)
    return q * (43.0 * np.arange(1, N_SHAPE + 1) ** -0.9)


def _expression_basis(tmpl: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mouth open, smile, brow raise, eye close, pucker (alpha = 1: a full expression),
    then 5 small random fields."""
    f = np.zeros((N_EXP, N_POINTS, 3))
    # 0: mouth open - the lower lip and the chin drop
    f[0, [57, 66], 1] = -18
    f[0, [56, 58, 65, 67], 1] = -16
    f[0, [55, 59], 1] = -12
    f[0, [48, 54, 60, 64], 1] = -5
    jaw = np.arange(17)
    f[0, jaw, 1] = -16 * np.clip(np.cos((jaw - 8) / 8 * np.pi / 2), 0, 1) ** 2
    f[0, jaw, 2] = -5 * np.clip(np.cos((jaw - 8) / 8 * np.pi / 2), 0, 1) ** 2
    # 1: smile - the mouth corners go out and up
    for i, side in [(48, -1), (60, -1), (54, 1), (64, 1)]:
        f[1, i] = [6 * side, 5, -2]
    for i, side in [(49, -1), (59, -1), (53, 1), (55, 1)]:
        f[1, i] = [3 * side, 2, 0]
    # 2: brow raise
    f[2, 17:27, 1] = 7
    # 3: eye close - upper lids down onto the lower lids
    f[3, [37, 38, 43, 44], 1] = -7
    f[3, [40, 41, 46, 47], 1] = 1
    # 4: pucker - the mouth contracts towards its centre and pushes forward
    mouth = np.arange(48, 68)
    centre = tmpl[mouth].mean(0)
    f[4, mouth, 0] = -0.4 * (tmpl[mouth, 0] - centre[0])
    f[4, mouth, 2] = 6
    for k in range(5, N_EXP):
        f[k] = 2.0 * _rbf_field(tmpl, rng, n_centres=2, sigma=20)
    return f.reshape(N_EXP, -1).T


# --------------------------------------------------------------------------- 3DDFA maths


def split_params(params: np.ndarray):
    """3DDFA's ``_parse_param``: ``(P [...,3,3], offset [...,3], alpha_shp, alpha_exp)``."""
    p = np.asarray(params, np.float64)
    m = p[..., :12].reshape(*p.shape[:-1], 3, 4)
    return m[..., :3], m[..., 3], p[..., 12:52], p[..., 52:62]


def reconstruct_vertices(params: np.ndarray, mm: MorphableModel) -> np.ndarray:
    """``P @ X + offset`` in the 120-pixel parameter frame (y up) as ``[..., 3, 68]``."""
    P, t, a_shp, a_exp = split_params(params)
    x = mm.shape_points(a_shp, a_exp)  # [..., 68, 3]
    return np.swapaxes(x @ np.swapaxes(P, -1, -2), -1, -2) + t[..., :, None]


def reconstruct_landmarks(params: np.ndarray, mm: MorphableModel,
                          size: int = FRAME) -> np.ndarray:
    """The 68 landmarks ``[N, 2, 68]`` (or ``[2, 68]`` for one vector) in crop pixels.

    ``params`` are de-whitened 62-vectors. Pixels of a ``size``-pixel crop: 3DDFA-V2's
    rule ``x = v0 - 1``, ``y = 120 - v1`` in the 120 frame, scaled by ``size / 120``.
    """
    v = reconstruct_vertices(params, mm)
    xy = np.stack([v[..., 0, :] - 1.0, FRAME - v[..., 1, :]], axis=-2)
    return (xy * (size / FRAME)).astype(np.float32)


def rotation_matrix(yaw, pitch, roll) -> np.ndarray:
    """``Rz(roll) @ Ry(yaw) @ Rx(pitch)`` for angles in radians, shape ``[..., 3, 3]``."""
    yaw, pitch, roll = (np.asarray(v, np.float64) for v in (yaw, pitch, roll))
    cy, sy, cp, sp, cr, sr = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch),
                              np.cos(roll), np.sin(roll))
    one, zero = np.ones_like(cy), np.zeros_like(cy)
    rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1)
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1)
    shape = cy.shape + (3, 3)
    return rz.reshape(shape) @ ry.reshape(shape) @ rx.reshape(shape)


def pose_from_params(params: np.ndarray):
    """``(s, R, yaw, pitch, roll)`` from the 3x3 ``s*R`` block (3DDFA-V2 ``P2sRt`` and
    ``matrix2angle``, for the rotation order of :func:`rotation_matrix`); angles in
    degrees."""
    P = split_params(params)[0]
    r1, r2 = P[..., 0, :], P[..., 1, :]
    s = 0.5 * (np.linalg.norm(r1, axis=-1) + np.linalg.norm(r2, axis=-1))
    r1 = r1 / np.linalg.norm(r1, axis=-1, keepdims=True)
    r2 = r2 / np.linalg.norm(r2, axis=-1, keepdims=True)
    R = np.stack([r1, r2, np.cross(r1, r2)], axis=-2)
    yaw = -np.arcsin(np.clip(R[..., 2, 0], -1, 1))
    pitch = np.arctan2(R[..., 2, 1], R[..., 2, 2])
    roll = np.arctan2(R[..., 1, 0], R[..., 0, 0])
    return s, R, np.degrees(yaw), np.degrees(pitch), np.degrees(roll)
