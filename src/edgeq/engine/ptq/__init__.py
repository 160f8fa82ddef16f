"""Post-training quantisation (QUENN's role, DESIGN §8): torch-free, on the IR of a
float model. See ``docs/ptq.md`` for the methods and the exactness contract.

>>> result = ptq(graph, calib_arrays, method="dynamic", bits=8)
>>> result.graph        # the integer IR (edgeq dialect; export_onnx writes it)
>>> result.emulator     # the fake-quantised float emulation of the same config
"""

from edgeq.engine.ptq.api import PTQResult, evaluate, ptq, quantise_file
from edgeq.engine.ptq.config import METHODS, LayerQuant, PTQConfig, VarQuant

__all__ = [
    "METHODS", "LayerQuant", "PTQConfig", "PTQResult", "VarQuant", "evaluate", "ptq",
    "quantise_file",
]
