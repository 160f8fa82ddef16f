"""Frozen, validated configuration of the training-side quantisers and of their schedules.

Every class here is a frozen dataclass with ``to_json() -> dict`` and ``from_json(dict)``;
``from_json(x.to_json()) == x`` holds exactly. Unknown keys and bad values raise
:class:`edgeq.errors.ConfigError` naming the key (``InitSpec.method``, ``QuantSpec.n_levels``...).

* :class:`InitSpec` — how a clipping bound is initialised from observed statistics.
* :class:`QuantSpec` — one quantiser: algorithm, integer range, granularity, init, params.
* ``SteParams``/``PactParams``/``TqtParams``/``AnaParams``/``InqParams`` — the
  algorithm-specific part of a :class:`QuantSpec` (``QuantSpec.params``).
* :class:`AnnealSpec` — an ANA annealing schedule (noise mean or spread per epoch).
* :class:`ScheduleSpec` — when a :class:`~edgeq.train.controller.QATController` starts
  quantisation and freezes the clipping bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from edgeq.errors import ConfigError
from edgeq.numerics.intrange import IntRange

ALGORITHMS = ("ste", "pact", "tqt", "ana", "inq")
INIT_METHODS = ("minmax", "meanstd", "percentile", "mse", "const")
GRANULARITIES = ("per_tensor", "per_channel")
ANA_NOISES = ("uniform", "triangular", "normal", "logistic")
ANA_STRATEGIES = ("expectation", "mode", "random")
ANNEAL_KINDS = ("const", "bws", "uws")
INQ_LEVELS = ("pow2", "uniform")
INQ_STRATEGIES = ("magnitude", "random")
MAX_BITS = 16
MAX_LEVELS = 2**MAX_BITS
# Power-of-two INQ integers reach +-2^(floor(K/2)-2); keep them inside int32.
INQ_POW2_MAX_EXPONENT = 30


# --------------------------------------------------------------------------------------
# small validators: each names the offending key
# --------------------------------------------------------------------------------------
def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")


def _check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be a boolean, got {value!r}")


def _check_int(key: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{key} must be in [{lo}, {hi}], got {value}")
    return value


def _to_float(key: str, value: Any) -> float:
    """Accept int or float (JSON writes 3.0 as 3 sometimes), refuse bools, NaN and inf."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be finite, got {value!r}")
    return value


def _set(obj: Any, name: str, value: Any) -> None:
    """Normalise a field of a frozen dataclass inside ``__post_init__``."""
    object.__setattr__(obj, name, value)


def _check_keys(cls: type, data: Any) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} JSON must be an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s) {unknown}; known: {sorted(known)}")


class _Json:
    """Flat dataclass <-> dict; subclasses override for nested fields."""

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, data: dict):
        _check_keys(cls, data)
        try:
            return cls(**data)
        except TypeError as exc:  # pragma: no cover - guarded by _check_keys
            raise ConfigError(f"{cls.__name__}: {exc}") from None


# --------------------------------------------------------------------------------------
# clipping-bound initialisation
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InitSpec(_Json):
    """How the clipping bounds [a, b] are initialised from observed statistics.

    * ``minmax``: a = min x, b = max x.
    * ``meanstd``: a, b = mean ∓ k·std.
    * ``percentile``: a = P_(100-p), b = P_p (p = ``percentile``).
    * ``mse``: the scale ε minimising mean((x - fq(x, ε))^2) over a grid of shrunk min/max.
    * ``const``: a = ``lo``, b = ``hi``.

    The bounds are turned into one scale ε by :func:`edgeq.train.quantiser.eps_covering`.
    """

    method: str = "minmax"
    k: float = 3.0
    percentile: float = 99.99
    lo: float | None = None
    hi: float | None = None

    def __post_init__(self) -> None:
        _check_choice("InitSpec.method", self.method, INIT_METHODS)
        _set(self, "k", _to_float("InitSpec.k", self.k))
        if self.k <= 0:
            raise ConfigError(f"InitSpec.k must be > 0, got {self.k}")
        _set(self, "percentile", _to_float("InitSpec.percentile", self.percentile))
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError(f"InitSpec.percentile must be in (50, 100], got {self.percentile}")
        if self.method == "const":
            if self.lo is None or self.hi is None:
                raise ConfigError("InitSpec.lo and InitSpec.hi are required by method 'const'")
            _set(self, "lo", _to_float("InitSpec.lo", self.lo))
            _set(self, "hi", _to_float("InitSpec.hi", self.hi))
            if not self.lo < self.hi:
                raise ConfigError(f"InitSpec.lo must be < InitSpec.hi, got [{self.lo}, {self.hi}]")
        elif self.lo is not None or self.hi is not None:
            raise ConfigError(
                f"InitSpec.lo/InitSpec.hi are only used by method 'const', not {self.method!r}"
            )


