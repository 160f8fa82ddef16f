"""Fake-to-true (F2T) conversion: a trained FQ network -> an integer-only TQ network.

``tq = f2t(fq_model, example_input)`` (:mod:`.convert`) walks the fx graph with the ε
propagation rules of :mod:`.epsprop`, folds BatchNorm, biases and scales into integers
(:mod:`.fold`) and returns a :class:`~.tq.TQNetwork` of exact integer ops (:mod:`.tq`),
which ``tq.to_ir()`` maps 1:1 onto the engine IR (:mod:`.to_ir`).
:func:`~.fidelity.fidelity_report` measures, layer by layer, how far the TQ network's
integers are from the FQ network's (in LSB) and what that does to the task metric.
"""

from edgeq.train.f2t.convert import f2t
from edgeq.train.f2t.epsprop import F2TError
from edgeq.train.f2t.fidelity import FidelityReport, LayerFidelity, fidelity_report
from edgeq.train.f2t.fold import F2TOptions
from edgeq.train.f2t.tq import InputRule, TQNetwork, ValueInfo

__all__ = [
    "F2TError",
    "F2TOptions",
    "FidelityReport",
    "InputRule",
    "LayerFidelity",
    "TQNetwork",
    "ValueInfo",
    "f2t",
    "fidelity_report",
]
