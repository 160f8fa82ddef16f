"""The four model families, FP -> F2F (8-bit PACT, 8-bit unit input) -> short QAT.

Built once per test session (``family(name)`` caches): the digits models train on the
digits (a few epochs: the fidelity tests need confident, realistic logits); MobileNetV1
3DDFA only calibrates on random 3×120×120 inputs.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from edgeq.data.digits import load_digits_splits
from edgeq.models import DigitsCNN, DigitsConcatNet, DigitsResNet, mobilenet_v1_3ddfa
from edgeq.train.controller import QATController, calibrate_and_start
from edgeq.train.f2f import Policy, f2f, unit_input_spec
from edgeq.train.spec import ScheduleSpec

DIGITS_FAMILIES = ("digits_cnn", "resnet", "concat")
# family -> (constructor, float epochs, QAT epochs incl. one observation epoch)
_DIGITS = {
    "digits_cnn": (DigitsCNN, 8, 3),
    "resnet": (lambda: DigitsResNet(width=8), 4, 2),
    "concat": (lambda: DigitsConcatNet(width=8), 4, 2),
}


@functools.cache
def digits():
    return load_digits_splits(seed=0)


def _epochs(net: nn.Module, n: int, lr: float, ctrl: QATController | None = None) -> None:
    sp = digits()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr)
    gen = torch.Generator().manual_seed(1)
    for epoch in range(n):
        if ctrl is not None:
            ctrl.epoch_start(epoch)
        net.train()
        perm = torch.randperm(len(sp.x_train), generator=gen)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(net(sp.x_train[idx]), sp.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if ctrl is not None:
                ctrl.step()


def policy() -> Policy:
    return Policy.uniform(8, "pact")


def _digits_family(name: str):
    make, fp_epochs, qat_epochs = _DIGITS[name]
    torch.manual_seed(0)
    model = make()
    _epochs(model, fp_epochs, 1e-2)
    sp = digits()
    gm, _ = f2f(model, policy(), sp.x_train[:2], input_spec=unit_input_spec())
    _epochs(gm, qat_epochs, 1e-3, QATController(gm, ScheduleSpec(start_epoch=1)))
    return gm.eval()


def mobilenet(width: float, n: int = 4):
    """MobileNetV1 3DDFA calibrated on random inputs (float observation, BN statistics)."""
    torch.manual_seed(0)
    x = torch.rand(n, 3, 120, 120)
    gm, _ = f2f(mobilenet_v1_3ddfa(width), policy(), x[:1], input_spec=unit_input_spec())
    calibrate_and_start(gm, x)
    return gm.eval(), x


@functools.cache
def family(name: str):
    """(FQ GraphModule in eval mode, example float input, (x, labels) data)."""
    if name == "mobilenet":
        gm, x = mobilenet(0.25)
        return gm, x[:1], (x, None)
    sp = digits()
    return _digits_family(name), sp.x_train[:2], (sp.x_test, sp.y_test)
