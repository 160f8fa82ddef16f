"""The engine's intermediate representation: Graph / Node / Value with quantisation.

A :class:`Graph` is a topologically ordered list of :class:`Node` objects that read and
write named :class:`Value` objects. Constants (ONNX initializers) are values with
``data``. Every value carries its shape and dtype (inferred at import) and, for integer
tensors, a :class:`QuantInfo`: the :class:`~edgeq.numerics.IntRange` it lives in and,
where known, its scale ε (per tensor or per channel). ``x_real = ε * x_int``.

Op types are ONNX op types plus the IR's own integer ops (domain ``edgeq``):

- ``RequantShift(x, mul, add)`` attrs ``shift, lo, hi``:
  ``y = clip(floor((x*mul + add) / 2^shift), lo, hi)`` (DESIGN §3.3).
- ``HarmonisedAdd(x1, ..., xn)`` attrs ``in_mul, in_add, in_shift, in_rq`` (one list
  entry per input), ``out_mul, out_add, out_shift, out_rq, lo, hi``:
  ``s = Σ_i rq_i(x_i)`` with ``rq_i(x) = floor((x*in_mul_i + in_add_i) / 2^in_shift_i)``
  if ``in_rq_i`` else ``x``; ``s = floor((s*out_mul + out_add) / 2^out_shift)`` if
  ``out_rq``; ``y = clip(s, lo, hi)`` (DESIGN §4).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeq.errors import ValidationError
from edgeq.numerics import IntRange

EDGEQ_DOMAIN = "edgeq"
IR_OPS = ("RequantShift", "HarmonisedAdd", "RequantDiv", "QLinearRequant", "QLinearAddOrt",
          "QLinearAvgPoolOrt")

Dim = int | str | None


@dataclass(frozen=True)
class QuantInfo:
    """Quantisation of one integer tensor: its range and (optionally) its scale ε.

    ``eps`` is a float (per tensor), a tuple of floats (per channel along ``axis``), or
    ``None`` when the file does not say (QuantLab/DORY files carry no ε).

    ``codebook`` (DESIGN §3.8), when set, says the tensor is k-means clustered: every
    element is one of these integers (all in ``range``, at the one scale ``eps``). The
    data stay decoded, so kernels see plain integers; storage is counted at the index
    width, ``ceil(log2(len(codebook)))`` bits (:attr:`storage_bits`).
    """

    range: IntRange
    eps: float | tuple[float, ...] | None = None
    axis: int | None = None
    codebook: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.eps, tuple) and self.axis is None:
            raise ValidationError("per-channel eps needs a channel axis")
        if self.codebook is not None:
            book = np.asarray(self.codebook, dtype=np.int64)
            distinct = len(set(self.codebook)) == book.size
            if book.size < 1 or not distinct or not self.range.contains(book):
                raise ValidationError(
                    f"codebook must be distinct integers in {self.range}, got {self.codebook!r}"
                )
        eps = self.eps if isinstance(self.eps, tuple) else (self.eps,)
        if any(e is not None and not (e > 0 and np.isfinite(e)) for e in eps):
            raise ValidationError(f"eps must be positive and finite, got {self.eps!r}")

    @property
    def bits(self) -> int:
        return self.range.bits

    @property
    def signed(self) -> bool:
        return self.range.is_signed

    @property
    def storage_bits(self) -> int:
        """Bits per stored element: the index width for a codebook, else the range's."""
        if self.codebook is not None:
            return max(1, (len(self.codebook) - 1).bit_length())
        return self.bits

    def eps_array(self, ndim: int) -> np.ndarray | None:
        """ε shaped to broadcast against a tensor of rank ``ndim`` (None if unknown)."""
        if self.eps is None:
            return None
        if not isinstance(self.eps, tuple):
            return np.asarray(self.eps, dtype=np.float64)
        shape = [1] * ndim
        shape[self.axis] = len(self.eps)
        return np.asarray(self.eps, dtype=np.float64).reshape(shape)

    def describe(self) -> str:
        sign = "s" if self.signed else "u"
        text = f"{sign}{self.bits} {self.range}"
        if isinstance(self.eps, tuple):
            text += f" eps[{len(self.eps)}]"
        elif self.eps is not None:
            text += f" eps={self.eps:.6g}"
        if self.codebook is not None:
            text += f" codebook[{len(self.codebook)}]"
        return text

    def to_json(self) -> dict:
        data = {"range": self.range.to_json(), "eps": _eps_json(self.eps), "axis": self.axis}
        if self.codebook is not None:  # only then: files without codebooks are unchanged
            data["codebook"] = [int(c) for c in self.codebook]
        return data

    @classmethod
    def from_json(cls, data: dict) -> QuantInfo:
        eps = data.get("eps")
        eps = tuple(float(e) for e in eps) if isinstance(eps, list) else eps
        book = data.get("codebook")
        book = tuple(int(c) for c in book) if book is not None else None
        return cls(IntRange.from_json(data["range"]), eps, data.get("axis"), book)


