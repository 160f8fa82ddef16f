"""Epoch/step control of QAT, and the observation (calibration) phase.

:class:`QATController` applies a :class:`ScheduleSpec` to every :class:`QuantModule` of a
model. Call :meth:`~QATController.epoch_start` at the start of every epoch (before the
first batch) and :meth:`~QATController.step` after every optimiser step::

    ctrl = QATController(model, ScheduleSpec(start_epoch=2, freeze_epoch=8))
    for epoch in range(n_epochs):
        ctrl.epoch_start(epoch)
        for x, y in loader:
            ...; optimiser.step(); ctrl.step()

At ``epoch_start(e)``, in this order:

1. e == ``start_epoch - observe_epochs``: observed statistics are reset;
2. e >= ``start_epoch``: quantisation starts (ε initialised from what was observed);
3. e >= ``freeze_epoch``: ε is frozen;
4. every module gets ``set_epoch(e)``: ANA μ(e), σ(e) from its annealing schedules;
   INQ freezes the fraction its schedule gives for e.

:func:`observing` is the stand-alone observation phase: inside it, modules compute in
float and collect statistics; on exit ε is (re-)initialised from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from edgeq.errors import ConfigError
from edgeq.train.modules import QuantModule, quant_modules
from edgeq.train.spec import ScheduleSpec


class QATController:
    """Drives start, freeze, ANA annealing and INQ freezing of a model's QuantModules.

    ``modules`` restricts the controller to some modules (e.g. one schedule for weights,
    another for activations); by default it takes all QuantModules of ``model``.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: ScheduleSpec,
        modules: Iterable[QuantModule] | None = None,
    ):
        if not isinstance(schedule, ScheduleSpec):
            raise ConfigError(f"schedule must be a ScheduleSpec, got {type(schedule).__name__}")
        self.schedule = schedule
        self.modules: list[QuantModule] = (
            [m for _, m in quant_modules(model)] if modules is None else list(modules)
        )
        self.epoch: int | None = None
        self.n_steps = 0

    @property
    def started(self) -> bool:
        return bool(self.modules) and all(m.quant_enabled for m in self.modules)

    @property
    def frozen(self) -> bool:
        return bool(self.modules) and all(m.frozen for m in self.modules)

    def epoch_start(self, epoch: int) -> None:
        """Apply the schedule for ``epoch`` (see the module docstring for the order)."""
        s = self.schedule
        self.epoch = epoch
        if s.observe_reset_epoch is not None and epoch == s.observe_reset_epoch:
            for m in self.modules:
                m.reset_observations()
        if epoch >= s.start_epoch:
            for m in self.modules:
                if not m.quant_enabled:
                    m.start()
        if s.freeze_epoch is not None and epoch >= s.freeze_epoch:
            for m in self.modules:
                if not m.frozen:
                    m.freeze()
        for m in self.modules:
            m.set_epoch(epoch)

    def step(self) -> None:
        """After every optimiser step: re-fit non-learned weight ε (until frozen)."""
        self.n_steps += 1
        for m in self.modules:
            m.step()

    def state_dict(self) -> dict:
        """The controller's own counters; the modules' ε, flags and statistics are saved
        with the model's state dict."""
        return {"epoch": self.epoch, "n_steps": self.n_steps}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.n_steps = state["epoch"], int(state["n_steps"])


@contextmanager
def observing(
    model: nn.Module, reset: bool = True, init: bool = True
) -> Iterator[list[QuantModule]]:
    """Observation phase: float forward + statistics in every QuantModule of ``model``.

    ``reset`` forgets earlier statistics on entry; ``init`` (re-)initialises every ε from
    the statistics on a normal exit (weights from the weights). ``quant_enabled`` is not
    changed: use :meth:`QuantModule.start` or a :class:`QATController` for that.
    """
    mods = [m for _, m in quant_modules(model)]
    before = [m.observing for m in mods]
    if reset:
        for m in mods:
            m.reset_observations()
    for m in mods:
        m.observing = True
    try:
        yield mods
    finally:
        for m, flag in zip(mods, before, strict=True):
            m.observing = flag
    if init:
        for m in mods:
            m.init_bounds()


def calibrate_and_start(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Observe ``x`` in float, initialise every ε, start quantisation, then run ``x`` once
    more in train mode so BatchNorm's running statistics are seen through the quantisers.

    The one-call version of what a QAT run does before its first epoch, for callers that
    need a calibrated network without training (tests, benchmarks). Returns ``model``.
    """
    model.train()
    with torch.no_grad(), observing(model):
        model(x)
    for _, m in quant_modules(model):
        m.start()
    with torch.no_grad():
        model(x)
    return model

