"""3DDFA's parameter normalisation: the network regresses ``(p - mean) / std``."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.data.face3d.model import N_PARAMS
from edgeq.errors import ConfigError

WHITENING_FILE = "whitening.json"  # written beside exported models; read by the app
MIN_STD = 1e-6  # a constant column (e.g. a fixed z offset) is left unscaled


@dataclass(frozen=True, eq=False)
class ParamWhitening:
    """Per-parameter ``mean`` and ``std`` (float32 ``[62]``)."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        for name in ("mean", "std"):
            v = np.asarray(getattr(self, name), np.float32).reshape(-1)
            if v.shape != (N_PARAMS,) or not np.all(np.isfinite(v)):
                raise ConfigError(f"whitening '{name}' must be {N_PARAMS} finite numbers")
            object.__setattr__(self, name, v)
        if np.any(self.std <= 0):
            raise ConfigError("whitening 'std' must be positive")

    @staticmethod
    def fit(params: np.ndarray) -> ParamWhitening:
        """Mean and std of ``params [N,62]``; constant columns get std 1."""
        p = np.asarray(params, np.float64)
        std = p.std(0)
        return ParamWhitening(p.mean(0), np.where(std < MIN_STD, 1.0, std))

    def whiten(self, params: np.ndarray) -> np.ndarray:
        return ((np.asarray(params, np.float64) - self.mean) / self.std).astype(np.float32)

    def dewhiten(self, out: np.ndarray) -> np.ndarray:
        return (np.asarray(out, np.float64) * self.std + self.mean).astype(np.float32)

    def to_json(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @staticmethod
    def from_json(data: dict) -> ParamWhitening:
        if not isinstance(data, dict) or set(data) != {"mean", "std"}:
            raise ConfigError("whitening JSON must be an object with keys 'mean' and 'std'")
        return ParamWhitening(np.asarray(data["mean"], np.float32),
                              np.asarray(data["std"], np.float32))

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (``whitening.json`` beside a model, by convention)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_json(), f)
        os.replace(tmp, path)

    @staticmethod
    def load(path: str | os.PathLike) -> ParamWhitening:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read whitening file '{path}': {e}") from None
        try:
            return ParamWhitening.from_json(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
