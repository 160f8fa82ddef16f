"""Small, explicit training and evaluation loops with progress bars.

:func:`train` is one phase (FP or QAT) of a run. Its optional features are gathered in
:class:`TrainHooks` and are all off by default (then the loop is the plain one):
per-epoch checkpoints and resuming from one (:mod:`edgeq.lab.checkpoint`), TensorBoard
scalars and histograms (:mod:`edgeq.lab.tensorboard`) and data-parallel training
(:mod:`edgeq.lab.ddp`). :class:`Session` builds the hooks of both phases of one run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from edgeq.lab.checkpoint import Checkpointer, refreeze, rng_state, set_rng_state

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Validate = Callable[[nn.Module], dict]  # model -> {metric: value} on the validation split


@dataclass
class TrainHooks:
    """Optional features of one training phase; the defaults turn every one off.

    ``checkpointer`` saves after every epoch (with ``extra`` added to the file);
    ``resume`` is a checkpoint of this phase to continue from; ``board`` logs scalars and
    histograms (``validate`` adds the validation metrics per epoch); ``ddp`` trains
    data-parallel (the loader must be the context's sharded batches).
    """

    phase: str = "fp"
    checkpointer: Checkpointer | None = None
    resume: dict | None = None
    extra: dict = field(default_factory=dict)
    board: Any = None  # edgeq.lab.tensorboard.Board
    ddp: Any = None  # edgeq.lab.ddp.DDPContext
    validate: Validate | None = None


def train(
    model: nn.Module,
    loader,
    epochs: int,
    lr: float,
    desc: str,
    controller=None,
    progress: bool = True,
    loss_fn: LossFn | None = None,
    schedule: str = "constant",
    hooks: TrainHooks | None = None,
) -> list[float]:
    """Adam on ``loss_fn`` (default cross-entropy) for ``epochs``; returns the mean loss of
    every epoch. ``schedule="onecycle"`` anneals the rate over the whole phase (peak
    ``lr``), which converges in few epochs; ``"constant"`` keeps ``lr``.

    A QAT ``controller`` gets ``epoch_start(epoch)`` before each epoch and ``step()``
    before each batch (re-fitting weight ε, as the algorithms expect). ``hooks``: see
    :class:`TrainHooks`; with ``hooks.resume`` the loop restores every state of the
    checkpoint and continues after its epoch.
    """
    hooks = hooks or TrainHooks()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = None
    if schedule == "onecycle" and epochs > 0 and len(loader) > 0:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs,
                                                    steps_per_epoch=len(loader))
    losses: list[float] = []
    first = 0
    if hooks.resume is not None:
        first, losses = _restore(hooks.resume, model, opt, sched, controller, loader)
    net = model  # what the batches go through: the model, or its DDP wrapper
    bar = tqdm(range(first, epochs), desc=desc, disable=not progress, leave=False,
               unit="epoch")
    for epoch in bar:
        if controller is not None:
            controller.epoch_start(epoch)
        if hooks.ddp is not None:  # (re)wrap when the set of trainable parameters changed
            net = hooks.ddp.wrap(model, net)
        model.train()
        total, count = 0.0, 0
        for xb, yb in loader:
            if controller is not None:
                controller.step()
            opt.zero_grad()
            loss = loss_fn(net(xb), yb)
            loss.backward()
            step_lr = opt.param_groups[0]["lr"]
            opt.step()
            if sched is not None:
                sched.step()
            value = loss.item()
            total, count = total + value * len(yb), count + len(yb)
            if hooks.board is not None:
                hooks.board.step(hooks.phase, value, step_lr)
        if hooks.ddp is not None:  # the epoch's loss over every rank's samples
            total, count = hooks.ddp.sum_pair(total, count)
            hooks.ddp.sync_buffers(model)
        losses.append(total / max(count, 1))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if hooks.board is not None:
            metrics = hooks.validate(model) if hooks.validate is not None else {}
            hooks.board.epoch(hooks.phase, losses[-1], opt.param_groups[0]["lr"], model,
                              metrics)
        if hooks.checkpointer is not None:
            hooks.checkpointer.save({
                "phase": hooks.phase, "epoch": epoch, "epochs": epochs,
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "controller": controller.state_dict() if controller is not None else None,
                "losses": list(losses), "rng": rng_state(loader),
                "extra": {**hooks.extra,
                          "board": hooks.board.state() if hooks.board is not None else None},
            })
    model.eval()
    return losses


def _restore(state: dict, model, opt, sched, controller, loader) -> tuple[int, list[float]]:
    """Load a checkpoint into the phase's objects; (first epoch to run, losses so far)."""
    model.load_state_dict(state["model"])
    refreeze(model)
    opt.load_state_dict(state["optimizer"])
    if sched is not None and state["scheduler"] is not None:
        sched.load_state_dict(state["scheduler"])
    if controller is not None and state["controller"] is not None:
        controller.load_state_dict(state["controller"])
    set_rng_state(state["rng"], loader)
    return state["epoch"] + 1, list(state["losses"])


class Session:
    """The optional training features of one run (one seed) in directory ``out``.

    ``checkpoint`` writes ``out/checkpoint.pt`` after every epoch of both phases;
    ``resume`` continues from that file if it exists (and implies ``checkpoint``);
    ``tensorboard`` writes event files to ``out/tensorboard``; ``ddp`` is the
    data-parallel context (files are written by its rank 0 only). ``fingerprint``
    (the resolved config and seed) stops a run resuming from another run's checkpoint.
    """

    def __init__(self, out: Path, fingerprint: str, checkpoint: bool = False,
                 resume: bool = False, tensorboard: bool = False, ddp=None) -> None:
        self.ddp = ddp
        main = ddp is None or ddp.is_main
        files = Checkpointer(Path(out), fingerprint)
        self.state = files.load() if resume else None  # every rank resumes the same state
        self.checkpointer = files if (checkpoint or resume) and main else None
        self.board = None
        if tensorboard and main:
            from edgeq.lab.tensorboard import Board

            counters = (self.state or {}).get("extra", {}).get("board") or {}
            self.board = Board(Path(out) / "tensorboard", **counters)

    @staticmethod
    def fingerprint(config_json: dict, seed: int) -> str:
        """What identifies a run: its config (without the output directory) and seed."""
        what = {k: v for k, v in config_json.items() if k != "output_dir"}
        return json.dumps({"config": what, "seed": seed}, sort_keys=True)

    @property
    def fp_done(self) -> bool:
        """True when the checkpoint is of the QAT phase: FP training finished before it."""
        return self.state is not None and self.state["phase"] == "qat"

    def fp_weights(self) -> dict:
        """The final FP weights saved with every QAT checkpoint."""
        return self.state["extra"]["fp_model"]

    def hooks(self, phase: str, extra: dict | None = None,
              validate: Validate | None = None) -> TrainHooks:
        resume = self.state if self.state is not None and self.state["phase"] == phase else None
        return TrainHooks(phase=phase, checkpointer=self.checkpointer, resume=resume,
                          extra=extra or {}, board=self.board, ddp=self.ddp,
                          validate=validate)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Model outputs on ``x`` in eval mode, in batches."""
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def accuracy(logits, labels) -> float:
    """Top-1 accuracy in percent."""
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    return float((logits.argmax(dim=1) == labels).double().mean() * 100.0)
