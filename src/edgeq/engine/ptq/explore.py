"""Phase 2, network space exploration (QUENN), on the float emulation.

1. **Layer analysis** (phase 1, :mod:`edgeq.engine.ptq.analysis`): the best parameters
   of every variable at every bit width.
2. **One variable at a time**: the network with only that variable quantised (the rest
   in float), for every bit width: L2 of the network output against FP (per sample,
   averaged) and the task metric when the eval set has labels/targets.
3. **Groups and the whole network**: all weights, all activations, everything, at each
   bit width.
4. **Greedy search** for the smallest memory within the budget (``max_drop`` metric
   points below FP, or ``max_l2`` output L2): start with every variable at the widest
   width; repeatedly lower by one step the variable with the best memory saved per unit
   of its one-at-a-time sensitivity; keep the step if the whole network still meets the
   budget, else freeze that variable; stop when nothing can move.

Every run here is the float32 emulation (:class:`Emulator` with ``dtype=float32``:
vectorised depthwise/pointwise convolutions, fake-quantised weights cached across runs)
with **prefix reuse**: the values of the FP network are kept, a one-at-a-time run starts
at its variable's node, and a greedy trial starts at the changed variable's node from the
values of the last accepted configuration. The chosen configuration is then lowered and
checked against the exact (float64) emulation by the integer IR (``workflow``).

Memory is counted per sample: weight storage (elements × bits) and activation traffic
(every layer output written once: elements × bits), and the savings are in % of float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq.engine.ir import Graph
from edgeq.engine.ptq.analysis import LayerAnalysis, analyse_layers, variable_keys
from edgeq.engine.ptq.api import EVAL_KEYS, _accuracy
from edgeq.engine.ptq.calibration import Calibration, check_inputs
from edgeq.engine.ptq.config import PTQConfig
from edgeq.engine.ptq.emulate import Emulator
from edgeq.engine.ptq.plan import Plan
from edgeq.engine.ptq.resolve import l2_per_sample
from edgeq.errors import ConfigError

FLOAT_BITS = 32


@dataclass
class EvalSet:
    arrays: dict
    n: int
    metric: str | None  # None: no labels/targets, only the output L2


def eval_set(graph: Graph, arrays: dict, source: str) -> EvalSet:
    n = check_inputs(source, arrays, graph, EVAL_KEYS)
    metric = "accuracy %" if "labels" in arrays else \
        "mean L2 error" if "targets" in arrays else None
    return EvalSet(arrays, n, metric)


def _only(key: str) -> set:
    if key.startswith("inputs."):
        return {("input", "activations")}
    layer, var = key.rsplit(".", 1)
    return {(layer, var)}


class Explorer:
    """The searches on the fast float32 emulation, with prefix reuse: the eval set runs as
    one batch, the FP network's values are kept, and a configuration that first differs
    from an earlier run at node k (one variable quantised, or one greedy step from the
    accepted configuration) recomputes only the nodes from k on."""

    def __init__(self, graph: Graph, plan: Plan, cal: Calibration, ev: EvalSet,
                 analysis: LayerAnalysis):
        self.graph, self.plan, self.cal, self.ev, self.analysis = graph, plan, cal, ev, analysis
        self.keys = variable_keys(plan, graph)
        self.feeds = {k: np.asarray(ev.arrays[k], np.float32) for k in graph.inputs}
        self.consts = {v.name: v.data.astype(np.float32)
                       if np.issubdtype(v.data.dtype, np.floating) else v.data
                       for v in graph.constants()}
        self.weights: dict = {}  # fake-quantised weights, shared by every run
        index = {n.name: i for i, n in enumerate(graph.nodes)}
        self.start = {k: 0 if k.startswith("inputs.") else
                      index[plan.layer(k.rsplit(".", 1)[0]).node.name] for k in self.keys}
        self.runs = {"networks": 0, "nodes": 0}
        fp = self._emulator(PTQConfig(), set())
        self.fp_out = self._out(fp.run(self.feeds))
        self.fp_env = fp.env
        self.fp_metric = self._metric(self.fp_out)
        self.sizes = self._sizes()

    # -- running -------------------------------------------------------------------------
    def _emulator(self, cfg: PTQConfig, only: set | None) -> Emulator:
        return Emulator(self.graph, self.plan, cfg, only, np.float32, self.weights, self.consts)

    def _out(self, outs: dict) -> np.ndarray:
        return np.asarray(outs[self.graph.outputs[0]], np.float64)

    def _metric(self, out: np.ndarray) -> float | None:
        return None if self.ev.metric is None else _accuracy(out, self.ev.arrays)[1]

    def score(self, cfg: PTQConfig, only: set | None = None, start: int = 0,
              env: dict | None = None, keep: bool = False) -> dict:
        """L2 against FP and the metric of ``cfg``; ``start``/``env``: prefix reuse (see
        the class docstring); ``keep``: the run's values under "env"."""
        em = self._emulator(cfg, only)
        out = self._out(em.run(self.feeds, start=start, env=env))
        self.runs["networks"] += 1
        self.runs["nodes"] += len(self.graph.nodes) - (start if env is not None else 0)
        res = {"l2": l2_per_sample(self.fp_out, out), "metric": self._metric(out)}
        return {**res, "env": em.env} if keep else res

    def drop(self, s: dict) -> float:
        """Metric points lost against FP (accuracy: FP − q; an error metric: q − FP)."""
        if s["metric"] is None:
            return 0.0
        d = self.fp_metric - s["metric"]
        return d if self.ev.metric.startswith("accuracy") else -d

    # -- memory ----------------------------------------------------------------------------
    def _sizes(self) -> dict[str, int]:
        sizes = {}
        for key in self.keys:
            head, var = key.rsplit(".", 1)
            if key.startswith("inputs."):
                v = self.graph.values[key.split(".", 1)[1]]
            elif var == "weights":
                v = self.graph.values[self.plan.layer(head).weight]
            else:
                v = self.graph.values[self.plan.layer(head).output]
            shape = v.data.shape if v.is_const else v.shape
            sizes[key] = int(np.prod([d if isinstance(d, int) else 1 for d in shape]))
        return sizes

    def memory(self, choice: dict[str, int]) -> dict[str, int]:
        """Weight and activation bits per sample for a choice of widths (float: 32)."""
        out = {"weights": 0, "activations": 0}
        for key in self.keys:
            kind = "weights" if key.endswith(".weights") else "activations"
            out[kind] += self.sizes[key] * choice.get(key, FLOAT_BITS)
        return out

    def savings(self, choice: dict[str, int]) -> dict[str, float]:
        fp, q = self.memory({}), self.memory(choice)
        return {k: 100.0 * (1 - q[k] / fp[k]) if fp[k] else 0.0 for k in fp}

    # -- the phases ------------------------------------------------------------------------
    def one_at_a_time(self) -> dict[str, dict[int, dict]]:
        res = {}
        for key in self.keys:
            res[key] = {b: self.score(self.analysis.config_for({key: b}), _only(key),
                                      self.start[key], self.fp_env)
                        for b in self.analysis.bits}
        return res

    def groups(self) -> dict[str, dict[int, dict]]:
        res = {"weights": {}, "activations": {}, "network": {}}
        for b in self.analysis.bits:
            for group in res:
                keys = [k for k in self.keys if group == "network"
                        or k.endswith(".weights") == (group == "weights")]
                choice = dict.fromkeys(keys, b)
                only = None if group == "network" else set().union(*(_only(k) for k in keys))
                res[group][b] = {**self.score(self.analysis.config_for(choice), only),
                                 "savings": self.savings(choice)}
        return res

    def ok(self, s: dict, max_drop: float | None, max_l2: float | None) -> bool:
        if max_l2 is not None and s["l2"] > max_l2:
            return False
        return max_drop is None or self.drop(s) <= max_drop

    def _gain(self, key: str, choice: dict, widths: list, sens: dict) -> float:
        """Memory saved by one step down, per unit of that step's sensitivity."""
        nxt = widths[widths.index(choice[key]) + 1]
        return self.sizes[key] * (choice[key] - nxt) / (sens[key][nxt]["l2"] + 1e-12)

    def greedy(self, sens: dict, max_drop: float | None, max_l2: float | None) -> dict:
        widths = sorted(self.analysis.bits, reverse=True)
        choice = dict.fromkeys(self.keys, widths[0])
        start = self.score(self.analysis.config_for(choice), keep=True)
        if not self.ok(start, max_drop, max_l2):
            raise ConfigError(f"the budget cannot be met even at {widths[0]} bits everywhere "
                              f"(L2 {start['l2']:.4g}, drop {self.drop(start):.3g})")
        env = start.pop("env")
        frozen, steps, best = set(), [], start
        while True:
            movable = [k for k in self.keys if k not in frozen and choice[k] != widths[-1]]
            if not movable:
                break

            key = max(movable, key=lambda k, c=choice: self._gain(k, c, widths, sens))
            trial = {**choice, key: widths[widths.index(choice[key]) + 1]}
            # the trial differs from the accepted choice from this variable's node on
            s = self.score(self.analysis.config_for(trial), None, self.start[key], env, True)
            trial_env = s.pop("env")
            accepted = self.ok(s, max_drop, max_l2)
            steps.append({"variable": key, "bits": trial[key], **s, "accepted": accepted})
            if accepted:
                choice, best, env = trial, s, trial_env
            else:
                frozen.add(key)
        return {"choice": choice, "score": best, "steps": steps,
                "savings": self.savings(choice)}


