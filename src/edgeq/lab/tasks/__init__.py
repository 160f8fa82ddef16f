"""Tasks: what the generic pipeline trains and measures.

A :class:`~edgeq.lab.tasks.base.Task` bundles the datasets per split, a model factory, a
loss, metrics with the primary metric and its direction, and the input rule (how the
task's raw data become the float input of the network). The pipeline, ``edgeq demo``,
``edgeq quantize`` and ``edgeq f2t-report`` only talk to this interface; a config names
its task by ``task.name``.
"""

from __future__ import annotations

from edgeq.errors import ConfigError
from edgeq.lab.tasks.base import Metric, Split, Task

_REGISTRY = {
    "digits": ("edgeq.lab.tasks.digits", "DigitsTask"),
    "landmarks_3ddfa": ("edgeq.lab.tasks.landmarks", "LandmarksTask"),
    "classification": ("edgeq.lab.tasks.classification", "ClassificationTask"),
}
TASKS = tuple(_REGISTRY)
DEMO_TASKS = {"digits": "digits", "landmarks": "landmarks_3ddfa"}  # edgeq demo --task


def task_class(name: str) -> type[Task]:
    """The task class ``name``: a registered name, or a user task by import path
    (``"package.module:ClassName"``, a :class:`Task` subclass). ConfigError naming
    ``task.name`` otherwise."""
    import importlib

    if isinstance(name, str) and ":" in name:
        module, _, cls = name.partition(":")
        try:
            found = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"task.name {name!r}: cannot import it ({exc})") from None
        if not (isinstance(found, type) and issubclass(found, Task)):
            raise ConfigError(f"task.name {name!r} is not a Task subclass")
        return found
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ConfigError(f"task.name must be one of {list(TASKS)} or 'module:Class', "
                          f"got {name!r}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def make_task(config) -> Task:
    """The task object of a :class:`~edgeq.lab.config.PipelineConfig` (data not loaded)."""
    return task_class(config.task.name)(config)


__all__ = ["DEMO_TASKS", "TASKS", "Metric", "Split", "Task", "make_task", "task_class"]
