"""Small, explicit training and evaluation loops with progress bars."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from tqdm import tqdm

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
) -> list[float]:
    """Adam on ``loss_fn`` (default cross-entropy) for ``epochs``; returns the mean loss of
    every epoch. ``schedule="onecycle"`` anneals the rate over the whole phase (peak
    ``lr``), which converges in few epochs; ``"constant"`` keeps ``lr``.

    A QAT ``controller`` gets ``epoch_start(epoch)`` before each epoch and ``step()``
    before each batch (re-fitting weight ε, as the algorithms expect).
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = None
    if schedule == "onecycle" and epochs > 0 and len(loader) > 0:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs,
                                                    steps_per_epoch=len(loader))
    losses = []
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False, unit="epoch")
    for epoch in bar:
        if controller is not None:
            controller.epoch_start(epoch)
        model.train()
        total, count = 0.0, 0
        for xb, yb in loader:
            if controller is not None:
                controller.step()
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total, count = total + loss.item() * len(yb), count + len(yb)
        losses.append(total / max(count, 1))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    model.eval()
    return losses


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Model outputs on ``x`` in eval mode, in batches."""
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def accuracy(logits, labels) -> float:
    """Top-1 accuracy in percent."""
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    return float((logits.argmax(dim=1) == labels).double().mean() * 100.0)