# --------------------------------------------------------------------------------------
# algorithm parameters
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SteParams(_Json):
    """STE: fixed clipping bound from the init; gradient g·1[in range] (or g if not clipped)."""

    clip_gradient: bool = True

    def __post_init__(self) -> None:
        _check_bool("SteParams.clip_gradient", self.clip_gradient)


@dataclass(frozen=True)
class PactParams(_Json):
    """PACT: learnable clipping bound α (``learn_clip``) with gradient Σ g·q/m off-range."""

    learn_clip: bool = True
    clip_gradient: bool = True

    def __post_init__(self) -> None:
        _check_bool("PactParams.learn_clip", self.learn_clip)
        _check_bool("PactParams.clip_gradient", self.clip_gradient)


@dataclass(frozen=True)
class TqtParams(_Json):
    """TQT: learned log2 threshold; its gradient is normalised by a running RMS.

    v ← β·v + (1-β)·g², v̂ = v/(1-β^t), g ← g/(√v̂ + ``norm_eps``), then tanh(g) if ``use_tanh``.
    """

    beta: float = 0.9
    norm_eps: float = 1e-5
    use_tanh: bool = False

    def __post_init__(self) -> None:
        _set(self, "beta", _to_float("TqtParams.beta", self.beta))
        if not 0.0 <= self.beta < 1.0:
            raise ConfigError(f"TqtParams.beta must be in [0, 1), got {self.beta}")
        _set(self, "norm_eps", _to_float("TqtParams.norm_eps", self.norm_eps))
        if self.norm_eps <= 0:
            raise ConfigError(f"TqtParams.norm_eps must be > 0, got {self.norm_eps}")
        _check_bool("TqtParams.use_tanh", self.use_tanh)


@dataclass(frozen=True)
class AnnealSpec(_Json):
    """Annealing schedule v(t) = ``base``·f(t) of an ANA noise parameter, t = epoch.

    * ``const``: f(t) = 1.
    * ``bws``: f(t) = clip((end - t)/(end - start), 0, 1)^alpha  (reaches 0 at ``end``).
    * ``uws``: f(t) = (t - start + 1)^(-alpha) for t >= start, 1 before; 0 once below ``eps``.
    """

    kind: str = "const"
    base: float = 0.0
    start: int = 0
    end: int = 1
    alpha: float = 1.0
    eps: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("AnnealSpec.kind", self.kind, ANNEAL_KINDS)
        _set(self, "base", _to_float("AnnealSpec.base", self.base))
        _check_int("AnnealSpec.start", self.start, 0)
        _check_int("AnnealSpec.end", self.end, 0)
        if self.kind == "bws" and self.end <= self.start:
            raise ConfigError(f"AnnealSpec.end must be > start for 'bws', got {self.end}")
        _set(self, "alpha", _to_float("AnnealSpec.alpha", self.alpha))
        if self.alpha <= 0:
            raise ConfigError(f"AnnealSpec.alpha must be > 0, got {self.alpha}")
        _set(self, "eps", _to_float("AnnealSpec.eps", self.eps))
        if self.eps < 0:
            raise ConfigError(f"AnnealSpec.eps must be >= 0, got {self.eps}")

    def factor(self, t: int) -> float:
        """f(t) of the docstring."""
        if self.kind == "const":
            return 1.0
        if self.kind == "bws":
            ratio = (self.end - t) / (self.end - self.start)
            return min(max(ratio, 0.0), 1.0) ** self.alpha
        if t < self.start:
            return 1.0
        value = float(t - self.start + 1) ** (-self.alpha)
        return 0.0 if value < self.eps else value

    def value(self, t: int) -> float:
        """v(t) = base·f(t)."""
        return self.base * self.factor(t)


