"""The pipeline configuration of ``edgeq quantize CONFIG.json`` (and of ``edgeq demo``).

Frozen dataclasses that round-trip to JSON. Every validation error names the key path,
e.g. ``training.qat_epochs``. Example::

    {
      "model": {"name": "digits_cnn"},
      "dataset": {"name": "digits", "seed": 0, "batch_size": 64},
      "policy": {"uniform": {"bits": 8, "algorithm": "pact"}},
      "input": {"bits": 8, "signed": false, "lo": 0.0, "hi": 1.0},
      "training": {"fp_epochs": 20, "qat_epochs": 8, "lr": 0.003, "qat_lr": 0.001},
      "seeds": [0],
      "output_dir": "edgeq-out"
    }

``policy`` is either ``{"uniform": {...Policy.uniform kwargs...}}`` or a full policy
(``Policy.to_json()`` form, with ``"rules"``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeq.errors import ConfigError

MODELS = ("digits_cnn", "digits_resnet", "digits_concat")
DATASETS = ("digits",)
ALGORITHMS = ("ste", "pact", "tqt", "ana", "inq")


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
    name: str = "digits_cnn"

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise ConfigError(f"model.name must be one of {list(MODELS)}, got {self.name!r}")


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "digits"
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ConfigError(f"dataset.name must be one of {list(DATASETS)}, got {self.name!r}")
        _num("dataset.seed", self.seed, 0, 2**31, integer=True)
        _num("dataset.batch_size", self.batch_size, 1, 65536, integer=True)


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

    def __post_init__(self) -> None:
        _num("training.fp_epochs", self.fp_epochs, 0, 10000, integer=True)
        # 0 QAT epochs would leave the quantisers unstarted: F2T has no final ε to convert
        _num("training.qat_epochs", self.qat_epochs, 1, 10000, integer=True)
        _num("training.lr", self.lr, 1e-8, 10.0)
        _num("training.qat_lr", self.qat_lr, 1e-8, 10.0)
        if self.freeze_epoch is not None:
            _num("training.freeze_epoch", self.freeze_epoch, 0, 10000, integer=True)


@dataclass(frozen=True)
class PipelineConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    policy: dict = field(default_factory=lambda: {"uniform": {"bits": 8, "algorithm": "pact"}})
    input: InputConfig = field(default_factory=InputConfig)
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
        self.build_policy()  # validates the policy now, naming its bad rule

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
        data = asdict(self)
        data["seeds"] = list(self.seeds)
        return data

    @classmethod
    def from_json(cls, data: Any) -> PipelineConfig:
        data = _keys("config", data, cls)
        parts = {"model": ModelConfig, "dataset": DatasetConfig, "input": InputConfig,
                 "training": TrainingConfig}
        kwargs = {}
        for key, value in data.items():
            sub = parts.get(key)
            kwargs[key] = sub(**_keys(key, value, sub)) if sub else value
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> PipelineConfig:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such config file") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{p}: not valid JSON ({exc})") from None
        try:
            return cls.from_json(data)
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None


def demo_config(output_dir: str = "edgeq-demo") -> PipelineConfig:
    """The ``edgeq demo`` pipeline: digits CNN, 8-bit PACT, one seed."""
    return PipelineConfig(output_dir=output_dir)
