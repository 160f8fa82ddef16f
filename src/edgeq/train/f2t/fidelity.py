"""How far the TQ network is from the FQ network it came from, layer by layer.

For every FQ quantiser output x̃ and the TQ value holding the same integers q — every
quantised activation, every harmonised add/concat, and every input quantiser of those
(rows ``<node>.in<i>``, the TQ RequantShift onto the shared ε, or the input as it is when
no requantisation was needed):

* ``max_lsb`` = max |q − round(x̃/ε)| (in LSB: integer steps of that quantiser), and
* ``frac_differ`` = fraction of elements where q ≠ round(x̃/ε);
* ``max_off_grid`` = max |x̃/ε − round(x̃/ε)| checks that the FQ value does lie on its
  grid (float32 rounding only: ~1e-5).

The TQ network is fed the integers of the FQ input quantiser, so the layers measure the
conversion alone; the ``input`` row compares those with the TQ input rule applied to the
float data (:meth:`TQNetwork.quantise_input`, float64). The task metric: top-1 accuracy
of FQ and TQ (dequantised output ε·y) against labels when given, and their top-1
agreement.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import torch
import torch.fx as fx

from edgeq.errors import ConfigError
from edgeq.train.f2t.tq import TQNetwork

METRICS = ("top1",)


@dataclass
class LayerFidelity:
    """FQ-vs-TQ integers of one quantiser output (see the module docstring)."""

    name: str  # fx node of the FQ quantiser
    value: str  # TQ value
    eps: float
    elements: int = 0
    differ: int = 0
    max_lsb: int = 0
    max_off_grid: float = 0.0

    @property
    def frac_differ(self) -> float:
        return self.differ / self.elements if self.elements else 0.0

    def update(self, fq: torch.Tensor, tq: torch.Tensor) -> None:
        scaled = fq.detach().to(torch.float64) / self.eps
        fq_int = torch.round(scaled)
        diff = (tq.to(torch.float64) - fq_int).abs()
        self.elements += diff.numel()
        self.differ += int((diff > 0).sum())
        self.max_lsb = max(self.max_lsb, int(diff.max()) if diff.numel() else 0)
        off = float((scaled - fq_int).abs().max()) if diff.numel() else 0.0
        self.max_off_grid = max(self.max_off_grid, off)

    def to_json(self) -> dict:
        return asdict(self) | {"frac_differ": self.frac_differ}


@dataclass
class FidelityReport:
    """Per-layer LSB differences plus the task metric of FQ and TQ."""

    metric: str
    input: LayerFidelity
    layers: list[LayerFidelity] = field(default_factory=list)
    samples: int = 0
    fq_correct: int = 0
    tq_correct: int = 0
    agree: int = 0
    labelled: bool = False
    output_max_abs_diff: float = 0.0  # max |FQ output − ε·TQ output|

    @property
    def fq_metric(self) -> float | None:
        return self.fq_correct / self.samples if self.labelled and self.samples else None

    @property
    def tq_metric(self) -> float | None:
        return self.tq_correct / self.samples if self.labelled and self.samples else None

    @property
    def agreement(self) -> float:
        return self.agree / self.samples if self.samples else 1.0

    @property
    def max_lsb(self) -> int:
        return max((layer.max_lsb for layer in self.layers), default=0)

    def to_json(self) -> dict:
        return {
            "metric": self.metric, "samples": self.samples,
            "fq_metric": self.fq_metric, "tq_metric": self.tq_metric,
            "agreement": self.agreement, "max_lsb": self.max_lsb,
            "output_max_abs_diff": self.output_max_abs_diff,
            "input": self.input.to_json(), "layers": [x.to_json() for x in self.layers],
        }

    def format(self) -> str:
        rows = [f"{'layer':32s} {'eps':>11s} {'max LSB':>8s} {'differ':>9s} {'off grid':>9s}"]
        for layer in [self.input, *self.layers]:
            rows.append(f"{layer.name:32s} {layer.eps:11.4g} {layer.max_lsb:8d} "
                        f"{layer.frac_differ:9.4%} {layer.max_off_grid:9.2g}")
        rows.append(f"samples {self.samples}; top-1 agreement {self.agreement:.4%}; "
                    f"max |FQ - TQ| at the output {self.output_max_abs_diff:.3g}")
        if self.labelled:
            rows.append(f"{self.metric}: FQ {self.fq_metric:.4%}, TQ {self.tq_metric:.4%} "
                        f"(delta {self.tq_metric - self.fq_metric:+.4%})")
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.format()

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)


class _Recorder(fx.Interpreter):
    """Runs the FQ GraphModule and keeps the outputs of the named nodes."""

    def __init__(self, gm: fx.GraphModule, keep: set[str]) -> None:
        super().__init__(gm)
        self.keep, self.seen = keep, {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n.name in self.keep:
            self.seen[n.name] = out
        return out


def _batches(data) -> Iterable[tuple[torch.Tensor, torch.Tensor | None]]:
    """(x, labels or None) from a DataLoader of (x, y) / x, a tuple (x, y), or a tensor x."""
    if isinstance(data, torch.Tensor):
        yield data, None
        return
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        yield data[0], data[1]
        return
    for batch in data:
        if isinstance(batch, torch.Tensor):
            yield batch, None
        else:
            yield batch[0], (batch[1] if len(batch) > 1 else None)


@torch.no_grad()
def fidelity_report(fq_model: fx.GraphModule, tq: TQNetwork, data,
                    metric: str = "top1", grid: TQNetwork | None = None) -> FidelityReport:
    """Compare ``fq_model`` (eval mode) and ``tq`` on ``data`` (see :func:`_batches`).

    The FQ integers are x̃/ε with ε from ``tq``, or from ``grid`` when given: a TQ network
    of the same FQ network converted in float64, whose ε are the FQ network's exactly —
    for ``tq`` converted in a narrow format, whose own ε are rounded.
    """
    if metric not in METRICS:
        raise ConfigError(f"fidelity metric must be one of {list(METRICS)}, got {metric!r}")
    input_node = next(k for k, v in tq.quantiser_values.items() if v == tq.input_name)
    ref = tq if grid is None else grid
    report = FidelityReport(metric, LayerFidelity("input", tq.input_name, ref.input_quant.eps))
    report.layers = _layers(tq, {row.name: row.eps for row in _layers(ref)})
    modes = {m: m.training for m in fq_model.modules()}
    fq_model.eval()
    try:
        for x, y in _batches(data):
            _compare_batch(fq_model, tq, x, y, input_node, report)
    finally:
        for m, mode in modes.items():
            m.training = mode
    return report


def _layers(tq: TQNetwork, eps: dict[str, float] | None = None) -> list[LayerFidelity]:
    """One row per quantiser, in graph order; a harmonised op's inputs before it.
    ``eps`` (row name -> ε) overrides the ε of ``tq``'s values."""
    rows = []

    def row(name: str, value: str) -> LayerFidelity:
        e = eps[name] if eps is not None else float(tq.values[value].eps)
        return LayerFidelity(name, value, e)

    for node, value in tq.quantiser_values.items():
        if value == tq.input_name:
            continue
        for i, v in enumerate(tq.harmonised_inputs.get(node, ())):
            rows.append(row(f"{node}.in{i}", v))
        rows.append(row(node, value))
    return rows