def explore(graph: Graph, plan: Plan, cal: Calibration, ev: EvalSet, bits, methods,
            max_drop: float | None = 1.0, max_l2: float | None = None, model: str = "",
            progress: bool = False) -> dict:
    """All the phases; returns the JSON-ready result (``analysis`` is a LayerAnalysis)."""
    from edgeq.engine.ptq.fastconv import blas_limited

    with blas_limited():
        return _explore(graph, plan, cal, ev, bits, methods, max_drop, max_l2, model, progress)


def _explore(graph, plan, cal, ev, bits, methods, max_drop, max_l2, model, progress) -> dict:
    if ev.metric is None and max_l2 is None:
        raise ConfigError("the eval set has no labels/targets: give --max-l2 as the budget")
    analysis = analyse_layers(graph, plan, cal, bits, methods, model, progress)
    ex = Explorer(graph, plan, cal, ev, analysis)
    sens = ex.one_at_a_time()
    groups = ex.groups()
    search = ex.greedy(sens, max_drop if ev.metric else None, max_l2)
    return {"model": model, "metric": ev.metric, "fp_metric": ex.fp_metric,
            "budget": {"max_drop": max_drop, "max_l2": max_l2}, "analysis": analysis,
            "one_at_a_time": sens, "groups": groups, "search": search,
            "memory_fp_bits": ex.memory({}), "emulated_runs": ex.runs,
            "best_config": analysis.config_for(search["choice"])}
