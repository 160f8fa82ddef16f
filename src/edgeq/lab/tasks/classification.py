"""Image classification on a dataset named in the config: built-in loaders or user code.

::

    "task": {"name": "classification",
             "dataset": {"import": "imagefolder", "kwargs": {"root": "data/train",
                                                             "size": 32, "channels": 3}},
             "val_fraction": 0.1},
    "model": {"import": "mypkg.nets:small_cnn", "kwargs": {"classes": 10}}

``dataset.import`` is a built-in name (``imagefolder``: a folder tree with a subfolder per
class, :mod:`edgeq.data.imagefolder`; ``cifar10``: the CIFAR-10 python pickles,
:mod:`edgeq.data.cifar`) or ``"package.module:function"``. The function is called with
``kwargs`` and returns ``{"train": (images, labels), "test": (...)?, "val": (...)?}``:
images N x C x H x W (uint8 0..255, or float in [0, 1]), integer labels. Without a test
part, ``test_fraction`` of the training data becomes the test split; without a val part,
``val_fraction`` of the rest, both drawn from ``task.seed``. There is no built-in model
for arbitrary images: the config names one with ``model.import``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from edgeq.errors import ConfigError, DatasetFileError
from edgeq.lab.tasks.base import ClassifierTask, Split

DATASETS = {  # name -> (loader, cheap check run at config validation)
    "imagefolder": ("edgeq.data.imagefolder:image_folder_dataset",
                    "edgeq.data.imagefolder:check_image_folder_dataset"),
    "cifar10": ("edgeq.data.cifar:load_cifar10", "edgeq.data.cifar:check_cifar10"),
}


def _resolve(path: str, key: str):
    import importlib

    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"{key}: {path!r} is neither a built-in dataset ({list(DATASETS)}) "
                          "nor 'package.module:function'")
    try:
        return getattr(importlib.import_module(module), attr)
    except Exception as exc:  # ImportError, AttributeError, the module's own error
        raise ConfigError(f"{key}: cannot import {path!r} ({type(exc).__name__}: {exc})") \
            from None


@dataclass(frozen=True)
class ClassificationOptions:
    dataset: dict = field(default_factory=dict)  # {"import": ..., "kwargs": {...}}
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        d = self.dataset
        if not isinstance(d, dict) or "import" not in d or set(d) - {"import", "kwargs"}:
            raise ConfigError("task.dataset must be {\"import\": NAME or 'module:function', "
                              f"\"kwargs\": {{...}}}}, got {d!r}")
        if not isinstance(d.get("kwargs", {}), dict):
            raise ConfigError(f"task.dataset.kwargs must be an object, got {d['kwargs']!r}")
        for key in ("val_fraction", "test_fraction"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise ConfigError(f"task.{key} must be a number in (0, 1), got {v!r}")
        name = d["import"]
        if not isinstance(name, str):
            raise ConfigError(f"task.dataset.import must be a string, got {name!r}")
        kwargs = d.get("kwargs", {})
        if name in DATASETS:  # the built-in registry first
            check = _resolve(DATASETS[name][1], "task.dataset.import")
            try:
                check(**kwargs)
            except TypeError as exc:
                raise ConfigError(f"task.dataset.kwargs: {exc}") from None
            except DatasetFileError as exc:
                raise ConfigError(f"task.dataset: {exc}") from None
        else:
            _resolve(name, "task.dataset.import")

    def loader(self):
        name = self.dataset["import"]
        return _resolve(DATASETS[name][0] if name in DATASETS else name, "task.dataset.import")


class ClassificationTask(ClassifierTask):
    """Top-1 accuracy; input rule: uint8 pixels / 255 (float data as is), in [0, 1]."""

    name = "classification"
    models: tuple[str, ...] = ()
    default_model = None
    Options = ClassificationOptions
    threads = 1
    default_input = {"bits": 8, "signed": False, "lo": 0.0, "hi": 1.0}

    def _load(self, progress: bool) -> dict[str, Split]:
        opts = self.options
        key = "task.dataset"
        try:
            data = opts.loader()(**opts.dataset.get("kwargs", {}))
        except TypeError as exc:
            raise ConfigError(f"{key}.kwargs: {exc}") from None
        if not isinstance(data, dict) or "train" not in data:
            raise ConfigError(f"{key}: {opts.dataset['import']} must return a dict with "
                              "'train' (and optionally 'val', 'test')")
        parts = {k: _tensors(v, f"{key} {k}") for k, v in data.items()
                 if k in ("train", "val", "test")}
        rng = np.random.default_rng(self.config.task.seed)
        if "test" not in parts:
            parts["train"], parts["test"] = _cut(parts["train"], opts.test_fraction, rng)
        if "val" not in parts:
            parts["train"], parts["val"] = _cut(parts["train"], opts.val_fraction, rng)
        return {k: Split(*v) for k, v in parts.items()}

    def to_input(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.float() / 255.0 if raw.dtype == torch.uint8 else raw.float()


def _tensors(part: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        images, labels = part
        x, y = torch.as_tensor(np.asarray(images)), torch.as_tensor(np.asarray(labels))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: expected (images, labels) arrays ({exc})") from None
    if x.ndim != 4 or y.shape != (len(x),) or len(x) == 0:
        raise ConfigError(f"{where}: images must be N x C x H x W and labels N, got "
                          f"{tuple(x.shape)} and {tuple(y.shape)}")
    return x, y.long()


def _cut(part, fraction: float, rng) -> tuple[tuple, tuple]:
    """(rest, cut): ``fraction`` of the samples, drawn by ``rng``, form ``cut``."""
    x, y = part
    order = torch.from_numpy(rng.permutation(len(x)))
    n_cut = max(1, int(round(fraction * len(x))))
    if n_cut >= len(x):
        raise ConfigError(f"task: {len(x)} samples are too few to split off a fraction "
                          f"{fraction}")
    cut, rest = order[:n_cut].sort().values, order[n_cut:].sort().values
    return (x[rest], y[rest]), (x[cut], y[cut])
