"""A vectorised point-splat renderer for the synthetic faces (NumPy only).

Every rendered point is affine in the 68 landmarks, like the dense/sparse split of a
3DMM: ``points = M @ X + C`` with ``X`` the ``[68,3]`` shape of a face. The points are

- a head: a lat-long grid on an ellipsoid, pulled through the template landmarks by a
  Gaussian-weighted (Shepard) blend of landmark offsets, so the jaw line is the head's
  silhouette and the face surface follows the nose, lips and brows;
- features: samples of the eye, brow, nostril, lip and mouth-interior polygons (convex
  combinations of landmarks plus a small constant lift), each with its own albedo.

Points are projected with the 62-parameter pose (``v = s*R @ p + t``, 120 frame, flipped
to image rows), shaded (Lambertian, random light), back-facing points dropped, splatted
to k x k pixels and z-buffered (the nearest point wins), so the far side of a turned face
is really hidden. Backgrounds (gradients + blocky noise), occluders, contrast changes,
blur and noise are added per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq.data.face3d.model import FRAME, N_POINTS, MorphableModel, split_params

SKIN = 0  # albedo classes
DARK, SCLERA, IRIS, LIP, MOUTH, BROW = 1, 2, 3, 4, 5, 6
ALBEDO = np.array([
    [1.0, 1.0, 1.0],  # skin: multiplied by the per-image skin colour
    [0.35, 0.25, 0.22],
    [0.92, 0.92, 0.88],
    [0.12, 0.09, 0.08],
    [0.75, 0.38, 0.38],
    [0.18, 0.05, 0.05],
    [0.22, 0.15, 0.10],
])


@dataclass(frozen=True, eq=False)
class PointCloud:
    """Rendered points as affine maps of the landmarks: ``points = M @ X + C``."""

    M: np.ndarray  # [P, 68]
    C: np.ndarray  # [P, 3]
    normals: np.ndarray  # [P, 3] template normals
    albedo_class: np.ndarray  # [P] int
    splat: int  # k: each point covers k x k pixels


HEAD_CENTRE = np.array([0.0, -15.0, -30.0])


def _head_grid(n_u: int, n_v: int):
    """Egg-shaped lat-long grid [n_v, n_u, 3] (u around the vertical axis, u=0 in front):
    taller and wider above the centre than below, so the lower half ends at the chin."""
    u = 2 * np.pi * np.arange(n_u) / n_u
    v = np.pi * (np.arange(n_v) + 0.5) / n_v
    vv, uu = np.meshgrid(v, u, indexing="ij")
    cv = np.cos(vv)
    x = (70 + 4 * cv) * np.sin(vv) * np.sin(uu)
    y = HEAD_CENTRE[1] + cv * (99 + 19 * cv)
    z = HEAD_CENTRE[2] + 55 * np.sin(vv) * np.cos(uu)
    return np.stack([x, y, z], -1)


def _grid_normals(g: np.ndarray) -> np.ndarray:
    du = np.roll(g, -1, axis=1) - np.roll(g, 1, axis=1)
    dv = np.gradient(g, axis=0)
    n = np.cross(dv, du)
    n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-9
    outward = g - HEAD_CENTRE
    return np.where(((n * outward).sum(-1) < 0)[..., None], -n, n)


def _shepard(points: np.ndarray, anchors: np.ndarray, sigma: float, reach: float):
    """Row-normalised Gaussian weights of ``anchors``, faded out beyond ``reach``."""
    d2 = ((points[:, None, :] - anchors[None]) ** 2).sum(-1)
    w = np.exp(-(d2 - d2.min(1, keepdims=True)) / (2 * sigma**2))
    w /= w.sum(1, keepdims=True)
    return w * np.exp(-d2.min(1, keepdims=True) / (2 * reach**2))


def _polygon_samples(ring: list[int], n: int, rng: np.random.Generator):
    """Barycentric samples of a fan over a landmark ring: weights [n, 68] and the weight
    each sample puts on the ring's centroid (1 at the centre, 0 on the border)."""
    k = len(ring)
    tri = rng.integers(0, k, n)
    r1, r2 = rng.random(n), rng.random(n)
    flip = r1 + r2 > 1
    r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
    w = np.zeros((n, N_POINTS))
    centre = 1 - r1 - r2
    for j in range(k):
        w[:, ring[j]] += centre / k
    np.add.at(w, (np.arange(n), np.asarray(ring)[tri]), r1)
    np.add.at(w, (np.arange(n), np.asarray(ring)[(tri + 1) % k]), r2)
    return w, centre