def _eps_json(eps):
    return list(eps) if isinstance(eps, tuple) else eps


@dataclass
class Value:
    """A named tensor: graph input, constant, or node output."""

    name: str
    shape: tuple[Dim, ...] | None = None
    dtype: np.dtype | None = None
    quant: QuantInfo | None = None
    data: np.ndarray | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def is_integer(self) -> bool:
        return self.dtype is not None and np.issubdtype(self.dtype, np.integer)

    @property
    def numel(self) -> int | None:
        if self.shape is None or any(not isinstance(d, int) for d in self.shape):
            return None
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int | None:
        """Storage bytes: packed at the range's bit width when quantised."""
        return self.bytes_for(self.numel)

    def bytes_for(self, n: int | None) -> int | None:
        """Bytes of ``n`` elements of this value: ``ceil(n*bits/8)`` when quantised
        (``bits`` the index width of a codebook), else ``n`` times the dtype size (None
        when ``n`` or the dtype is unknown)."""
        if n is None or self.dtype is None:
            return None
        if self.quant is not None:
            return (n * self.quant.storage_bits + 7) // 8
        return n * np.dtype(self.dtype).itemsize

    def shape_str(self) -> str:
        if self.shape is None:
            return "?"
        return "[" + ",".join("?" if d is None else str(d) for d in self.shape) + "]"