def _input_quantiser_hooks(fq_model: fx.GraphModule, tq: TQNetwork, seen: dict) -> list:
    """Forward hooks recording the outputs of harmonised ops' input quantisers."""
    targets = {n.name: n.target for n in fq_model.graph.nodes if n.op == "call_module"}
    handles = []
    for node in tq.harmonised_inputs:
        module = fq_model.get_submodule(targets[node])
        for i, q in enumerate(module.in_quantisers):
            def hook(_m, _args, out, key=f"{node}.in{i}"):
                seen[key] = out
            handles.append(q.register_forward_hook(hook))
    return handles


def _compare_batch(fq_model, tq: TQNetwork, x, y, input_node: str, report) -> None:
    rec = _Recorder(fq_model, set(tq.quantiser_values))
    handles = _input_quantiser_hooks(fq_model, tq, rec.seen)
    try:
        fq_out = rec.run(x)
    finally:
        for h in handles:
            h.remove()
    x_fq = rec.seen[input_node]
    report.input.update(x_fq, tq.quantise_input(x))
    x_int = torch.round(x_fq.to(torch.float64) / report.input.eps)  # the FQ grid
    env: dict[str, torch.Tensor] = {}
    tq_out = tq(x_int.to(torch.int64), capture=env)
    for layer in report.layers:
        layer.update(rec.seen[layer.name], env[layer.value])
    tq_real = tq.dequantise(tq_out)
    fq_real = fq_out.detach().to(torch.float64)
    report.output_max_abs_diff = max(report.output_max_abs_diff,
                                     float((fq_real - tq_real).abs().max()))
    fq_top, tq_top = fq_real.flatten(1).argmax(1), tq_real.flatten(1).argmax(1)
    report.samples += x.shape[0]
    report.agree += int((fq_top == tq_top).sum())
    if y is not None:
        report.labelled = True
        report.fq_correct += int((fq_top == y).sum())
        report.tq_correct += int((tq_top == y).sum())