def _segment_samples(chain: list[int], n: int, rng: np.random.Generator) -> np.ndarray:
    seg = rng.integers(0, len(chain) - 1, n)
    t = rng.random(n)
    w = np.zeros((n, N_POINTS))
    np.add.at(w, (np.arange(n), np.asarray(chain)[seg]), 1 - t)
    np.add.at(w, (np.arange(n), np.asarray(chain)[seg + 1]), t)
    return w


def _chain_at(chain: list[int], n: int, s: np.ndarray | None) -> np.ndarray:
    s = np.linspace(0, 1, n) if s is None else s
    x = s * (len(chain) - 1)
    seg = np.minimum(x.astype(int), len(chain) - 2)
    t = x - seg
    w = np.zeros((len(s), N_POINTS))
    np.add.at(w, (np.arange(len(s)), np.asarray(chain)[seg]), 1 - t)
    np.add.at(w, (np.arange(len(s)), np.asarray(chain)[seg + 1]), t)
    return w


def _lip_samples(outer: list[int], inner: list[int], n: int, rng: np.random.Generator):
    s = rng.random(n)
    t = rng.random(n)[:, None]
    return t * _chain_at(outer, n, s) + (1 - t) * _chain_at(inner, n, s)


def _features(rng: np.random.Generator, density: float):
    """Feature samples: (weights [F,68], lift [F,3] in model units, albedo class [F])."""
    parts = []

    def add(w, cls, lift):
        lift = np.broadcast_to(np.asarray(lift, float), (len(w), 3))
        cls = np.broadcast_to(np.asarray(cls), (len(w),))
        parts.append((w, lift, cls))

    n = lambda k: max(8, int(k * density))  # noqa: E731
    for ring in ([36, 37, 38, 39, 40, 41], [42, 43, 44, 45, 46, 47]):
        w, centre = _polygon_samples(ring, n(260), rng)
        add(w, np.where(centre > 0.55, IRIS, SCLERA), [0, 0, 2.0])
        add(_segment_samples(ring[:4], n(60), rng), IRIS, [0, 0.6, 2.2])  # lash line
    for chain in ([17, 18, 19, 20, 21], [22, 23, 24, 25, 26]):
        w = _segment_samples(chain, n(240), rng)
        add(w, BROW, np.stack([np.zeros(len(w)), rng.uniform(-1.5, 3.5, len(w)),
                               np.full(len(w), 2.5)], 1))
    for i in (32, 34):
        w = np.zeros((n(50), N_POINTS))
        w[:, i] = 1
        jitter = rng.normal(0, 1.6, (len(w), 3)) * [1, 0.7, 0]
        add(w, DARK, jitter + [0, 0, 2.0])
    add(_segment_samples([31, 32, 33, 34, 35], n(60), rng), DARK, [0, 0.5, 2.0])
    add(_segment_samples([27, 28, 29, 30], n(40), rng), DARK, [0, 0, 1.0])
    add(_lip_samples([48, 49, 50, 51, 52, 53, 54], [60, 61, 62, 63, 64], n(300), rng),
        LIP, [0, 0, 2.0])
    add(_lip_samples([54, 55, 56, 57, 58, 59, 48], [64, 65, 66, 67, 60], n(300), rng),
        LIP, [0, 0, 2.0])
    w, _ = _polygon_samples([60, 61, 62, 63, 64, 65, 66, 67], n(260), rng)
    add(w, MOUTH, [0, 0, 1.5])
    w = np.concatenate([p[0] for p in parts])
    return w, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


