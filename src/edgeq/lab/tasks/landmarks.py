"""3DDFA facial landmarks on the synthetic faces of :mod:`edgeq.data.face3d`.

The network regresses 3DDFA's whitened 62-vector ``(p - mean) / std``; the metric is
3DDFA's box-normalised NME of the 68 reconstructed landmarks (percent, lower is better),
per yaw bin and as the mean over faces. Input rule (3DDFA's ``NormalizeGjz``, the one
the torch-free landmark app applies): ``(pixel - 127.5) / 128``, quantised as signed 8
bit with ε = 1/128 (so the integer input is ``pixel - 127``, ties rounded half up).

Loss: ``pdc`` (MSE of the whitened parameters) or ``wpdc`` (3DDFA's weighted parameter
distance), plus ``vdc_weight`` x VDC, the mean squared distance of the 68 reconstructed
points in the 120-pixel parameter frame, in units of :data:`VDC_UNIT_PX` pixels.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgeq.errors import ConfigError
from edgeq.lab.tasks.base import Metric, Split, Task

VDC_UNIT_PX = 10.0  # VDC in units of 10 px of the 120 frame: comparable to the PDC term
LOSSES = ("pdc", "wpdc")
PICTURE_FACES = 8  # test faces drawn in landmarks.png
PICTURE_SCALE = 3  # pixels per crop pixel in landmarks.png


@dataclass(frozen=True)
class LandmarksOptions:
    """Task keys beyond ``seed`` and ``batch_size`` (see the module docstring)."""

    n_train: int = 20000
    n_val: int = 500
    n_test: int = 1000
    loss: str = "pdc"
    vdc_weight: float = 1.0
    model_seed: int = 0  # of the procedural morphable model
    cache_dir: str | None = None  # .npz cache of generated sets; None: always generate

    def __post_init__(self) -> None:
        for key, lo in (("n_train", 1), ("n_val", 1), ("n_test", 3)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= 10**7:
                raise ConfigError(f"task.{key} must be an integer in [{lo}, 10000000], "
                                  f"got {v!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"task.loss must be one of {list(LOSSES)}, got {self.loss!r}")
        w = self.vdc_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1e6:
            raise ConfigError(f"task.vdc_weight must be a number in [0, 1e6], got {w!r}")
        if isinstance(self.model_seed, bool) or not isinstance(self.model_seed, int) \
                or not 0 <= self.model_seed < 2**31:
            raise ConfigError(f"task.model_seed must be an integer in [0, 2**31), "
                              f"got {self.model_seed!r}")
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            raise ConfigError(f"task.cache_dir must be a string or null, got {self.cache_dir!r}")


class LandmarksTask(Task):
    """Synthetic 3DDFA: MobileNetV1 (3DDFA layout) regresses 62 whitened parameters."""

    name = "landmarks_3ddfa"
    metric = Metric("nme", higher_is_better=False, label="NME %")
    models = ("mobilenet_v1_3ddfa",)
    default_model = "mobilenet_v1_3ddfa"
    Options = LandmarksOptions
    classification = False
    threads = 1  # measured: on 2 shared cores a second thread costs more than it gives
    default_input = {"bits": 8, "signed": True, "lo": -1.0, "hi": 1.0}  # ε = 1/128
    output_name = "params"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.faces: dict = {}
        self.whitening = None
        self._mm = None
        self._torch_consts: dict[str, torch.Tensor] = {}

    @property
    def size(self) -> int:
        return self.config.model.resolved()[1]

    @property
    def mm(self):
        from edgeq.data.face3d import MorphableModel

        if self._mm is None:
            self._mm = MorphableModel.synthetic(self.options.model_seed)
        return self._mm

    # -- data -------------------------------------------------------------------------------
    def _load(self, progress: bool) -> dict[str, Split]:
        from edgeq.data.face3d import ParamWhitening, generate

        o, seed = self.options, self.config.task.seed
        # Three disjoint deterministic streams per task seed.
        sizes = {"train": o.n_train, "val": o.n_val, "test": o.n_test}
        for k, (name, n) in enumerate(sizes.items()):
            self.faces[name] = generate(n, size=self.size, seed=3 * seed + k, mm=self.mm,
                                        progress=progress, cache_dir=o.cache_dir)
        self.whitening = ParamWhitening.fit(self.faces["train"].params)
        return {name: Split(torch.from_numpy(np.ascontiguousarray(f.images)),
                            torch.from_numpy(self.whitening.whiten(f.params)))
                for name, f in self.faces.items()}

    def to_input(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw.float() - 127.5) / 128.0

    # -- loss --------------------------------------------------------------------------------
    def _consts(self) -> dict[str, torch.Tensor]:
        if not self._torch_consts:
            self.load(progress=False)
            mm, wh = self.mm, self.whitening
            self._torch_consts = {
                "u": torch.from_numpy(mm.u.reshape(-1)).float(),
                "w": torch.from_numpy(np.concatenate([mm.w_shp, mm.w_exp], 1)).float(),
                "mean": torch.from_numpy(wh.mean).float(),
                "std": torch.from_numpy(wh.std).float(),
            }
        return self._torch_consts

    def _points(self, p: torch.Tensor) -> torch.Tensor:
        """[N,3,68] shapes ``u + W α`` of de-whitened parameters, 3DDFA's layout."""
        c = self._consts()
        flat = c["u"] + p[:, 12:] @ c["w"].T  # [N,204], x, y, z interleaved per point
        return flat.view(-1, 68, 3).transpose(1, 2)

    def project(self, p: torch.Tensor) -> torch.Tensor:
        """The 68 points ``(s·R @ X + t)[:2]`` in the 120 frame (y up), ``[N,2,68]``."""
        pose = p[:, :12].view(-1, 3, 4)
        return pose[:, :2, :3] @ self._points(p) + pose[:, :2, 3:]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        c = self._consts()
        if self.options.loss == "wpdc":
            total = (self._wpdc_weights(outputs, targets) * (outputs - targets) ** 2).mean()
        else:
            total = ((outputs - targets) ** 2).mean()
        if self.options.vdc_weight > 0:
            p_hat, p = outputs * c["std"] + c["mean"], targets * c["std"] + c["mean"]
            err = (self.project(p_hat) - self.project(p)) / VDC_UNIT_PX
            total = total + self.options.vdc_weight * (err ** 2).mean()
        return total

    @torch.no_grad()
    def _wpdc_weights(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """3DDFA's WPDC weights: the vertex error each parameter's deviation causes.

        Pose entry (r, c): |Δp|·‖coordinate c of the true shape‖; offsets x, y:
        |Δp|·√68; shape/expression k: |Δα_k|·s·‖column k of W‖, with s the true scale
        (3DDFA uses a constant for its BFM scale); normalised by the per-sample maximum;
        the z offset (index 11, no effect on 2D points) gets weight 0.
        """
        c = self._consts()
        p_hat, p = outputs * c["std"] + c["mean"], targets * c["std"] + c["mean"]
        delta = (p_hat - p).abs()
        coord_norm = self._points(p).norm(dim=2)  # [N,3]: norms of the x, y, z rows
        pose = delta[:, :12].reshape(-1, 3, 4)
        pose_w = torch.cat([pose[:, :, :3] * coord_norm[:, None, :],
                            pose[:, :, 3:] * 68 ** 0.5], dim=2).reshape(-1, 12)
        scale = p[:, :12].reshape(-1, 3, 4)[:, :2, :3].norm(dim=2).mean(1, keepdim=True)
        w = torch.cat([pose_w, delta[:, 12:] * scale * c["w"].norm(dim=0)], dim=1)
        w = w + 1e-6
        w = w / w.max(dim=1, keepdim=True).values
        w[:, 11] = 0
        return w

    # -- metrics -----------------------------------------------------------------------------
    def landmarks(self, outputs) -> np.ndarray:
        """[N,2,68] crop-pixel landmarks from network outputs (whitened parameters)."""
        from edgeq.data.face3d import reconstruct_landmarks

        self.load(progress=False)
        params = self.whitening.dewhiten(np.asarray(torch.as_tensor(outputs), np.float64))
        return reconstruct_landmarks(params, self.mm, self.size)

    def evaluate(self, outputs, split: str = "test") -> dict[str, float]:
        from edgeq.data.face3d import nme_report

        self.split(split)
        f = self.faces[split]
        return nme_report(self.landmarks(outputs), f.landmarks, f.boxes, f.yaw)

    def columns(self) -> dict[str, str]:
        return {"nme": "NME %", "nme_yaw_0_30": "yaw 0-30", "nme_yaw_30_60": "yaw 30-60",
                "nme_yaw_60_90": "yaw 60-90", "nme_bins_mean": "bins mean"}

    def baselines(self) -> dict[str, dict[str, float]]:
        from edgeq.data.face3d import baseline_mean_params, baseline_oracle_pose

        self.load(progress=False)
        return {"mean": baseline_mean_params(self.faces["train"], self.faces["test"], self.mm),
                "oracle_pose": baseline_oracle_pose(self.faces["test"], self.mm)}

    def baseline_labels(self) -> dict[str, str]:
        return {"mean": "baseline: mean parameters", "oracle_pose": "baseline: true pose, α=0"}

    # -- artefacts ---------------------------------------------------------------------------
    def write_artefacts(self, out: Path, outputs: dict[str, np.ndarray]) -> list[str]:
        """``whitening.json`` (read by the landmark app beside the models) and
        ``landmarks.png``: test faces, true points green, the int8 network's red — the
        deployed C program's when it ran, else the engine's."""
        from edgeq.data.face3d import WHITENING_FILE

        self.whitening.save(out / WHITENING_FILE)
        stage = next((s for s in ("deployed", "engine") if s in outputs), next(iter(outputs)))
        n = min(PICTURE_FACES, len(self.faces["test"]))
        picture = draw_landmarks(self.faces["test"].images[:n],
                                 self.faces["test"].landmarks[:n],
                                 self.landmarks(outputs[stage][:n]))
        write_png(out / "landmarks.png", picture)
        meta = {"input_rule": "(pixel - 127.5) / 128, RGB, CHW", "size": self.size,
                "model_seed": self.options.model_seed, "picture_stage": stage}
        (out / "landmarks_task.json").write_text(json.dumps(meta, indent=2) + "\n")
        return [WHITENING_FILE, "landmarks.png", "landmarks_task.json"]

    @classmethod
    def demo_config(cls, output_dir: str):
        from edgeq.lab.config import ModelConfig, PipelineConfig, TaskConfig, TrainingConfig

        return PipelineConfig(
            task=TaskConfig("landmarks_3ddfa", seed=0, batch_size=64,
                            options=LandmarksOptions(**DEMO_SIZES)),
            model=ModelConfig("mobilenet_v1_3ddfa", **DEMO_MODEL),
            training=TrainingConfig(**DEMO_TRAINING),
            output_dir=output_dir)


# The demo's sizes: the whole chain in <= 10 minutes on 2 loaded cores (see README).
# Width 0.25 costs about half of width 0.5 per training epoch (benchmarks/landmarks_qat.py:
# 12.2 vs 24.4 CPU s per 8000 faces); width 0.5 is more accurate but would not fit.
DEMO_MODEL = {"width": 0.25, "input_size": 64}
DEMO_SIZES = {"n_train": 7000, "n_val": 64, "n_test": 256}
DEMO_TRAINING = {"fp_epochs": 4, "qat_epochs": 1, "lr": 3e-3, "qat_lr": 5e-4,
                 "schedule": "onecycle"}


# -- picture -----------------------------------------------------------------------------------
def draw_landmarks(images: np.ndarray, true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """A row of upscaled faces ``[H,W,3] uint8``: true points green, predicted red."""
    tiles = []
    for img, t, p in zip(images, true, pred, strict=True):
        tile = np.repeat(np.repeat(np.transpose(img, (1, 2, 0)), PICTURE_SCALE, 0),
                         PICTURE_SCALE, 1).copy()
        for pts, colour in ((t, (0, 255, 0)), (p, (255, 40, 40))):
            _dots(tile, pts * PICTURE_SCALE + (PICTURE_SCALE - 1) / 2, colour)
        tiles.append(np.pad(tile, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    return np.concatenate(tiles, axis=1)


def _dots(tile: np.ndarray, pts: np.ndarray, colour) -> None:
    h, w, _ = tile.shape
    xs, ys = np.rint(pts[0]).astype(int), np.rint(pts[1]).astype(int)
    for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):  # a small plus sign
        x, y = xs + dx, ys + dy
        ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        tile[y[ok], x[ok]] = colour


def write_png(path: Path, rgb: np.ndarray) -> None:
    """An 8-bit RGB PNG (no image library needed), written atomically."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(np.uint8).tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
           + chunk(b"IEND", b""))
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=Path(path).parent)
    with os.fdopen(fd, "wb") as f:
        f.write(png)
    os.replace(tmp, path)
