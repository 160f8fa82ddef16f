"""PyTorch side: quantisers, QAT algorithms, fake-quantised modules, F2F, F2T, export.

Importing :mod:`edgeq.train` needs torch (the ``train`` extra); the engine does not.

* :mod:`edgeq.train.spec` — frozen JSON-round-tripping configuration.
* :mod:`edgeq.train.quantiser` — ε, clipping bounds, round-half-up quantisation.
* :mod:`edgeq.train.observe` — clipping-bound initialisation from statistics.
* :mod:`edgeq.train.algorithms` — STE, PACT, TQT, ANA, INQ (autograd Functions + state).
* :mod:`edgeq.train.modules` — FQ modules (QuantConv2d, QuantLinear, QuantActivation,
  HarmonisedAdd, HarmonisedConcat).
* :mod:`edgeq.train.controller` — QATController and the ``observing`` phase.
"""

from edgeq.train.controller import QATController, calibrate_and_start, observing
from edgeq.train.modules import (
    HarmonisedAdd,
    HarmonisedConcat,
    QuantActivation,
    QuantConv2d,
    QuantLinear,
    QuantModule,
    quant_modules,
)
from edgeq.train.quantiser import eps_covering, fake_quantise, int_quantise
from edgeq.train.spec import (
    AnaParams,
    AnnealSpec,
    InitSpec,
    InqParams,
    PactParams,
    QuantSpec,
    ScheduleSpec,
    SteParams,
    TqtParams,
)

__all__ = [
    "AnaParams",
    "AnnealSpec",
    "HarmonisedAdd",
    "HarmonisedConcat",
    "InitSpec",
    "InqParams",
    "PactParams",
    "QATController",
    "QuantActivation",
    "QuantConv2d",
    "QuantLinear",
    "QuantModule",
    "QuantSpec",
    "ScheduleSpec",
    "SteParams",
    "TqtParams",
    "calibrate_and_start",
    "eps_covering",
    "fake_quantise",
    "int_quantise",
    "observing",
    "quant_modules",
]
