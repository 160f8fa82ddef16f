"""Digits classification: scikit-learn's bundled 8x8 digits, top-1 accuracy."""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.lab.tasks.base import ClassifierTask, Split


@dataclass(frozen=True)
class DigitsOptions:
    """No options beyond the common ``seed`` (the split) and ``batch_size``."""


class DigitsTask(ClassifierTask):
    """Input rule: pixels 0..16 / 16, so inputs lie in [0, 1]; 10 logits out."""

    name = "digits"
    models = ("digits_cnn", "digits_resnet", "digits_concat")
    default_model = "digits_cnn"
    Options = DigitsOptions
    threads = 1  # tiny networks: one thread is faster and immune to a busy second core

    def _load(self, progress: bool) -> dict[str, Split]:
        from edgeq.data import load_digits_splits

        sp = load_digits_splits(self.config.task.seed)
        return {name: Split(*sp.split(name)) for name in ("train", "val", "test")}

    @classmethod
    def demo_config(cls, output_dir: str):
        from edgeq.lab.config import PipelineConfig

        return PipelineConfig(output_dir=output_dir)
