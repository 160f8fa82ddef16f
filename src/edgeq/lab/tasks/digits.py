"""Digits classification: scikit-learn's bundled 8x8 digits, top-1 accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgeq.lab.tasks.base import Metric, Split, Task


@dataclass(frozen=True)
class DigitsOptions:
    """No options beyond the common ``seed`` (the split) and ``batch_size``."""


class DigitsTask(Task):
    """Input rule: pixels 0..16 / 16, so inputs lie in [0, 1]; 10 logits out."""

    name = "digits"
    metric = Metric("accuracy", higher_is_better=True, label="test accuracy %")
    models = ("digits_cnn", "digits_resnet", "digits_concat")
    default_model = "digits_cnn"
    Options = DigitsOptions
    classification = True
    threads = 1  # tiny networks: one thread is faster and immune to a busy second core
    output_name = "logits"

    def _load(self, progress: bool) -> dict[str, Split]:
        from edgeq.data import load_digits_splits

        sp = load_digits_splits(self.config.task.seed)
        return {name: Split(*sp.split(name)) for name in ("train", "val", "test")}

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs, targets)

    def evaluate(self, outputs, split: str = "test") -> dict[str, float]:
        logits = torch.as_tensor(outputs)
        labels = self.split(split).targets
        return {"accuracy": float((logits.argmax(dim=1) == labels).double().mean() * 100.0)}

    @classmethod
    def demo_config(cls, output_dir: str):
        from edgeq.lab.config import PipelineConfig

        return PipelineConfig(output_dir=output_dir)