@dataclass(frozen=True)
class AnaParams:
    """ANA: additive noise annealing. μ and σ are in units of ε (one level step = 1).

    ``noise``: distribution of the standardised noise z (uniform on [-1, 1], triangular on
    [-1, 1], normal N(0, 1), logistic with scale 1); the input sees x/ε + μ + σ·z.
    ``strategy``: forward output — ``expectation`` E[q], ``mode`` argmax_k P(q_k) or a
    ``random`` sample. Eval mode always uses the hard quantiser.
    """

    noise: str = "uniform"
    strategy: str = "expectation"
    mu: AnnealSpec = AnnealSpec()
    sigma: AnnealSpec = AnnealSpec(kind="bws", base=1.0, start=0, end=10)

    def __post_init__(self) -> None:
        _check_choice("AnaParams.noise", self.noise, ANA_NOISES)
        _check_choice("AnaParams.strategy", self.strategy, ANA_STRATEGIES)
        for key in ("mu", "sigma"):
            if not isinstance(getattr(self, key), AnnealSpec):
                raise ConfigError(f"AnaParams.{key} must be an AnnealSpec")
        if self.sigma.base < 0:
            raise ConfigError(f"AnaParams.sigma.base must be >= 0, got {self.sigma.base}")

    def to_json(self) -> dict:
        return {
            "noise": self.noise,
            "strategy": self.strategy,
            "mu": self.mu.to_json(),
            "sigma": self.sigma.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict) -> AnaParams:
        _check_keys(cls, data)
        data = dict(data)
        for key in ("mu", "sigma"):
            if key in data:
                data[key] = AnnealSpec.from_json(data[key])
        return cls(**data)


@dataclass(frozen=True)
class InqParams:
    """INQ: incremental network quantisation (weights only).

    ``levels``: ``pow2`` — {0, ±2^i : i = n2..n1}, n1 = ⌊log2(4s/3)⌋, n2 = n1 + 2 - ⌊K/2⌋,
    s = max|w| (needs a signed spec, K >= 4); ``uniform`` — the spec's integer range.
    ``schedule``: ((epoch, fraction), ...) — from that epoch on, ``fraction`` of the weights
    are frozen onto their levels (epochs increasing, fractions non-decreasing in [0, 1]).
    ``strategy``: which free weights are frozen next — largest ``magnitude`` or ``random``
    (seeded by ``seed``).
    """

    levels: str = "pow2"
    strategy: str = "magnitude"
    schedule: tuple[tuple[int, float], ...] = ((0, 0.5), (1, 0.75), (2, 0.875), (3, 1.0))
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("InqParams.levels", self.levels, INQ_LEVELS)
        _check_choice("InqParams.strategy", self.strategy, INQ_STRATEGIES)
        _check_int("InqParams.seed", self.seed, 0)
        _set(self, "schedule", _normalise_inq_schedule(self.schedule))

    def fraction(self, epoch: int) -> float:
        """Fraction of weights frozen at ``epoch``: that of the latest entry with e <= epoch."""
        frac = 0.0
        for e, f in self.schedule:
            if e <= epoch:
                frac = f
        return frac

    def to_json(self) -> dict:
        return {
            "levels": self.levels,
            "strategy": self.strategy,
            "schedule": [[e, f] for e, f in self.schedule],
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: dict) -> InqParams:
        _check_keys(cls, data)
        return cls(**data)


def _normalise_inq_schedule(schedule: Any) -> tuple[tuple[int, float], ...]:
    key = "InqParams.schedule"
    if not isinstance(schedule, (list, tuple)) or not schedule:
        raise ConfigError(f"{key} must be a non-empty list of [epoch, fraction] pairs")
    out: list[tuple[int, float]] = []
    for item in schedule:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ConfigError(f"{key} entries must be [epoch, fraction] pairs, got {item!r}")
        epoch = _check_int(f"{key} epoch", item[0], 0)
        frac = _to_float(f"{key} fraction", item[1])
        if not 0.0 <= frac <= 1.0:
            raise ConfigError(f"{key} fraction must be in [0, 1], got {frac}")
        if out and (epoch <= out[-1][0] or frac < out[-1][1]):
            raise ConfigError(
                f"{key} needs increasing epochs and non-decreasing fractions, got {schedule!r}"
            )
        out.append((epoch, frac))
    return tuple(out)


AlgorithmParams = SteParams | PactParams | TqtParams | AnaParams | InqParams
PARAMS_BY_ALGORITHM: dict[str, type] = {
    "ste": SteParams,
    "pact": PactParams,
    "tqt": TqtParams,
    "ana": AnaParams,
    "inq": InqParams,
}


