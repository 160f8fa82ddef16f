"""A digits task on small subsets, so that experiment tests train in about a second per run.

Named by import path in test designs (``tests.lab.experiment.tiny:TinyDigits``): worker
processes import it too.
"""

from __future__ import annotations

from edgeq.lab.tasks.base import Split
from edgeq.lab.tasks.digits import DigitsTask

SIZES = {"train": 160, "val": 32, "test": 96}


class TinyDigits(DigitsTask):
    name = "tiny_digits"

    def _load(self, progress: bool) -> dict[str, Split]:
        full = super()._load(progress)
        return {k: Split(s.raw[:SIZES[k]], s.targets[:SIZES[k]]) for k, s in full.items()}


class BrokenDigits(TinyDigits):
    """Loads nothing: every run of it fails (the experiment must go on without it)."""

    def _load(self, progress: bool) -> dict[str, Split]:
        raise RuntimeError("broken on purpose")


def tiny_image_cnn(in_channels: int, side: int, classes: int):
    """A user model by import path (``tests.lab.experiment.tiny:tiny_image_cnn``)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * (side // 2) ** 2, classes))
