"""The pipeline configuration of ``edgeq quantize CONFIG.json`` (and of ``edgeq demo``).

Frozen dataclasses that round-trip to JSON. Every validation error names the key path,
e.g. ``training.qat_epochs``. Example::

    {
      "task": {"name": "digits", "seed": 0, "batch_size": 64},
      "model": {"name": "digits_cnn"},
      "policy": {"uniform": {"bits": 8, "algorithm": "pact"}},
      "input": {"bits": 8, "signed": false, "lo": 0.0, "hi": 1.0},
      "training": {"fp_epochs": 20, "qat_epochs": 8, "lr": 0.003, "qat_lr": 0.001},
      "seeds": [0],
      "output_dir": "edgeq-out"
    }

``task`` names a registered task (:mod:`edgeq.lab.tasks`); keys other than ``name``,
``seed`` and ``batch_size`` are the task's own options (``task.n_train`` ...). ``model``
names a registered model (:mod:`edgeq.models.registry`) with ``width`` and
``input_size`` where the model has them; omitted, it is the task's default model. The
key ``dataset`` of older configs is still read, as the task of the same name.
``policy`` is either ``{"uniform": {...Policy.uniform kwargs...}}`` or a full policy
(``Policy.to_json()`` form, with ``"rules"``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeq.errors import ConfigError

ALGORITHMS = ("ste", "pact", "tqt", "ana", "inq")
SCHEDULES = ("constant", "onecycle")


def load_json(path: str | Path, from_json, what: str):
    """``from_json`` of the JSON file ``path``; every error is one line naming the file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such {what} file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: not valid JSON ({exc})") from None
    try:
        return from_json(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def _keys(path: str, data: Any, cls: type) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key {path}.{unknown[0]}; known keys: {sorted(known)}")
    return data


def _num(path: str, value: Any, lo: float, hi: float, integer: bool = False):
    ok_type = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{path} must be {kind}, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{path} must be in [{lo}, {hi}], got {value!r}")
    return value


@dataclass(frozen=True)
class ModelConfig:
    """A registered model; ``None`` fields take the model's (or the task's) default.

    Or user code: ``{"import": "package.module:factory", "kwargs": {...}}`` calls the
    factory with ``kwargs`` (a registered model name given as ``import`` is looked up in
    the registry first); such a model fits any task.
    """

    name: str | None = None
    width: float | None = None
    input_size: int | None = None
    import_: str | None = None  # JSON key "import"
    kwargs: dict | None = None

    def __post_init__(self) -> None:
        from edgeq.models.registry import model_spec, resolve_import

        if self.import_ is not None:
            others = [k for k in ("name", "width", "input_size") if getattr(self, k) is not None]
            if others:
                raise ConfigError(f"model.{others[0]}: give either model.import or "
                                  "name/width/input_size")
            if self.kwargs is not None and not isinstance(self.kwargs, dict):
                raise ConfigError(f"model.kwargs must be an object, got {self.kwargs!r}")
            resolve_import(self.import_, "model.import")
            return
        if self.kwargs is not None:
            raise ConfigError("model.kwargs needs model.import")
        if self.name is not None:
            if not isinstance(self.name, str):
                raise ConfigError(f"model.name must be a string, got {self.name!r}")
            model_spec(self.name).check(self.width, self.input_size)

    def resolved(self) -> tuple[float | None, int]:
        """(width, input_size) with the model's defaults filled in."""
        from edgeq.models.registry import model_spec

        return model_spec(self.name).check(self.width, self.input_size)

    def build(self):
        """A user model (``import``): the factory called with ``kwargs``."""
        from edgeq.models.registry import resolve_import

        factory = resolve_import(self.import_, "model.import")
        try:
            return factory(**(self.kwargs or {}))
        except TypeError as exc:
            raise ConfigError(f"model.kwargs: {self.import_} does not take them ({exc})") \
                from None

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if v is not None and k != "import_"}
        return {"import": self.import_, **out} if self.import_ is not None else out

    @classmethod
    def from_json(cls, data: Any) -> ModelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"model must be an object, got {type(data).__name__}")
        known = ["import", "input_size", "kwargs", "name", "width"]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown key model.{unknown[0]}; known keys: {known}")
        return cls(**{("import_" if k == "import" else k): v for k, v in data.items()})