_CLOUDS: dict[tuple, PointCloud] = {}


def point_cloud(mm: MorphableModel, size: int) -> PointCloud:
    """The renderer's points for crops of ``size`` pixels (denser grids at 120 px)."""
    key = (hash(mm.u.tobytes()), size)
    if key not in _CLOUDS:
        _CLOUDS[key] = _build_cloud(mm, size)
    return _CLOUDS[key]


def _build_cloud(mm: MorphableModel, size: int) -> PointCloud:
    rng = np.random.default_rng(1234)
    n_u, n_v = (112, 80) if size <= 72 else (168, 120)
    grid = _head_grid(n_u, n_v)
    head = grid.reshape(-1, 3)
    u = mm.u[:, 0].reshape(N_POINTS, 3).astype(np.float64)
    # Pull the egg onto the template: each landmark's offset from its nearest surface
    # point, blended over the surface (the jaw line becomes the silhouette, the nose
    # and lips stand out).
    anchors = head[np.argmin(_sqdist(u, head), axis=1)]
    weights = _shepard(head, anchors, sigma=8.0, reach=16.0)
    surface = head + weights @ (u - anchors)
    normals = _grid_normals(surface.reshape(grid.shape)).reshape(-1, 3)
    # the head follows the landmarks' displacement from the template: M X + C
    head_c = surface - weights @ u
    fw, lift, cls = _features(rng, (size / 64.0) ** 1.5)
    # a feature's normal is the normal of the surface point nearest its template position
    feat = fw @ u
    nearest = np.concatenate([np.argmin(_sqdist(feat[i:i + 512], surface), axis=1)
                              for i in range(0, len(feat), 512)])
    M = np.concatenate([weights, fw])
    C = np.concatenate([head_c, lift])
    nrm = np.concatenate([normals, normals[nearest]])
    albedo = np.concatenate([np.full(len(head), SKIN), cls]).astype(np.int64)
    return PointCloud(M.astype(np.float32), C.astype(np.float32), nrm.astype(np.float32),
                      albedo, splat=2 if size <= 72 else 3)


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None]


def project(params: np.ndarray, shapes: np.ndarray, cloud: PointCloud, size: int):
    """Pixel columns, rows and depth (bigger = nearer), each ``[B, P]``, of the cloud's
    points for faces ``shapes [B,68,3]`` posed by ``params [B,62]``.

    ``v = sR (M X + C) + t = M (X (sR)^T) + C (sR)^T + t``: two GEMMs for the batch."""
    P, t, _, _ = split_params(params)
    B = len(params)
    Pt = np.swapaxes(P, -1, -2)
    xp = (shapes @ Pt).astype(np.float32)  # [B, 68, 3]
    v = (xp.transpose(0, 2, 1).reshape(B * 3, N_POINTS) @ cloud.M.T).reshape(B, 3, -1)
    v += (P.reshape(B * 3, 3).astype(np.float32) @ cloud.C.T).reshape(B, 3, -1)
    v += t[:, :, None].astype(np.float32)
    scale = np.float32(size / FRAME)
    return (v[:, 0] - 1) * scale, (FRAME - v[:, 1]) * scale, v[:, 2]


