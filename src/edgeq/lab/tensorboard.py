"""TensorBoard event files of one run (the ``tensorboard`` package, via torch's writer).

Layout under the run's ``tensorboard/`` directory (QuantLab's split of step and epoch
statistics into separate writers, so each has its own x axis):

* ``step/``: ``<phase>/loss`` and ``<phase>/lr`` of every optimiser step, x = the run's
  step count (FP steps, then QAT steps continue the count);
* ``epoch/``: ``<phase>/loss`` (mean over the epoch's samples), ``<phase>/lr`` (after
  the epoch), ``<phase>/val_<metric>`` when the caller validates, and histograms
  ``eps/<module>`` and ``bound/<module>`` of every quantiser's ε and clipping bound
  (ε·m(R); per channel for weights), x = the run's epoch count; the final test metrics of
  every stage as ``test/<stage>_<metric>``.

A resumed run reopens both writers with ``purge_step`` at the counters of its checkpoint,
so the events of the interrupted (re-done) epoch are hidden rather than doubled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

STEP_DIR, EPOCH_DIR = "step", "epoch"


class Board:
    """Scalars per step and per epoch, histograms of quantiser bounds per epoch."""

    def __init__(self, log_dir: Path, steps: int = 0, epochs: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.steps, self.epochs = steps, epochs
        resumed = steps > 0 or epochs > 0
        self.step_writer = SummaryWriter(str(Path(log_dir) / STEP_DIR),
                                         purge_step=steps if resumed else None)
        self.epoch_writer = SummaryWriter(str(Path(log_dir) / EPOCH_DIR),
                                          purge_step=epochs if resumed else None)

    def state(self) -> dict:
        """The counters a checkpoint stores (the next step and epoch to log)."""
        return {"steps": self.steps, "epochs": self.epochs}

    def step(self, phase: str, loss: float, lr: float) -> None:
        self.step_writer.add_scalar(f"{phase}/loss", loss, self.steps)
        self.step_writer.add_scalar(f"{phase}/lr", lr, self.steps)
        self.steps += 1

    def epoch(self, phase: str, loss: float, lr: float, model: nn.Module | None = None,
              metrics: dict | None = None) -> None:
        w, e = self.epoch_writer, self.epochs
        w.add_scalar(f"{phase}/loss", loss, e)
        w.add_scalar(f"{phase}/lr", lr, e)
        for key, value in (metrics or {}).items():
            w.add_scalar(f"{phase}/val_{key}", float(value), e)
        if model is not None:
            for name, eps, bound in quantiser_bounds(model):
                w.add_histogram(f"eps/{name}", eps, e)
                w.add_histogram(f"bound/{name}", bound, e)
        self.epochs += 1
        # an epoch is worth keeping: flush so a killed run still has it on disk
        self.step_writer.flush()
        w.flush()

    def final(self, metrics: dict) -> None:
        """The finished run's test metrics (``<stage>_<metric>`` -> value)."""
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.epoch_writer.add_scalar(f"test/{key}", float(value), self.epochs)
        self.epoch_writer.flush()

    def close(self) -> None:
        self.step_writer.close()
        self.epoch_writer.close()


def quantiser_bounds(model: nn.Module) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, ε, clipping bound) of every initialised quantiser of ``model``."""
    from edgeq.train.algorithms import Quantiser
    from edgeq.train.quantiser import bound_from_eps

    out = []
    for name, q in model.named_modules():
        if isinstance(q, Quantiser) and bool(q.initialised):
            eps = q.eps.detach().reshape(-1).double()
            out.append((name, eps, bound_from_eps(eps, q.int_range)))
    return out