@dataclass(frozen=True)
class TaskConfig:
    """A registered task, its data seed and batch size, and its own ``options``."""

    name: str = "digits"
    seed: int = 0
    batch_size: int = 64
    options: Any = None  # the task's Options dataclass; None: its defaults

    def __post_init__(self) -> None:
        from edgeq.lab.tasks import task_class

        cls = task_class(self.name)
        _num("task.seed", self.seed, 0, 2**31, integer=True)
        _num("task.batch_size", self.batch_size, 1, 65536, integer=True)
        if self.options is None:
            object.__setattr__(self, "options", cls.Options())
        elif isinstance(self.options, dict):
            object.__setattr__(self, "options", _options(cls, self.options))
        elif not isinstance(self.options, cls.Options):
            raise ConfigError(f"task.options must be {cls.Options.__name__} for task "
                              f"{self.name!r}, got {type(self.options).__name__}")

    def to_json(self) -> dict:
        return {"name": self.name, "seed": self.seed, "batch_size": self.batch_size,
                **asdict(self.options)}

    @classmethod
    def from_json(cls, data: Any) -> TaskConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"task must be an object, got {type(data).__name__}")
        common = {k: data[k] for k in ("name", "seed", "batch_size") if k in data}
        rest = {k: v for k, v in data.items() if k not in common}
        return cls(**common, options=rest)


def _options(task_cls, data: dict):
    """The task's Options from the task keys that are not common to every task."""
    known = {f.name for f in fields(task_cls.Options)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key task.{unknown[0]} for task {task_cls.name!r}; known "
                          f"keys: {sorted(known | {'name', 'seed', 'batch_size'})}")
    return task_cls.Options(**data)


@dataclass(frozen=True)
class InputConfig:
    """The network input's quantiser: a fixed range [lo, hi] at ``bits``."""

    bits: int = 8
    signed: bool = False
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        _num("input.bits", self.bits, 2, 16, integer=True)
        if not isinstance(self.signed, bool):
            raise ConfigError(f"input.signed must be true or false, got {self.signed!r}")
        _num("input.lo", self.lo, -1e9, 1e9)
        _num("input.hi", self.hi, -1e9, 1e9)
        if not self.lo < self.hi:
            raise ConfigError(f"input.lo must be < input.hi, got [{self.lo}, {self.hi}]")


@dataclass(frozen=True)
class TrainingConfig:
    fp_epochs: int = 20
    qat_epochs: int = 8
    lr: float = 3e-3
    qat_lr: float = 1e-3
    freeze_epoch: int | None = None
    schedule: str = "constant"  # learning rate per phase: "constant" or "onecycle"

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"training.schedule must be one of {list(SCHEDULES)}, "
                              f"got {self.schedule!r}")
        _num("training.fp_epochs", self.fp_epochs, 0, 10000, integer=True)
        # 0 QAT epochs would leave the quantisers unstarted: F2T has no final ε to convert
        _num("training.qat_epochs", self.qat_epochs, 1, 10000, integer=True)
        _num("training.lr", self.lr, 1e-8, 10.0)
        _num("training.qat_lr", self.qat_lr, 1e-8, 10.0)
        if self.freeze_epoch is not None:
            _num("training.freeze_epoch", self.freeze_epoch, 0, 10000, integer=True)


