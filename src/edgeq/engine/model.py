"""The engine's public model object: ``load(path) -> Model``; ``Model.run(inputs)``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from edgeq.engine.ir import Dim, Graph, QuantInfo
from edgeq.errors import IntegralityError, MissingInputError, ShapeError
from edgeq.numerics import round_half_up, to_integers


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape, dtype and quantisation of a model input or output."""

    name: str
    shape: tuple[Dim, ...] | None
    dtype: np.dtype | None
    quant: QuantInfo | None


class Model:
    """An imported, validated graph plus the reference backend that runs it."""

    def __init__(self, graph: Graph, source: str | None = None) -> None:
        self.graph = graph
        self.source = source

    @property
    def inputs(self) -> list[TensorInfo]:
        return [self._info(n) for n in self.graph.inputs]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [self._info(n) for n in self.graph.outputs]

    def _info(self, name: str) -> TensorInfo:
        v = self.graph.values[name]
        return TensorInfo(name, v.shape, v.dtype, v.quant)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the reference backend.

        For an integer (quantised) input, an integer array is taken as it is and must lie
        in the input's IntRange; a float array is quantised by the input rule
        ``clip(floor(x/eps + 1/2), lo, hi)`` when the model knows ε, and must otherwise
        hold integers (QuantLab/DORY files carry no ε).
        """
        from edgeq.engine.backends.reference.executor import run_graph

        unknown = set(inputs) - set(self.graph.inputs)
        if unknown:
            raise MissingInputError(
                f"unknown input(s) {sorted(unknown)}; the model takes {self.graph.inputs}"
            )
        feeds = {name: self._prepare(name, inputs.get(name)) for name in self.graph.inputs}
        return run_graph(self.graph, feeds)

    def _prepare(self, name: str, x) -> np.ndarray:
        if x is None:
            raise MissingInputError(f"input '{name}' was not supplied")
        v = self.graph.values[name]
        x = np.asarray(x)
        _check_shape(name, x.shape, v.shape)
        if v.quant is not None:
            return _as_integers(name, x, v.quant, v.dtype)
        if v.dtype is not None and x.dtype != v.dtype:
            x = x.astype(v.dtype)
        return x


def _check_shape(name: str, got: tuple, want) -> None:
    if want is None:
        return
    ok = len(got) == len(want) and all(
        not isinstance(w, int) or w == g for g, w in zip(got, want, strict=True)
    )
    if not ok:
        shown = ["?" if not isinstance(w, int) else w for w in want]
        raise ShapeError(f"input '{name}' has shape {list(got)}, the model expects {shown}")


def quantise_input(x: np.ndarray, quant: QuantInfo) -> np.ndarray:
    """The input rule: ``clip(floor(x/eps + 1/2), lo, hi)`` (round half up, DESIGN §3.4)."""
    eps = quant.eps_array(np.ndim(x))
    q = round_half_up(np.asarray(x, dtype=np.float64) / eps)
    return quant.range.clip(q).astype(np.int64)


def _as_integers(name: str, x: np.ndarray, quant: QuantInfo, dtype) -> np.ndarray:
    if np.issubdtype(x.dtype, np.floating) and quant.eps is not None:
        return quantise_input(x, quant).astype(dtype)
    x = to_integers(x, f"input '{name}'")
    if not quant.range.contains(x):
        raise IntegralityError(
            f"input '{name}' holds values in [{x.min()}, {x.max()}], outside its range "
            f"{quant.range} (for a QuantLab/DORY file, set the input precision: "
            "--input-bits/--signed-input, or load(path, input_range=...))"
        )
    return x.astype(dtype)


def load(path: str | os.PathLike, input_range=None) -> Model:
    """Import an ONNX file (float or QuantLab/DORY integer) and return a runnable Model."""
    from edgeq.engine.onnx import import_onnx

    return Model(import_onnx(path, input_range=input_range), str(path))
