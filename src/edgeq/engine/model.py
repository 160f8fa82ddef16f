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
    """An imported, validated graph plus the backend(s) that run it.

    ``backend``: ``"reference"`` (NumPy, the specification), ``"c"`` (generated C for the
    host), ``"c:cortex-a72"`` (the aarch64 build under qemu), or a spec of rules such as
    ``"default=c,Conv=reference"`` (op type or node name, first match wins; DESIGN §7).
    The spec is parsed and every node assigned here, so a rule no backend can honour
    fails at load time, naming the node.
    """

    def __init__(self, graph: Graph, source: str | None = None,
                 backend: str = "reference") -> None:
        self.graph = graph
        self.source = source
        self.backend = backend
        self._assignment = _assign(graph, backend)
        self._compiled: dict = {}

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
        if set(self._assignment.values()) <= {"reference"}:
            return run_graph(self.graph, feeds)
        return self._run_segments(feeds)

    def _run_segments(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run each maximal same-backend segment in order; C segments are compiled
        (cached by content hash) once per batch size."""
        from edgeq.engine.backends.c import compile_cached
        from edgeq.engine.backends.reference.executor import run_graph
        from edgeq.engine.backends.spec import partition

        batch = int(np.shape(next(iter(feeds.values())))[0]) if feeds else 1
        env = dict(feeds)
        env.update({v.name: v.data for v in self.graph.constants()})  # constant outputs
        for i, seg in enumerate(partition(self.graph, self._assignment)):
            seg_feeds = {n: env[n] for n in seg.graph.inputs}
            if seg.backend == "reference":
                out = run_graph(seg.graph, seg_feeds)
            else:
                key = (i, batch)
                if key not in self._compiled:
                    target = seg.backend.partition(":")[2] or "host"
                    self._annotate_inputs(seg.graph)
                    self._compiled[key] = compile_cached(seg.graph, target, batch=batch)
                out = self._compiled[key].run(seg_feeds)
            env.update(out)
        return {name: env[name] for name in self.graph.outputs}

    def _annotate_inputs(self, seg: Graph) -> None:
        """Give a C segment's un-annotated integer inputs (e.g. the accumulator of a
        reference Conv) the range proven on the whole graph, so the segment's own range
        proof can start from it."""
        from edgeq.engine.passes.ranges import prove_ranges
        from edgeq.numerics import IntRange

        todo = [n for n in seg.inputs if seg.values[n].quant is None and seg.values[n].is_integer]
        if not todo:
            return
        if "bounds" not in self.graph.meta:
            self.graph.meta["bounds"] = prove_ranges(self.graph).meta["bounds"]
        bounds = self.graph.meta["bounds"]
        for name in todo:
            producer = self.graph.producer(name)
            nb = bounds.get(producer.name) if producer is not None else None
            if nb is not None:
                seg.values[name].quant = QuantInfo(IntRange.from_bounds(nb.acc_lo, nb.acc_hi))

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


def _assign(graph: Graph, backend: str) -> dict[str, str]:
    """Node name -> backend name ("reference", "c", "c:cortex-a72") for a spec string."""
    from edgeq.engine.backends.spec import BackendSpec, assign

    spec = BackendSpec.parse(backend)
    names = {b for _, b in spec.rules}
    if names == {"reference"}:
        return {n.name: "reference" for n in graph.nodes}
    return assign(graph, spec, _supports(names))


def _supports(names: set[str]) -> dict:
    from edgeq.engine.backends.c import TARGETS, supports
    from edgeq.engine.backends.reference import supported_ops
    from edgeq.errors import BackendError

    table = {}
    for name in sorted(names):
        if name == "reference":
            ops = supported_ops()
            table[name] = lambda g, n, ops=ops: n.op in ops
        elif name == "c" or (name.startswith("c:") and name[2:] in TARGETS):
            table[name] = supports
        else:
            raise BackendError(f"unknown backend '{name}': choose reference, c, "
                               f"or c:TARGET with TARGET in {sorted(TARGETS)}")
    return table


def load(path: str | os.PathLike, input_range=None, backend: str = "reference") -> Model:
    """Import an ONNX file (float or QuantLab/DORY integer) and return a runnable Model
    whose ``run`` uses ``backend`` (see :class:`Model`)."""
    from edgeq.engine.onnx import import_onnx

    return Model(import_onnx(path, input_range=input_range), str(path), backend)
