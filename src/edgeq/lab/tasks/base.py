"""The Task interface the pipeline is generic over."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from edgeq.errors import ConfigError

if TYPE_CHECKING:
    from edgeq.lab.config import PipelineConfig

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Metric:
    """The primary metric: its summary key, direction and how tables label it."""

    name: str  # key in evaluate()'s dict and in summary.json (``fp_<name>`` ...)
    higher_is_better: bool
    label: str  # table header, e.g. "test accuracy %"


@dataclass(frozen=True)
class Split:
    """One split: ``raw`` inputs (any dtype; the task's :meth:`Task.to_input` makes them
    the network's float input) and ``targets``, both indexed by sample first."""

    raw: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.raw)


class Task:
    """Datasets per split, model factory, loss, metrics and input rule of one task.

    Subclasses set the class attributes and implement :meth:`_load`, :meth:`loss`,
    :meth:`evaluate`; the rest has working defaults. ``config`` is the whole
    :class:`~edgeq.lab.config.PipelineConfig` (task options, model, input rule).
    """

    name: ClassVar[str]
    metric: ClassVar[Metric]
    models: ClassVar[tuple[str, ...]]  # model names that can do this task
    default_model: ClassVar[str]
    Options: ClassVar[type]  # frozen dataclass of the task's own config keys
    classification: ClassVar[bool] = False  # fidelity reports count top-1 on labels
    threads: ClassVar[int | None] = 1  # torch threads while the pipeline runs (None: keep)
    output_name: ClassVar[str] = "output"  # of the exported ONNX files
    default_input: ClassVar[dict] = {}  # InputConfig keys the task's input rule needs

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.options = config.task.options
        self.splits: dict[str, Split] = {}

    # -- data ------------------------------------------------------------------------------
    def load(self, progress: bool = True) -> None:
        """Prepare every split (download nothing: bundled or generated data)."""
        if not self.splits:
            self.splits = self._load(progress)

    def _load(self, progress: bool) -> dict[str, Split]:
        raise NotImplementedError

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
        self.load(progress=False)
        return self.splits[name]

    def use_fold(self, fold: int, folds: int, seed: int) -> None:
        """Cross-validation: train on the training split minus fold ``fold`` of ``folds``
        and validate on that fold (it replaces ``val``); ``test`` stays untouched."""
        if not 0 <= fold < folds:
            raise ConfigError(f"fold {fold} out of range for {folds} folds")
        self.load(progress=False)
        train = self.splits["train"]
        parts = fold_indices(len(train), folds, seed)
        held = parts[fold]
        keep = np.sort(np.concatenate([p for k, p in enumerate(parts) if k != fold]))
        held_t, keep_t = torch.from_numpy(held), torch.from_numpy(keep)
        self.splits = {**self.splits,
                       "train": Split(train.raw[keep_t], train.targets[keep_t]),
                       "val": Split(train.raw[held_t], train.targets[held_t])}

    def to_input(self, raw: torch.Tensor) -> torch.Tensor:
        """The input rule: raw split data -> the network's float input (default: as is)."""
        return raw.float()

    def inputs(self, split: str, limit: int | None = None) -> torch.Tensor:
        raw = self.split(split).raw
        return self.to_input(raw if limit is None else raw[:limit])

    def example_input(self) -> torch.Tensor:
        return self.inputs("test", limit=1)

    def batches(self, split: str, batch_size: int, seed: int,
                shuffle: bool = True) -> Batches:
        return Batches(self, self.split(split), batch_size, seed, shuffle)

    # -- model, loss, metrics ----------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from edgeq.models.registry import model_spec

        m = self.config.model
        if m.import_ is not None:  # user code by import path
            return m.build()
        return model_spec(m.name).build(m.width, m.input_size)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, outputs: Any, split: str = "test") -> dict[str, float]:
        """Metrics of float ``outputs`` on ``split``; holds ``metric.name`` at least."""
        raise NotImplementedError

    def columns(self) -> dict[str, str]:
        """Metric keys of :meth:`evaluate` shown in tables -> column labels."""
        return {self.metric.name: self.metric.label}

    def baselines(self) -> dict[str, dict[str, float]]:
        """Reference results reported beside every run: name -> metrics (as evaluate's);
        summary keys ``baseline_<name>_<metric>``."""
        return {}

    def baseline_labels(self) -> dict[str, str]:
        """Baseline name -> table row label."""
        return {}

    def write_artefacts(self, out: Path, outputs: dict[str, np.ndarray]) -> list[str]:
        """Task files beside the models (``outputs``: float test outputs per stage)."""
        return []

    @classmethod
    def demo_config(cls, output_dir: str) -> PipelineConfig:
        raise NotImplementedError



class ClassifierTask(Task):
    """A task scored by top-1 accuracy of logits with cross-entropy training."""

    metric = Metric("accuracy", higher_is_better=True, label="test accuracy %")
    classification = True
    output_name = "logits"

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs, targets)

    def evaluate(self, outputs, split: str = "test") -> dict[str, float]:
        logits = torch.as_tensor(outputs)
        labels = self.split(split).targets
        return {"accuracy": float((logits.argmax(dim=1) == labels).double().mean() * 100.0)}

def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """QuantLab's K-fold rule: a permutation of ``range(n)`` drawn from ``seed``, fold k
    = every K-th index from position k (sizes differ by at most one), each sorted."""
    if folds < 2 or folds > n:
        raise ConfigError(f"cv.folds must be in [2, {n}] for {n} training samples, "
                          f"got {folds}")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(perm[k::folds]) for k in range(folds)]


class Batches:
    """Shuffled mini-batches of one split, converted by the task's input rule per batch
    (so uint8 images stay uint8 in memory); a new seeded order every epoch."""

    def __init__(self, task: Task, split: Split, batch_size: int, seed: int,
                 shuffle: bool) -> None:
        self.task, self.data, self.batch_size, self.shuffle = task, split, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.data)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.task.to_input(self.data.raw[idx]), self.data.targets[idx]
