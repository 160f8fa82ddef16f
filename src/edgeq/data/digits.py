"""scikit-learn's bundled 8x8 digits (1797 images, no download) as torch tensors.

Pixels are integers 0..16 in the source; we divide by 16 so inputs lie in [0, 1] and are
exactly representable with eps = 1/16 (useful later: the input is already integer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from edgeq.errors import ConfigError

PIXEL_MAX = 16.0


@dataclass(frozen=True)
class DigitsSplits:
    """Three disjoint stratified splits; images N x 1 x 8 x 8 float32, labels int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in ("train", "val", "test"):
            raise ConfigError(f"unknown digits split {name!r}; expected train, val or test")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != 3 or any(f <= 0 for f in fractions):
        raise ConfigError(f"digits fractions must be three positive numbers, got {fractions}")
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ConfigError(f"digits fractions must sum to 1, got {fractions} (sum {sum(fractions)})")


def _to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy((x / PIXEL_MAX).astype(np.float32)).reshape(-1, 1, 8, 8)
    return images, torch.from_numpy(y.astype(np.int64))


def load_digits_splits(
    seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> DigitsSplits:
    """Deterministic stratified train/validation/test split of the digits, by ``seed``."""
    _check_fractions(fractions)
    data = load_digits()
    x, y = data.data, data.target
    train_frac, val_frac, test_frac = fractions
    # Two stratified cuts: first peel off the test set, then split the rest.
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_frac, stratify=y, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_frac / (train_frac + val_frac), stratify=y_rest,
        random_state=seed,
    )
    return DigitsSplits(
        *_to_tensors(x_train, y_train), *_to_tensors(x_val, y_val), *_to_tensors(x_test, y_test)
    )


def digits_loaders(
    batch_size: int = 64,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    splits: DigitsSplits | None = None,
) -> dict[str, DataLoader]:
    """``{"train", "val", "test"}`` loaders; only train shuffles, with a seeded generator."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    splits = splits if splits is not None else load_digits_splits(seed, fractions)
    generator = torch.Generator().manual_seed(seed)
    loaders = {}
    for name in ("train", "val", "test"):
        dataset = TensorDataset(*splits.split(name))
        shuffle = name == "train"
        loaders[name] = DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle,
            generator=generator if shuffle else None,
        )
    return loaders