def render_faces(params: np.ndarray, shapes: np.ndarray, mm: MorphableModel, size: int,
                 rng: np.random.Generator, return_depth: bool = False):
    """Render ``B`` faces: ``params [B,62]`` (pose), ``shapes [B,68,3]`` (the model points
    of each face). Returns ``uint8 [B,3,size,size]`` (and the depth buffer ``[B,size,size]``
    of the face points, ``-inf`` where no point landed, if ``return_depth``)."""
    cloud = point_cloud(mm, size)
    B = len(params)
    col, row, depth = project(params, shapes, cloud, size)
    P = split_params(params)[0]
    rot = P / np.linalg.norm(P[:, :1, :], axis=-1, keepdims=True)  # R = sR / s
    rot = rot.astype(np.float32)
    front = (rot[:, 2, :] @ cloud.normals.T) > 0  # [B, P]: faces the camera (+z)
    zbuf = _zbuffer(col, row, depth, front, cloud.splat, size)  # [B*S*S] codes or -1
    img = _backgrounds(B, size, rng).reshape(-1, 3)
    hit = np.flatnonzero(zbuf >= 0)
    winner = zbuf[hit] & _IDX_MASK  # flat point index b * P + p
    img[hit] = _shade(cloud, rot, winner, B, rng)
    img = img.reshape(B, size, size, 3)
    _occlude(img, col, row, rng)
    img = _photometric(img, rng)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)
    if not return_depth:
        return out
    depth_map = np.full(B * size * size, -np.inf)
    depth_map[hit] = (zbuf[hit] >> _IDX_BITS) / _DEPTH_STEPS - _DEPTH_OFFSET
    return out, depth_map.reshape(B, size, size)


_IDX_BITS = 24
_IDX_MASK = (1 << _IDX_BITS) - 1
_DEPTH_STEPS = 64.0  # depth quantum: 1/64 of a 120-frame pixel
_DEPTH_OFFSET = 4096.0


