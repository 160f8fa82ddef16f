"""The five QAT algorithms, each an autograd Function plus a :class:`Quantiser` subclass.

Importing this package registers ``ste``, ``pact``, ``tqt``, ``ana`` and ``inq`` with
:func:`make_quantiser`.
"""

from edgeq.train.algorithms.ana import NOISES, AnaQuantFn, AnaQuantiser, ana_quantise
from edgeq.train.algorithms.base import QUANTISERS, Quantiser, make_quantiser, register_quantiser
from edgeq.train.algorithms.inq import InqFreezeFn, InqQuantiser
from edgeq.train.algorithms.pact import PactQuantFn, PactQuantiser, pact_quantise
from edgeq.train.algorithms.ste import SteQuantFn, SteQuantiser, ste_quantise
from edgeq.train.algorithms.tqt import NormaliseGradFn, TqtQuantFn, TqtQuantiser, tqt_quantise

__all__ = [
    "NOISES",
    "QUANTISERS",
    "AnaQuantFn",
    "AnaQuantiser",
    "InqFreezeFn",
    "InqQuantiser",
    "NormaliseGradFn",
    "PactQuantFn",
    "PactQuantiser",
    "Quantiser",
    "SteQuantFn",
    "SteQuantiser",
    "TqtQuantFn",
    "TqtQuantiser",
    "ana_quantise",
    "make_quantiser",
    "pact_quantise",
    "register_quantiser",
    "ste_quantise",
    "tqt_quantise",
]
