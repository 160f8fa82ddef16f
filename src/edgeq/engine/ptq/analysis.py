"""Phase 1, layer analysis: per layer and variable, the best parameters per bit width.

For every linear layer's weights, every layer's activations and every graph input, and
for every requested bit width, each method is resolved on the calibration data (FL
search, codebook) and the one with the smallest layer L2 error is kept (the L2 is the
one of :mod:`edgeq.engine.ptq.resolve`: the layer's output with FP inputs, averaged
over the batch). The result is a frozen :class:`LayerAnalysis` that round-trips to JSON,
and turns into a :class:`PTQConfig` for any choice of bit widths (:meth:`config_for`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgeq.engine.ir import Graph
from edgeq.engine.ptq.calibration import Calibration
from edgeq.engine.ptq.config import (
    CLUSTER_METHODS,
    LayerQuant,
    PTQConfig,
    VarQuant,
    check_method,
)
from edgeq.engine.ptq.fixedpoint import check_bits
from edgeq.engine.ptq.plan import Plan
from edgeq.engine.ptq.resolve import probe, resolve_activation, resolve_weights
from edgeq.errors import ConfigError

FORMAT, VERSION = "edgeq.ptq.analysis", 1
DEFAULT_BITS = (16, 8, 6, 4)
DEFAULT_WEIGHT_METHODS = ("dynamic", "kmeans")


@dataclass(frozen=True)
class Candidate:
    """The best quantisation of one variable at one bit width, and its layer L2."""

    quant: VarQuant
    l2: float

    def to_json(self) -> dict:
        return {"l2": self.l2, "quant": self.quant.to_json()}

    @classmethod
    def from_json(cls, data: dict, where: str, variable: str) -> Candidate:
        try:
            return cls(VarQuant.from_json(data["quant"], where, variable), float(data["l2"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: not a candidate record ({exc})") from None


@dataclass(frozen=True)
class LayerAnalysis:
    """``variables``: {"inputs.<name>" or "<layer>.weights"/"<layer>.activations":
    {bits: Candidate}}; keys are in graph order."""

    model: str
    bits: tuple[int, ...]
    methods: tuple[str, ...]
    variables: dict[str, dict[int, Candidate]]

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "model": self.model,
                "bits": list(self.bits), "weight_methods": list(self.methods),
                "variables": {k: {str(b): c.to_json() for b, c in v.items()}
                              for k, v in self.variables.items()}}

    @classmethod
    def from_json(cls, data: dict, source: str = "analysis") -> LayerAnalysis:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{source}: not an {FORMAT} file")
        variables = {}
        for key, per_bits in data.get("variables", {}).items():
            var = "weights" if key.endswith(".weights") else "activations"
            variables[key] = {int(b): Candidate.from_json(c, f"{source}: {key}.{b}", var)
                              for b, c in per_bits.items()}
        return cls(data.get("model", ""), tuple(data["bits"]), tuple(data["weight_methods"]),
                   variables)

    def save(self, path: str | os.PathLike) -> None:
        from edgeq.engine.tensor_io import write_atomic

        text = (json.dumps(self.to_json(), indent=1) + "\n").encode()
        write_atomic(Path(path), lambda f: f.write(text))

    @classmethod
    def load(cls, path: str | os.PathLike) -> LayerAnalysis:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the layer analysis ({exc})") from None
        return cls.from_json(data, str(path))

    def config_for(self, choice: dict[str, int], default: int | None = None) -> PTQConfig:
        """The PTQConfig taking, for each variable key, the candidate at ``choice[key]``
        bits (``default`` for keys not in ``choice``; a key missing both is left out)."""
        inputs, layers = {}, {}
        for key, per_bits in self.variables.items():
            bits = choice.get(key, default)
            if bits is None:
                continue
            if bits not in per_bits:
                raise ConfigError(f"{key}: no candidate at {bits} bits (have {sorted(per_bits)})")
            vq = per_bits[bits].quant
            head, var = key.rsplit(".", 1)
            if key.startswith("inputs."):
                inputs[key.split(".", 1)[1]] = vq
            else:
                old = layers.get(head, LayerQuant())
                layers[head] = LayerQuant(**{**old.__dict__, var: vq})
        return PTQConfig(inputs, layers)


def variable_keys(plan: Plan, graph: Graph) -> list[str]:
    keys = [f"inputs.{n}" for n in graph.inputs]
    for layer in plan.layers:
        if layer.kind == "linear":
            keys.append(f"{layer.name}.weights")
        keys.append(f"{layer.name}.activations")
    return keys


def analyse_layers(graph: Graph, plan: Plan, cal: Calibration, bits=DEFAULT_BITS,
                   methods=DEFAULT_WEIGHT_METHODS, model: str = "", progress: bool = False
                   ) -> LayerAnalysis:
    """Phase 1 (module docstring). ``methods`` are the weight methods tried (the
    network-wide ``fixed`` has no per-layer choice and is not one of them)."""
    from tqdm import tqdm

    bits = tuple(check_bits(b, "--bits") for b in bits)
    for m in methods:
        check_method(m, "--methods")
        if m == "fixed":
            raise ConfigError("--methods: 'fixed' is network-wide; layer analysis compares "
                              "per-layer methods (dynamic, kmeans-linear, kmeans-gauss, kmeans)")
    variables: dict[str, dict[int, Candidate]] = {}
    steps = tqdm(total=len(variable_keys(plan, graph)) * len(bits), desc="layer analysis",
                 disable=not progress, leave=False)
    with steps:
        for name in graph.inputs:
            variables[f"inputs.{name}"] = _acts(name, cal, bits, steps)
        for layer in plan.layers:
            if layer.kind == "linear":
                p = probe(graph, layer, cal)
                per = {}
                for b in bits:
                    tries = [resolve_weights(VarQuant(m, b), p, None) for m in methods
                             if not (m in CLUSTER_METHODS and b > 12)]  # 2^13+ centroids: no
                    best = min(tries or [resolve_weights(VarQuant("dynamic", b), p, None)],
                               key=lambda t: t[1])
                    per[b] = Candidate(best[0], best[1])
                    steps.update()
                variables[f"{layer.name}.weights"] = per
            variables[f"{layer.name}.activations"] = _acts(layer.output, cal, bits, steps)
    return LayerAnalysis(model, bits, tuple(methods), variables)


def _acts(name: str, cal: Calibration, bits, steps) -> dict[int, Candidate]:
    out = {}
    for b in bits:
        vq, l2 = resolve_activation(VarQuant("dynamic", b), name, cal, None)
        out[b] = Candidate(vq, l2)
        steps.update()
    return out
