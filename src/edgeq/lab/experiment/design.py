"""An experiment design: a base pipeline config, factors, filters, seeds and folds.

A design file (``edgeq experiment DESIGN.json``)::

    {
      "name": "alg-x-bits",
      "base": {...a pipeline config (edgeq quantize), without seeds/output_dir...},
      "factors": {
        "algorithm": {"pact": {"policy": {"uniform": {"algorithm": "pact"}}},
                      "ste":  {"policy": {"uniform": {"algorithm": "ste"}}}},
        "bits": {"4": {"policy": {"uniform": {"bits": 4}}},
                 "8": {"policy": {"uniform": {"bits": 8}}}}
      },
      "exclude": [{"algorithm": "ste", "bits": "4"}],
      "seeds": [0, 1, 2],
      "cv": {"folds": 2, "seed": 0}
    }

Each factor is an ordered set of named levels; each level is a config patch merged into
the base by recursive update (objects merge key by key, anything else replaces). The
full factorial product of the levels, minus the ``exclude`` combinations, gives the
cells; every cell runs once per seed and (with ``cv``) once per fold. Unlike QuantLab's
DoE, every patch and every resolved config is validated before anything runs, and
errors name the factor level or the run and the key path.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeq.errors import ConfigError
from edgeq.lab.config import PipelineConfig, load_json

LEVEL_NAME = re.compile(r"^[A-Za-z0-9._+-]+$")  # levels name run directories
DESIGN_KEYS = ("name", "base", "factors", "exclude", "seeds", "cv", "output_dir")


def merge(base: Any, patch: Any) -> Any:
    """``base`` updated by ``patch``, recursively for objects; neither is modified."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        out[key] = merge(out[key], value) if key in out else copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class CVConfig:
    """K-fold cross-validation over the training split; the permutation is drawn from
    ``seed`` (the same folds for every cell and every training seed)."""

    folds: int
    seed: int = 0

    def __post_init__(self) -> None:
        for key, lo, hi in (("folds", 2, 1000), ("seed", 0, 2**31)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(f"cv.{key} must be an integer in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class RunSpec:
    """One run of the design: a cell (a level per factor), a seed and a fold."""

    levels: tuple[tuple[str, str], ...]  # (factor, level) in factor order
    seed: int
    fold: int | None
    config: dict = field(compare=False, hash=False)  # resolved config (JSON form)

    @property
    def cell(self) -> str:
        return ",".join(f"{f}={lv}" for f, lv in self.levels) or "base"

    @property
    def run_id(self) -> str:
        parts = [f"{f}-{lv}" for f, lv in self.levels] or ["base"]
        parts.append(f"seed{self.seed}")
        if self.fold is not None:
            parts.append(f"fold{self.fold}")
        return "_".join(parts)

    def describe(self) -> str:
        fold = "" if self.fold is None else f", fold {self.fold}"
        return f"run {self.run_id} ({self.cell}, seed {self.seed}{fold})"


@dataclass(frozen=True)
class Design:
    base: dict
    factors: dict  # factor -> {level name -> patch}, in file order
    exclude: tuple = ()
    seeds: tuple[int, ...] = (0,)
    cv: CVConfig | None = None
    name: str = "experiment"
    output_dir: str = "experiment-out"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise ConfigError(f"output_dir must be a non-empty string, got {self.output_dir!r}")
        if not isinstance(self.base, dict):
            raise ConfigError(f"base must be an object (a pipeline config), got "
                              f"{type(self.base).__name__}")
        for key in ("seeds", "output_dir"):
            if key in self.base:
                raise ConfigError(f"base.{key}: set it on the design (\"{key}\"), not in base")
        self._check_factors()
        self._check_exclude()
        seeds = self.seeds
        if not isinstance(seeds, (list, tuple)) or not seeds:
            raise ConfigError(f"seeds must be a non-empty list of integers, got {seeds!r}")
        for i, s in enumerate(seeds):
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= 2**31:
                raise ConfigError(f"seeds[{i}] must be an integer in [0, 2^31], got {s!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds must be distinct, got {list(seeds)}")
        object.__setattr__(self, "seeds", tuple(seeds))

    def _check_factors(self) -> None:
        if not isinstance(self.factors, dict):
            raise ConfigError("factors must be an object: factor -> {level -> patch}")
        for factor, levels in self.factors.items():
            if not LEVEL_NAME.match(factor):
                raise ConfigError(f"factors.{factor}: factor names may hold letters, digits "
                                  "and . _ + - only")
            if not isinstance(levels, dict) or not levels:
                raise ConfigError(f"factors.{factor} must be a non-empty object: "
                                  "level name -> config patch")
            for level, patch in levels.items():
                where = f"factors.{factor}.{level}"
                if not LEVEL_NAME.match(level):
                    raise ConfigError(f"{where}: level names may hold letters, digits and "
                                      ". _ + - only")
                if not isinstance(patch, dict):
                    raise ConfigError(f"{where} must be an object (a config patch), got "
                                      f"{type(patch).__name__}")
                for key in ("seeds", "output_dir"):
                    if key in patch:
                        raise ConfigError(f"{where}.{key}: seeds and output_dir belong to the "
                                          "design, not to a factor")

    def _check_exclude(self) -> None:
        if not isinstance(self.exclude, (list, tuple)):
            raise ConfigError("exclude must be a list of {factor: level} objects")
        for i, rule in enumerate(self.exclude):
            if not isinstance(rule, dict) or not rule:
                raise ConfigError(f"exclude[{i}] must be a non-empty object {{factor: level}}")
            for factor, level in rule.items():
                if factor not in self.factors:
                    raise ConfigError(f"exclude[{i}]: unknown factor {factor!r}; factors: "
                                      f"{list(self.factors)}")
                if level not in self.factors[factor]:
                    raise ConfigError(f"exclude[{i}].{factor}: unknown level {level!r}; "
                                      f"levels: {list(self.factors[factor])}")
        object.__setattr__(self, "exclude", tuple(self.exclude))

    # -- expansion ----------------------------------------------------------------------
    def cells(self) -> list[tuple[tuple[str, str], ...]]:
        """Every combination of levels not excluded, in factor and level order."""
        names = list(self.factors)
        combos = itertools.product(*(list(self.factors[f]) for f in names))
        cells = [tuple(zip(names, combo, strict=True)) for combo in combos]
        return [c for c in cells if not any(
            all(dict(c)[f] == lv for f, lv in rule.items()) for rule in self.exclude)]

    def cell_config(self, levels) -> dict:
        """The base with the patches of ``levels`` merged in, in factor order."""
        cfg = self.base
        for factor, level in levels:
            cfg = merge(cfg, self.factors[factor][level])
        return cfg

    def runs(self) -> list[RunSpec]:
        """Every run, each with its resolved config, validated (ConfigError naming the run
        and the key path on the first invalid one)."""
        runs = []
        if not self.cells():
            raise ConfigError("the design has no cells: every combination is excluded")
        folds = [None] if self.cv is None else list(range(self.cv.folds))
        for levels in self.cells():
            cfg = self.cell_config(levels)
            for seed in self.seeds:
                for fold in folds:
                    spec = RunSpec(levels, seed, fold, {})
                    resolved = merge(cfg, {"seeds": [seed],
                                           "output_dir": f"runs/{spec.run_id}"})
                    try:
                        _validate(resolved, spec.describe())
                    except ConfigError as exc:
                        raise ConfigError(f"{exc}{self._culprit(levels, exc)}") from None
                    runs.append(RunSpec(levels, seed, fold, resolved))
        return runs

    def _culprit(self, levels, exc: ConfigError) -> str:
        """' (from base)' or ' (from factors.F.L)' when that alone gives the same error
        (a level is blamed only when the base alone is valid)."""
        detail = str(exc).split(": ", 1)[-1]
        try:
            _validate(self.base, "")
        except ConfigError as alone:
            return " (from base)" if str(alone).split(": ", 1)[-1] == detail else ""
        for factor, level in levels:
            try:
                _validate(merge(self.base, self.factors[factor][level]), "")
            except ConfigError as alone:
                if str(alone).split(": ", 1)[-1] == detail:
                    return f" (from factors.{factor}.{level})"
        return ""

    # -- JSON -----------------------------------------------------------------------------
    def to_json(self) -> dict:
        out = {"name": self.name, "base": self.base, "factors": self.factors,
               "exclude": list(self.exclude), "seeds": list(self.seeds),
               "output_dir": self.output_dir}
        if self.cv is not None:
            out["cv"] = {"folds": self.cv.folds, "seed": self.cv.seed}
        return out

    @classmethod
    def from_json(cls, data: Any) -> Design:
        if not isinstance(data, dict):
            raise ConfigError(f"a design must be an object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(DESIGN_KEYS))
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]}; known keys: {list(DESIGN_KEYS)}")
        if "base" not in data:
            raise ConfigError("missing key base (the pipeline config every run starts from)")
        kwargs = {k: v for k, v in data.items() if k != "cv"}
        kwargs.setdefault("factors", {})
        cv = data.get("cv")
        if cv is not None:
            if not isinstance(cv, dict) or set(cv) - {"folds", "seed"} or "folds" not in cv:
                raise ConfigError(f"cv must be {{\"folds\": K, \"seed\": S}}, got {cv!r}")
            kwargs["cv"] = CVConfig(**cv)
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> Design:
        return load_json(path, cls.from_json, "design")


def _validate(config: dict, where: str) -> PipelineConfig:
    """The resolved config as a PipelineConfig; ConfigError prefixed by ``where``."""
    try:
        return PipelineConfig.from_json(config)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except TypeError as exc:  # a dataclass given a key it does not take
        raise ConfigError(f"{where}: {exc}") from None
