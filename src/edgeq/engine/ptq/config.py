"""PTQ configuration: frozen dataclasses that round-trip to JSON (``docs/ptq.md``).

A :class:`PTQConfig` says, per layer and variable, how to quantise:

.. code-block:: json

    {"format": "edgeq.ptq", "version": 1,
     "inputs": {"x": {"method": "dynamic", "bits": 8, "fl": 7, "signed": false}},
     "layers": {"conv1": {"weights": {"method": "kmeans", "bits": 4},
                          "activations": {"method": "dynamic", "bits": 8}}},
     "keep_float": ["Softmax"]}

Every parameter after ``method`` and ``bits`` is optional: what is missing is chosen
from the calibration statistics by the method (a resolved config, as ``edgeq ptq``
writes it next to its output, has them all).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from edgeq.engine.ptq.fixedpoint import FL_SEARCH, check_bits
from edgeq.errors import ConfigError

FORMAT, VERSION = "edgeq.ptq", 1
METHODS = ("fixed", "dynamic", "kmeans-linear", "kmeans-gauss", "kmeans")
FIXED_METHODS = ("fixed", "dynamic")
CLUSTER_METHODS = ("kmeans-linear", "kmeans-gauss", "kmeans")
VARIABLES = ("weights", "activations")
MAX_CLUSTER_ACT_BITS = 8  # a clustered activation's decoder has 2^bits − 1 threshold steps


def check_method(method, where: str) -> str:
    if method not in METHODS:
        raise ConfigError(f"{where}: unknown method {method!r}; choose one of {list(METHODS)}")
    return method


@dataclass(frozen=True)
class VarQuant:
    """How one variable (a layer's weights or activations, or a graph input) is quantised.

    ``fl``: the fraction length (ε = 2^−fl) of a fixed-point tensor or of a codebook;
    ``channel_fl``: one FL per output channel (fixed point with ``per_channel``);
    ``codebook``: the integers of a clustered tensor (at ε = 2^−fl);
    ``codebook_bits``: the width of those integers (default: 8, or 16 above 8 bits);
    ``signed``: an activation's sign (default: from calibration, unsigned if min ≥ 0);
    ``iters``: Lloyd iterations of kmeans-linear / kmeans-gauss;
    ``fl_search``: the FL range the dynamic method searches (QUENN: 8–20).
    """

    method: str
    bits: int
    per_channel: bool = False
    fl: int | None = None
    channel_fl: tuple[int, ...] | None = None
    codebook: tuple[int, ...] | None = None
    codebook_bits: int | None = None
    signed: bool | None = None
    iters: int = 20
    fl_search: tuple[int, int] = FL_SEARCH

    def check(self, where: str, variable: str) -> VarQuant:
        check_method(self.method, f"{where}.method")
        check_bits(self.bits, f"{where}.bits")
        if self.codebook_bits is not None:
            check_bits(self.codebook_bits, f"{where}.codebook_bits")
        if variable == "inputs" and self.method in CLUSTER_METHODS:
            raise ConfigError(
                f"{where}.method: {self.method}: a graph input is quantised by the input rule "
                "(fixed point); clustering applies to weights and layer outputs")
        if variable == "activations" and self.method in CLUSTER_METHODS \
                and self.bits > MAX_CLUSTER_ACT_BITS:
            raise ConfigError(
                f"{where}.bits: a clustered activation has at most {MAX_CLUSTER_ACT_BITS} index "
                f"bits (its decoder is one threshold step per centroid), got {self.bits}")
        if self.per_channel and self.method not in FIXED_METHODS:
            raise ConfigError(f"{where}.per_channel: only fixed/dynamic weights are per channel")
        if self.per_channel and variable != "weights":
            raise ConfigError(f"{where}.per_channel: only weights are quantised per channel")
        if self.codebook is not None and self.fl is None:
            raise ConfigError(f"{where}.codebook: a codebook needs its fl")
        lo, hi = self.fl_search
        if lo > hi:
            raise ConfigError(f"{where}.fl_search: {lo} > {hi}")
        return self

    @property
    def book_bits(self) -> int:
        return self.codebook_bits or (8 if self.bits <= 8 else 16)

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v != f.default or f.name in ("method", "bits"):
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_json(cls, data, where: str, variable: str) -> VarQuant:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        for key in ("method", "bits"):
            if key not in data:
                raise ConfigError(f"{where}: key '{key}' is required")
        kw = dict(data)
        for key in ("channel_fl", "codebook", "fl_search"):
            if kw.get(key) is not None:
                kw[key] = _int_tuple(kw[key], f"{where}.{key}")
        for key in ("fl", "iters"):
            if kw.get(key) is not None and not isinstance(kw[key], int):
                raise ConfigError(f"{where}.{key}: expected an integer, got {kw[key]!r}")
        return cls(**kw).check(where, variable)


def _int_tuple(v, where: str) -> tuple[int, ...]:
    if not isinstance(v, list) or not all(isinstance(x, int) for x in v):
        raise ConfigError(f"{where}: expected a list of integers")
    return tuple(v)


@dataclass(frozen=True)
class LayerQuant:
    """A layer's two variables; ``weights`` is None for a layer without weights (Add)."""

    weights: VarQuant | None = None
    activations: VarQuant | None = None

    def to_json(self) -> dict:
        return {k: getattr(self, k).to_json() for k in VARIABLES if getattr(self, k)}


@dataclass(frozen=True)
class PTQConfig:
    inputs: dict[str, VarQuant] = field(default_factory=dict)
    layers: dict[str, LayerQuant] = field(default_factory=dict)
    keep_float: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "inputs": {k: v.to_json() for k, v in self.inputs.items()},
            "layers": {k: v.to_json() for k, v in self.layers.items()},
            "keep_float": list(self.keep_float),
        }

    @classmethod
    def from_json(cls, data, source: str = "config") -> PTQConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object")
        unknown = sorted(set(data) - {"format", "version", "inputs", "layers", "keep_float"})
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}")
        if data.get("format", FORMAT) != FORMAT or data.get("version", VERSION) != VERSION:
            raise ConfigError(f"{source}: not an {FORMAT} v{VERSION} config")
        inputs = {
            k: VarQuant.from_json(v, f"{source}: inputs.{k}", "inputs")
            for k, v in _object(data, "inputs", source).items()
        }
        layers = {}
        for name, rec in _object(data, "layers", source).items():
            where = f"{source}: layers.{name}"
            if not isinstance(rec, dict) or set(rec) - set(VARIABLES):
                raise ConfigError(f"{where}: expected an object with keys {list(VARIABLES)}")
            layers[name] = LayerQuant(**{
                k: VarQuant.from_json(rec[k], f"{where}.{k}", k) for k in VARIABLES if k in rec
            })
        keep = data.get("keep_float", [])
        if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
            raise ConfigError(f"{source}: keep_float: expected a list of op types")
        return cls(inputs, layers, tuple(keep))

    def save(self, path: str | os.PathLike) -> None:
        from edgeq.engine.tensor_io import write_atomic

        text = (json.dumps(self.to_json(), indent=1) + "\n").encode()
        write_atomic(Path(path), lambda f: f.write(text))

    @classmethod
    def load(cls, path: str | os.PathLike) -> PTQConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the PTQ config ({exc})") from None
        return cls.from_json(data, str(path))


def _object(data: dict, key: str, source: str) -> dict:
    v = data.get(key, {})
    if not isinstance(v, dict):
        raise ConfigError(f"{source}: {key}: expected an object")
    return v


def uniform(method: str, bits: int, per_channel: bool = False) -> VarQuant:
    """The weights' VarQuant of a one-method run (activations: see :func:`activation_of`)."""
    return VarQuant(check_method(method, "method"), check_bits(bits), per_channel).check(
        "method", "weights"
    )


def activation_of(method: str, bits: int) -> VarQuant:
    """Clustered weights go with dynamic fixed-point activations (docs/ptq.md)."""
    act = "fixed" if method == "fixed" else "dynamic"
    return VarQuant(act, check_bits(bits))


__all__ = ["LayerQuant", "PTQConfig", "VarQuant", "replace"]