def _zbuffer(col, row, depth, front, k: int, size: int) -> np.ndarray:
    """Nearest point per pixel: each point's code = quantised depth << 24 | point index;
    ``np.maximum.at`` keeps the largest code (nearest point) per pixel. Back-facing
    points are dropped first; the buffer has a k-pixel margin on every side into which
    off-image points are clamped (and which is cut off), so no per-splat bounds checks."""
    B, n = col.shape
    if B * n > _IDX_MASK:
        raise ValueError("render batch too large for the z-buffer code")
    sel = np.flatnonzero(front)
    side = size + 2 * k
    half = (k - 1) / 2 - 0.5 - k  # floor(x - (k-1)/2 + 0.5) + k, as floor(x - half)
    c = np.clip(np.floor(col.ravel()[sel] - half), 0, side - k).astype(np.int64)
    r = np.clip(np.floor(row.ravel()[sel] - half), 0, side - k).astype(np.int64)
    dq = np.rint((depth.ravel()[sel] + _DEPTH_OFFSET) * _DEPTH_STEPS).astype(np.int64)
    code = (np.clip(dq, 0, 2**36) << _IDX_BITS) | sel
    base = (sel // n) * (side * side) + r * side + c
    del c, r, dq
    zbuf = np.full(B * side * side, -1, np.int64)
    for dr in range(k):
        for dc in range(k):
            np.maximum.at(zbuf, base + (dr * side + dc), code)
    return zbuf.reshape(B, side, side)[:, k:k + size, k:k + size].reshape(-1)


def _shade(cloud: PointCloud, rot: np.ndarray, winner: np.ndarray, B: int,
           rng: np.random.Generator) -> np.ndarray:
    """Colours of the winning points (flat indices ``b * P + p``): albedo (skin tinted
    per image) times ambient + Lambert with a random light."""
    skin = rng.uniform([0.45, 0.28, 0.18], [1.0, 0.85, 0.75], (B, 3))
    skin[:, 1:] = np.minimum(skin[:, 1:], skin[:, :1])  # keep skin tones reddish
    light = rng.normal(0, 1, (B, 3)) * [0.6, 0.6, 0.3] + [0, 0.2, 1.0]
    light /= np.linalg.norm(light, axis=1, keepdims=True)
    ambient = rng.uniform(0.25, 0.5, B)
    n_pts, n_cls = len(cloud.albedo_class), len(ALBEDO)
    # per-image colour table of the albedo classes (skin tinted), and Lambert of every
    # point of every image as one GEMM: n' . l = n . (R^T l)
    table = np.broadcast_to(ALBEDO, (B, n_cls, 3)).copy()
    table[:, SKIN] *= skin
    l_model = np.einsum("bji,bj->bi", rot, light).astype(np.float32)  # [B, 3]
    lambert = np.maximum(l_model @ cloud.normals.T, 0).reshape(-1)  # [B * P]
    b = winner // n_pts
    shade = ambient[b] + (1 - ambient[b]) * lambert[winner]
    colour = table.reshape(-1, 3)[b * n_cls + cloud.albedo_class[winner - b * n_pts]]
    return (colour * (shade * 255)[:, None]).astype(np.float32)


def _backgrounds(B: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Linear gradients between two random colours plus blocky random noise, float32
    ``[B, S, S, 3]``."""
    ang = rng.uniform(0, 2 * np.pi, B)
    cos, sin = np.cos(ang), np.sin(ang)
    lo = np.minimum(cos, 0) + np.minimum(sin, 0)  # the ramp's extremes over the unit square
    hi = np.maximum(cos, 0) + np.maximum(sin, 0)
    t = (np.arange(size) / (size - 1)).astype(np.float32)
    ramp = (cos[:, None, None] * t[None, None, :] + sin[:, None, None] * t[None, :, None]
            - lo[:, None, None]) / (hi - lo)[:, None, None]
    c0, c1 = rng.uniform(0, 255, (2, B, 1, 1, 3)).astype(np.float32)
    cells = rng.integers(3, 12, B)
    noise = rng.standard_normal((B, 12, 12, 3), dtype=np.float32)
    noise *= rng.uniform(0, 60, (B, 1, 1, 1)).astype(np.float32)
    idx = (np.arange(size)[None, :] * cells[:, None]) // size  # [B, S] nearest upsampling
    rows = np.take_along_axis(noise, idx[:, :, None, None], axis=1)  # [B, S, 12, 3]
    out = np.take_along_axis(rows, idx[:, None, :, None], axis=2)  # [B, S, S, 3]
    out += c0
    out += (c1 - c0) * ramp.astype(np.float32)[..., None]
    return out


def _occlude(img: np.ndarray, col: np.ndarray, row: np.ndarray, rng: np.random.Generator):
    """In half the images, a rectangle or ellipse of random colour over 10-30% of the
    face's box."""
    B, S = img.shape[:2]
    x0, x1 = np.percentile(col, [2, 98], axis=1)
    y0, y1 = np.percentile(row, [2, 98], axis=1)
    area = rng.uniform(0.1, 0.3, B) * (x1 - x0) * (y1 - y0)
    aspect = np.exp(rng.uniform(-0.7, 0.7, B))
    w, h = np.sqrt(area * aspect), np.sqrt(area / aspect)
    cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
    ellipse = rng.random(B) < 0.5
    colour = rng.uniform(0, 255, (B, 3))
    on = np.flatnonzero(rng.random(B) < 0.5)
    yy, xx = np.mgrid[0:S, 0:S]
    for i in on:
        dx, dy = (xx - cx[i]) / (w[i] / 2), (yy - cy[i]) / (h[i] / 2)
        mask = (dx**2 + dy**2 <= 1) if ellipse[i] else ((abs(dx) <= 1) & (abs(dy) <= 1))
        img[i][mask] = colour[i]


def _photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur (40% of images), contrast and brightness changes, Gaussian noise; in place."""
    B = len(img)
    blur = np.flatnonzero(rng.random(B) < 0.4)
    if len(blur):
        b = img[blur]
        img[blur] = (4 * b + np.roll(b, 1, 1) + np.roll(b, -1, 1) + np.roll(b, 1, 2)
                     + np.roll(b, -1, 2)) / 8
    gain = rng.uniform(0.7, 1.3, (B, 1, 1, 1)).astype(np.float32)
    bias = rng.uniform(-25, 25, (B, 1, 1, 1)).astype(np.float32)
    mean = img.mean((1, 2, 3), keepdims=True, dtype=np.float32)
    img -= mean
    img *= gain
    img += mean + bias
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    noise *= rng.uniform(0, 8, (B, 1, 1, 1)).astype(np.float32)
    img += noise
    return img
