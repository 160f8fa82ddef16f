"""PyTorch side: quantisers, QAT algorithms, fake-quantised modules, F2F, F2T, export.

Importing :mod:`edgeq.train` needs torch (the ``train`` extra); the engine does not.
"""

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
    "InitSpec",
    "InqParams",
    "PactParams",
    "QuantSpec",
    "ScheduleSpec",
    "SteParams",
    "TqtParams",
]
