"""Calibration: run the float graph over an ``.npz`` and keep per-tensor statistics.

The ``.npz`` holds one array per graph input, keyed by the input's name, batch along
axis 0; every array must have the same batch size, the input's shape after axis 0 and a
float dtype. The float graph runs batch by batch in float32 with the reference kernels
(depthwise and pointwise convolutions vectorised, :mod:`~edgeq.engine.ptq.fastconv`) and an
``observe`` hook (a tqdm progress bar on stderr); every observed tensor gets a
:class:`TensorStats` (streamed over the whole set) and the first ``keep`` samples are
kept for the searches that need the data itself.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq.engine.ir import Graph
from edgeq.errors import ConfigError, InputFileError, ShapeError

HIST_EDGES = np.arange(-32.0, 32.5, 0.5)  # log2|v| bins of the log-histogram


@dataclass
class TensorStats:
    """Min, max, mean, std and a log2|v| histogram of one tensor over the calibration set."""

    count: int = 0
    min: float = np.inf
    max: float = -np.inf
    total: float = 0.0
    total_sq: float = 0.0
    zeros: int = 0
    log_hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_EDGES.size - 1, np.int64))

    def update(self, a: np.ndarray) -> None:
        a = np.asarray(a).ravel()
        if not np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float64)
        if a.size == 0:
            return
        # in the tensor's own float dtype (float32 in calibration), sums in float64
        self.count += a.size
        self.min = min(self.min, float(a.min()))
        self.max = max(self.max, float(a.max()))
        self.total += float(np.sum(a, dtype=np.float64))
        self.total_sq += float(np.einsum("i,i->", a, a, dtype=np.float64))
        nz = np.abs(a[a != 0])
        self.zeros += a.size - nz.size
        logs = np.clip(np.log2(nz), HIST_EDGES[0], HIST_EDGES[-1] - 1e-6)
        # the bins are uniform: index by arithmetic, not np.histogram's sort of the data
        bins = ((logs - HIST_EDGES[0]) * 2).astype(np.int64)
        self.log_hist += np.bincount(bins, minlength=self.log_hist.size)[: self.log_hist.size]

    @property
    def mean(self) -> float:
        return self.total / max(self.count, 1)

    @property
    def std(self) -> float:
        return float(np.sqrt(max(self.total_sq / max(self.count, 1) - self.mean**2, 0.0)))

    @property
    def max_abs(self) -> float:
        return max(abs(self.min), abs(self.max)) if self.count else 0.0

    def to_json(self) -> dict:
        return {"count": self.count, "min": self.min, "max": self.max, "mean": self.mean,
                "std": self.std, "zeros": self.zeros, "log2_edges": HIST_EDGES.tolist(),
                "log_hist": self.log_hist.tolist()}


@dataclass
class Calibration:
    """Statistics of every observed tensor, and its first samples (``samples``)."""

    stats: dict[str, TensorStats]
    samples: dict[str, np.ndarray]
    n: int


def load_npz(path: str | os.PathLike, graph: Graph, what: str = "calibration") -> dict:
    """The arrays of ``path``, checked against the graph's inputs (name, shape, dtype)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputFileError(f"{path}: cannot read the {what} file ({exc})") from None
    if not arrays:
        raise InputFileError(f"{path}: the {what} file holds no arrays")
    return arrays


def check_inputs(path, arrays: dict, graph: Graph, extra: tuple[str, ...] = ()) -> int:
    """Check the arrays feed the graph; return the batch size (ConfigError/ShapeError)."""
    missing = [n for n in graph.inputs if n not in arrays]
    unknown = sorted(set(arrays) - set(graph.inputs) - set(extra))
    if missing or unknown:
        raise ConfigError(
            f"{path}: arrays {sorted(arrays)} do not match the model's inputs "
            f"{graph.inputs}" + (f" (missing {missing})" if missing else "")
            + (f" (unknown {unknown})" if unknown else "")
        )
    sizes = set()
    for name in graph.inputs:
        a, v = arrays[name], graph.values[name]
        if not np.issubdtype(a.dtype, np.floating):
            raise ConfigError(f"{path}: array '{name}' has dtype {a.dtype}, expected float")
        want = tuple(v.shape[1:]) if v.shape else None
        if a.ndim < 1 or (want is not None and (
                a.ndim != len(v.shape) or any(isinstance(w, int) and w != g
                                              for w, g in zip(want, a.shape[1:], strict=True)))):
            raise ShapeError(
                f"{path}: array '{name}' has shape {list(a.shape)}; the input is "
                f"{v.shape_str()} (batch along axis 0)"
            )
        sizes.add(a.shape[0])
    if len(sizes) != 1:
        raise ShapeError(f"{path}: the arrays have different batch sizes {sorted(sizes)}")
    n = sizes.pop()
    if n == 0:
        raise ConfigError(f"{path}: the calibration set is empty (batch size 0)")
    return n


def batches(arrays: dict, names: list[str], n: int, size: int):
    for start in range(0, n, size):
        yield {k: np.asarray(arrays[k][start:start + size], dtype=np.float32) for k in names}


def calibrate(graph: Graph, arrays: dict, n: int, keep: int = 64, batch: int = 32,
              progress: bool = True) -> Calibration:
    """Run the float graph over the arrays; statistics of inputs and node outputs."""
    from tqdm import tqdm

    from edgeq.engine.ptq.fastconv import run_float

    stats: dict[str, TensorStats] = {}
    kept: dict[str, list[np.ndarray]] = {}
    seen = 0

    def observe(name: str, a: np.ndarray) -> None:
        stats.setdefault(name, TensorStats()).update(a)
        if seen < keep and np.issubdtype(a.dtype, np.floating):
            kept.setdefault(name, []).append(np.asarray(a)[: keep - seen])

    from edgeq.engine.ptq.fastconv import blas_limited

    bar = tqdm(total=n, desc="calibration", unit="sample", disable=not progress, leave=False)
    with bar, blas_limited():
        for feeds in batches(arrays, graph.inputs, n, batch):
            for name, a in feeds.items():
                observe(name, a)
            run_float(graph, feeds, observe=observe)
            b = len(next(iter(feeds.values())))
            seen += b
            bar.update(b)
    samples = {k: np.concatenate(v) for k, v in kept.items()}
    return Calibration(stats, samples, n)