@dataclass(frozen=True)
class PipelineConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    policy: dict = field(default_factory=lambda: {"uniform": {"bits": 8, "algorithm": "pact"}})
    input: InputConfig | None = None  # None: the task's input range
    training: TrainingConfig = field(default_factory=TrainingConfig)
    seeds: tuple[int, ...] = (0,)
    output_dir: str = "edgeq-out"

    def __post_init__(self) -> None:
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise ConfigError(f"seeds must be a non-empty list of integers, got {self.seeds!r}")
        for i, s in enumerate(self.seeds):
            _num(f"seeds[{i}]", s, 0, 2**31, integer=True)
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise ConfigError(f"output_dir must be a non-empty string, got {self.output_dir!r}")
        self._check_model()
        self.build_policy()  # validates the policy now, naming its bad rule

    def _check_model(self) -> None:
        from edgeq.lab.tasks import task_class

        task = task_class(self.task.name)
        if self.input is None:
            object.__setattr__(self, "input", InputConfig(**task.default_input))
        if self.model.import_ is not None:
            return  # user code: any task
        if self.model.name is None and task.default_model is None:
            raise ConfigError(f"model: task {self.task.name!r} has no built-in model; name "
                              "one with model.import (\"package.module:factory\")")
        if self.model.name is None:
            object.__setattr__(self, "model", ModelConfig(task.default_model, self.model.width,
                                                          self.model.input_size))
        if self.model.name not in task.models:
            raise ConfigError(f"model.name: {self.model.name!r} cannot do task "
                              f"{self.task.name!r}; use one of {list(task.models)}")

    def build_policy(self):
        """The :class:`~edgeq.train.f2f.policy.Policy` this config describes."""
        from edgeq.train.f2f.policy import Policy

        p = self.policy
        if not isinstance(p, dict):
            raise ConfigError(f"policy must be an object, got {type(p).__name__}")
        if "uniform" in p:
            if set(p) != {"uniform"} or not isinstance(p["uniform"], dict):
                raise ConfigError("policy.uniform must be the only key and hold an object")
            kwargs = dict(p["uniform"])
            unknown = set(kwargs) - {"bits", "algorithm", "weight_granularity"}
            if unknown:
                raise ConfigError(f"unknown key policy.uniform.{sorted(unknown)[0]}")
            if kwargs.get("algorithm", "pact") not in ALGORITHMS:
                raise ConfigError(
                    f"policy.uniform.algorithm must be one of {list(ALGORITHMS)}, "
                    f"got {kwargs.get('algorithm')!r}"
                )
            try:
                return Policy.uniform(**kwargs)
            except ConfigError as exc:
                raise ConfigError(f"policy.uniform: {exc}") from None
        try:
            return Policy.from_json(p)
        except ConfigError as exc:
            raise ConfigError(f"policy: {exc}") from None

    def to_json(self) -> dict:
        return {"task": self.task.to_json(), "model": self.model.to_json(),
                "policy": self.policy, "input": asdict(self.input),
                "training": asdict(self.training), "seeds": list(self.seeds),
                "output_dir": self.output_dir}

    @classmethod
    def from_json(cls, data: Any) -> PipelineConfig:
        if isinstance(data, dict) and "dataset" in data:
            try:
                return cls.from_json(_legacy_dataset(data))
            except ConfigError as exc:
                raise ConfigError(str(exc).replace("task.", "dataset.")) from None
        data = _keys("config", data, cls)
        parts = {"input": InputConfig, "training": TrainingConfig}
        kwargs = {}
        for key, value in data.items():
            if key == "task":
                kwargs[key] = TaskConfig.from_json(value)
            elif key == "model":
                kwargs[key] = ModelConfig.from_json(value)
            elif key == "input":  # omitted input keys: the task's, then InputConfig's
                defaults = _task_input_defaults(data.get("task"))
                kwargs[key] = InputConfig(**{**defaults, **_keys(key, value, InputConfig)})
            elif key in parts:
                kwargs[key] = parts[key](**_keys(key, value, parts[key]))
            else:
                kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> PipelineConfig:
        return load_json(path, cls.from_json, "config")


def _task_input_defaults(task: Any) -> dict:
    """The input keys of the task a config names (a bad task is reported later)."""
    from edgeq.lab.tasks import task_class

    name = task.get("name", "digits") if isinstance(task, dict) else "digits"
    try:
        return task_class(name).default_input
    except ConfigError:
        return {}


def _legacy_dataset(data: dict) -> dict:
    """Configs written before tasks: ``"dataset": {...}`` is the task of that name."""
    if "task" in data:
        raise ConfigError("config has both 'dataset' and 'task'; 'dataset' is the old name "
                          "of 'task': keep only 'task'")
    data = dict(data)
    dataset = data.pop("dataset")
    if not isinstance(dataset, dict):
        raise ConfigError(f"dataset must be an object, got {type(dataset).__name__}")
    data["task"] = {"name": "digits", **dataset}
    return data


def demo_config(output_dir: str = "edgeq-demo", task: str = "digits") -> PipelineConfig:
    """The ``edgeq demo`` pipeline of ``task``: the task's demo settings, 8-bit PACT."""
    from edgeq.lab.tasks import task_class

    return task_class(task).demo_config(output_dir)
