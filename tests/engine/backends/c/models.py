"""TQ graphs of the F2T model families for the C backend tests, built once per session.

No training: F2F (8-bit PACT, unit input), observation and BN calibration on random
inputs, then F2T. The C backend cares about shapes, dtypes and integer ranges; the
values only have to be realistic (calibrated requantisation, saturating activations).
"""

from __future__ import annotations

import functools

import numpy as np


@functools.cache
def tq(name: str, width: float = 0.25, px: int = 120):
    """(IR graph, integer example input of batch 2) of a family."""
    import torch

    from edgeq.models import DigitsCNN, DigitsConcatNet, DigitsResNet, mobilenet_v1_3ddfa
    from edgeq.train.controller import calibrate_and_start
    from edgeq.train.f2f import Policy, f2f, unit_input_spec
    from edgeq.train.f2t import f2t

    torch.manual_seed(0)
    make = {
        "digits_cnn": lambda: (DigitsCNN(), torch.rand(4, 1, 8, 8)),
        "resnet": lambda: (DigitsResNet(width=8), torch.rand(4, 1, 8, 8)),
        "concat": lambda: (DigitsConcatNet(width=8), torch.rand(4, 1, 8, 8)),
        "mobilenet": lambda: (mobilenet_v1_3ddfa(width), torch.rand(2, 3, px, px)),
    }
    net, x = make[name]()
    gm, _ = f2f(net, Policy.uniform(8, "pact"), x[:1], input_spec=unit_input_spec())
    calibrate_and_start(gm, x)
    with torch.no_grad():
        tqm = f2t(gm.eval(), x[:1])
        xi = tqm.quantise_input(x[:2]).numpy()
    return tqm.to_ir(), np.ascontiguousarray(xi)
