"""The reference backend's op registry: op type -> kernel, duplicates refused.

A kernel is a plain function ``kernel(*inputs, **attrs)``: ``inputs`` are NumPy arrays
in ONNX input order (``None`` for an omitted optional input), ``attrs`` are the node's
attributes as Python values (ONNX names, defaults handled by the kernel). It returns one
array or a tuple of arrays (one per output). Kernels registered with
``opset_aware=True`` also receive ``opset=<int>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgeq.errors import EdgeqError


@dataclass(frozen=True)
class KernelEntry:
    fn: Callable
    opset_aware: bool = False


KERNELS: dict[str, KernelEntry] = {}


def register(op: str, *, opset_aware: bool = False) -> Callable[[Callable], Callable]:
    """Decorator registering ``fn`` as the kernel of ``op``; a second registration fails."""

    def deco(fn: Callable) -> Callable:
        if op in KERNELS:
            raise EdgeqError(f"reference backend: op '{op}' is registered twice")
        KERNELS[op] = KernelEntry(fn, opset_aware)
        return fn

    return deco


def supported_ops() -> frozenset[str]:
    return frozenset(KERNELS)
