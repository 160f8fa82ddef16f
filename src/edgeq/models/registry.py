"""The models a pipeline config can name, with the widths and input sizes each can take.

``model`` in a config is ``{"name": ..., "width": ..., "input_size": ...}``; ``width``
and ``input_size`` are only accepted by models that have them (the digits networks are
fixed 8x8 networks). Errors name the key (``model.width``) and what the model accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from edgeq.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model and which knobs it has."""

    name: str
    factory: Callable[..., nn.Module]
    channels: int  # input channels
    fixed_size: int | None = None  # square input side of a fixed-size model
    width_range: tuple[float, float] | None = None  # None: no width multiplier
    size_range: tuple[int, int] | None = None  # None: the fixed size only
    default_width: float | None = None
    default_input_size: int | None = None

    def check(self, width, input_size) -> tuple[float | None, int]:
        """(width, input_size) with defaults filled in; ConfigError naming the bad key."""
        if self.width_range is None:
            if width is not None:
                raise ConfigError(f"model.width: {self.name} has no width multiplier")
        else:
            width = self.default_width if width is None else width
            lo, hi = self.width_range
            if isinstance(width, bool) or not isinstance(width, (int, float)) or not (
                    lo <= width <= hi):
                raise ConfigError(f"model.width: {self.name} takes a width in [{lo}, {hi}], "
                                  f"got {width!r}")
            width = float(width)
        if self.size_range is None:
            if input_size is not None and input_size != self.fixed_size:
                raise ConfigError(f"model.input_size: {self.name} takes {self.fixed_size}x"
                                  f"{self.fixed_size} inputs only, got {input_size!r}")
            return width, self.fixed_size
        size = self.default_input_size if input_size is None else input_size
        lo, hi = self.size_range
        if isinstance(size, bool) or not isinstance(size, int) or not lo <= size <= hi:
            raise ConfigError(f"model.input_size: {self.name} takes an integer input size in "
                              f"[{lo}, {hi}], got {size!r}")
        return width, size

    def build(self, width: float | None, input_size: int | None) -> nn.Module:
        width, _ = self.check(width, input_size)
        return self.factory() if width is None else self.factory(width=width)


def _digits(cls_name: str) -> Callable[[], nn.Module]:
    def make():
        import edgeq.models as m

        return getattr(m, cls_name)()
    return make


def _mobilenet(width: float) -> nn.Module:
    from edgeq.models.mobilenet_v1 import mobilenet_v1_3ddfa

    return mobilenet_v1_3ddfa(width)


# MobileNetV1: int(32*w) >= 1 needs w >= 1/32; five stride-2 stages want >= 32 pixels.
MODELS: dict[str, ModelSpec] = {
    "digits_cnn": ModelSpec("digits_cnn", _digits("DigitsCNN"), 1, fixed_size=8),
    "digits_resnet": ModelSpec("digits_resnet", _digits("DigitsResNet"), 1, fixed_size=8),
    "digits_concat": ModelSpec("digits_concat", _digits("DigitsConcatNet"), 1, fixed_size=8),
    "mobilenet_v1_3ddfa": ModelSpec(
        "mobilenet_v1_3ddfa", _mobilenet, 3, width_range=(1 / 32, 2.0), size_range=(32, 256),
        default_width=0.5, default_input_size=64),
}


def model_spec(name: str) -> ModelSpec:
    """The registered model ``name``; ConfigError naming ``model.name`` otherwise."""
    if name not in MODELS:
        raise ConfigError(f"model.name must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name]


def resolve_import(path: str, key: str) -> Callable:
    """The factory an ``{"import": path}`` entry names: a registered name first (its
    factory), else ``"package.module:attribute"`` imported. ConfigError naming ``key``."""
    import importlib

    if not isinstance(path, str) or not path:
        raise ConfigError(f"{key} must be a non-empty string, got {path!r}")
    if path in MODELS:
        return MODELS[path].factory
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"{key}: {path!r} is neither a registered name ({sorted(MODELS)}) "
                          "nor 'package.module:factory'")
    try:
        found = importlib.import_module(module)
        for part in attr.split("."):
            found = getattr(found, part)
    except Exception as exc:  # ImportError, AttributeError, or the module's own error
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ConfigError(f"{key}: cannot import {path!r} ({type(exc).__name__}: {text})") \
            from None
    if not callable(found):
        raise ConfigError(f"{key}: {path!r} is not callable")
    return found