@dataclass
class Node:
    """One operation. ``inputs`` may contain ``""`` for an omitted optional input."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""


class Graph:
    """A topologically ordered dataflow graph."""

    def __init__(
        self,
        nodes: Iterable[Node],
        values: dict[str, Value],
        inputs: list[str],
        outputs: list[str],
        name: str = "graph",
        opset: int = 21,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.nodes = list(nodes)
        self.values = values
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.name = name
        self.opset = opset
        self.meta = dict(meta or {})

    # -- queries ------------------------------------------------------------------
    def value(self, name: str) -> Value:
        if name not in self.values:
            raise ValidationError(f"graph '{self.name}': no value named '{name}'")
        return self.values[name]

    def producer(self, name: str) -> Node | None:
        for node in self.nodes:
            if name in node.outputs:
                return node
        return None

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def const(self, name: str) -> np.ndarray | None:
        v = self.values.get(name)
        return None if v is None else v.data

    def constants(self) -> list[Value]:
        return [v for v in self.values.values() if v.is_const]

    def copy(self) -> Graph:
        return copy.deepcopy(self)

    def fresh_name(self, base: str) -> str:
        taken = set(self.values) | {n.name for n in self.nodes}
        if base not in taken:
            return base
        i = 1
        while f"{base}_{i}" in taken:
            i += 1
        return f"{base}_{i}"

    def remove_unused(self) -> None:
        """Drop values no node reads or writes and that are not graph inputs/outputs."""
        used = set(self.inputs) | set(self.outputs)
        for n in self.nodes:
            used.update(i for i in n.inputs if i)
            used.update(n.outputs)
        self.values = {k: v for k, v in self.values.items() if k in used}

    # -- validation -----------------------------------------------------------------
    def validate(self, known_ops: Iterable[str] | None = None) -> None:
        """Check the graph is well formed; raise ValidationError naming the problem.

        Checks: names are unique and declared; every input is available before use
        (topological order); every graph output is produced; constants match their
        declared shape and dtype; integer data lies in its annotated range; ops are
        known (when ``known_ops`` is given).
        """
        known = set(known_ops) if known_ops is not None else None
        available = set(self.inputs)
        for v in self.constants():
            available.add(v.name)
            self._check_const(v)
        for name in self.inputs:
            if name not in self.values:
                raise ValidationError(f"graph input '{name}' has no value entry")
            if self.values[name].is_const:
                raise ValidationError(f"graph input '{name}' is also a constant")
        seen_nodes: set[str] = set()
        for node in self.nodes:
            self._check_node(node, available, seen_nodes, known)
        for name in self.outputs:
            if name not in available:
                raise ValidationError(f"graph output '{name}' is produced by no node")

    def _check_node(self, node: Node, available: set, seen: set, known: set | None) -> None:
        where = f"node '{node.name}' ({node.op})"
        if node.name in seen:
            raise ValidationError(f"{where}: duplicate node name")
        seen.add(node.name)
        if known is not None and node.op not in known:
            raise ValidationError(f"{where}: op not in the backend registry")
        for name in node.inputs:
            if name and name not in available:
                raise ValidationError(f"{where}: input '{name}' is not available before it")
            if name and name not in self.values:
                raise ValidationError(f"{where}: input '{name}' has no value entry")
        for name in node.outputs:
            if not name:
                continue
            if name in available:
                raise ValidationError(f"{where}: output '{name}' is written twice")
            if name not in self.values:
                raise ValidationError(f"{where}: output '{name}' has no value entry")
            available.add(name)

    @staticmethod
    def _check_const(v: Value) -> None:
        data = v.data
        if v.shape is not None and tuple(data.shape) != tuple(v.shape):
            raise ValidationError(
                f"constant '{v.name}': data shape {data.shape} != declared {v.shape}"
            )
        if v.dtype is not None and data.dtype != v.dtype:
            raise ValidationError(
                f"constant '{v.name}': data dtype {data.dtype} != declared {v.dtype}"
            )
        if v.quant is not None and not v.quant.range.contains(data):
            raise ValidationError(
                f"constant '{v.name}': values outside its range {v.quant.range}"
            )
        book = None if v.quant is None else v.quant.codebook
        if book is not None and not np.all(np.isin(data, np.asarray(book, dtype=np.int64))):
            raise ValidationError(f"constant '{v.name}': values outside its codebook")

    # -- printing -------------------------------------------------------------------
    def dump(self) -> str:
        """A readable text form: inputs, one line per node, outputs."""
        lines = [f"graph {self.name} (opset {self.opset})"]
        for name in self.inputs:
            lines.append(f"  input  {self._describe(name)}")
        for node in self.nodes:
            ins = ", ".join(self._short(i) for i in node.inputs)
            outs = ", ".join(self._describe(o) for o in node.outputs if o)
            attrs = _format_attrs(node.attrs)
            lines.append(f"  {outs} = {node.op}({ins}){attrs}  # {node.name}")
        for name in self.outputs:
            lines.append(f"  output {self._describe(name)}")
        return "\n".join(lines)

    def _short(self, name: str) -> str:
        if not name:
            return "∅"
        v = self.values.get(name)
        if v is not None and v.is_const:
            return f"{name}<const {v.shape_str()}>"
        return name

    def _describe(self, name: str) -> str:
        v = self.values.get(name)
        if v is None:
            return name
        dt = "?" if v.dtype is None else np.dtype(v.dtype).name
        q = f" {{{v.quant.describe()}}}" if v.quant else ""
        return f"{name}: {dt}{v.shape_str()}{q}"

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.nodes)} nodes)"


def _format_attrs(attrs: dict[str, Any]) -> str:
    if not attrs:
        return ""
    parts = []
    for k, v in attrs.items():
        if isinstance(v, np.ndarray):
            v = f"<tensor {list(v.shape)}>" if v.size > 8 else v.tolist()
        parts.append(f"{k}={v}")
    return " [" + ", ".join(parts) + "]"