# --------------------------------------------------------------------------------------
# one quantiser
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantSpec:
    """One quantiser: ``algorithm`` on the integer range R(z, K) with K = ``n_levels``.

    ``signed`` selects z = -⌊K/2⌋ (K = 2 is the bipolar {-1, +1}), otherwise z = 0.
    ``granularity`` ``per_channel`` gives one ε per output channel (weights only).
    ``params`` defaults to the algorithm's parameter class with its defaults.
    """

    algorithm: str = "pact"
    n_levels: int = 256
    signed: bool = False
    granularity: str = "per_tensor"
    init: InitSpec = field(default_factory=InitSpec)
    params: AlgorithmParams | None = None

    def __post_init__(self) -> None:
        _check_choice("QuantSpec.algorithm", self.algorithm, ALGORITHMS)
        _check_int("QuantSpec.n_levels", self.n_levels, 2, MAX_LEVELS)
        _check_bool("QuantSpec.signed", self.signed)
        _check_choice("QuantSpec.granularity", self.granularity, GRANULARITIES)
        if not isinstance(self.init, InitSpec):
            raise ConfigError(f"QuantSpec.init must be an InitSpec, got {self.init!r}")
        params_cls = PARAMS_BY_ALGORITHM[self.algorithm]
        if self.params is None:
            _set(self, "params", params_cls())
        elif not isinstance(self.params, params_cls):
            raise ConfigError(
                f"QuantSpec.params must be {params_cls.__name__} for algorithm "
                f"{self.algorithm!r}, got {type(self.params).__name__}"
            )
        if self.algorithm == "inq" and self.params.levels == "pow2":
            self._check_inq_pow2()

    def _check_inq_pow2(self) -> None:
        if not self.signed:
            raise ConfigError("QuantSpec.signed must be true for INQ power-of-two levels")
        if self.n_levels < 4:
            raise ConfigError(
                f"QuantSpec.n_levels must be >= 4 for INQ power-of-two levels, got {self.n_levels}"
            )
        if self.n_levels // 2 - 2 > INQ_POW2_MAX_EXPONENT:
            raise ConfigError(
                f"QuantSpec.n_levels={self.n_levels} gives INQ power-of-two integers up to "
                f"2^{self.n_levels // 2 - 2}; at most {2 * INQ_POW2_MAX_EXPONENT + 5} levels"
            )

    @classmethod
    def from_bits(cls, bits: int, signed: bool = False, **kwargs: Any) -> QuantSpec:
        """Spec with K = 2^bits levels, bits in 1..16 (1-bit signed is {-1, +1})."""
        _check_int("bits", bits, 1, MAX_BITS)
        return cls(n_levels=2**bits, signed=signed, **kwargs)

    @property
    def int_range(self) -> IntRange:
        """The integer range R(z, K) of this spec (for INQ pow2: the index range, see modules)."""
        return IntRange.from_levels(self.n_levels, self.signed)

    @property
    def per_channel(self) -> bool:
        return self.granularity == "per_channel"

    def to_json(self) -> dict:
        return {
            "algorithm": self.algorithm,
            "n_levels": self.n_levels,
            "signed": self.signed,
            "granularity": self.granularity,
            "init": self.init.to_json(),
            "params": self.params.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict) -> QuantSpec:
        _check_keys(cls, data)
        data = dict(data)
        if "init" in data:
            data["init"] = InitSpec.from_json(data["init"])
        algorithm = data.get("algorithm", "pact")
        _check_choice("QuantSpec.algorithm", algorithm, ALGORITHMS)
        if data.get("params") is not None:
            data["params"] = PARAMS_BY_ALGORITHM[algorithm].from_json(data["params"])
        return cls(**data)


# --------------------------------------------------------------------------------------
# the QAT schedule
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScheduleSpec(_Json):
    """When the :class:`~edgeq.train.controller.QATController` acts (epochs count from 0).

    * ``start_epoch``: at the start of this epoch the bounds are initialised from the
      statistics observed so far and quantisation is enabled (before: float + observe).
    * ``freeze_epoch``: from this epoch on, learned bounds stop learning and weight bounds
      stop being re-fitted; ``None`` never freezes. Must be >= ``start_epoch``.
    * ``observe_epochs``: statistics are reset at the start of epoch
      ``start_epoch - observe_epochs`` so only the last epochs count; ``None`` keeps all.
    """

    start_epoch: int = 0
    freeze_epoch: int | None = None
    observe_epochs: int | None = None

    def __post_init__(self) -> None:
        _check_int("ScheduleSpec.start_epoch", self.start_epoch, 0)
        if self.freeze_epoch is not None:
            _check_int("ScheduleSpec.freeze_epoch", self.freeze_epoch, self.start_epoch)
        if self.observe_epochs is not None:
            _check_int("ScheduleSpec.observe_epochs", self.observe_epochs, 1)

    @property
    def observe_reset_epoch(self) -> int | None:
        """Epoch at whose start observations are reset (None: never)."""
        if self.observe_epochs is None:
            return None
        return max(self.start_epoch - self.observe_epochs, 0)


__all__ = [
    "ALGORITHMS",
    "AlgorithmParams",
    "AnaParams",
    "AnnealSpec",
    "InitSpec",
    "InqParams",
    "PactParams",
    "QuantSpec",
    "ScheduleSpec",
    "SteParams",
    "TqtParams",
]
