"""Float-to-fake (F2F) conversion with torch.fx.

``gm, report = f2f(model, Policy.uniform(bits=8, algorithm="pact"), example_input)``

Passes (each usable alone on a traced GraphModule): :mod:`.trace` (tracing, shape
propagation), :mod:`.canonicalise` (functional activations -> modules, flatten, shared
modules split per call site, bias folded into BN), :mod:`.policy` (ordered rules, first
match wins), :mod:`.convert` (module replacement), :mod:`.harmonise` (add trees and
concats -> HarmonisedAdd / HarmonisedConcat), :mod:`.inputs` (the input quantiser that
``f2f(..., input_spec=...)`` inserts).
"""

from edgeq.train.f2f.inputs import insert_input_quantisers, unit_input_spec
from edgeq.train.f2f.pipeline import F2FReport, LayerAssignment, f2f
from edgeq.train.f2f.policy import (
    FLOAT_TYPES,
    PSEUDO_TYPES,
    QUANTISABLE_TYPES,
    Policy,
    Resolution,
    Rule,
    Target,
)
from edgeq.train.f2f.trace import propagate_shapes, trace

__all__ = [
    "FLOAT_TYPES",
    "PSEUDO_TYPES",
    "QUANTISABLE_TYPES",
    "F2FReport",
    "LayerAssignment",
    "Policy",
    "Resolution",
    "Rule",
    "Target",
    "f2f",
    "insert_input_quantisers",
    "propagate_shapes",
    "trace",
    "unit_input_spec",
]
