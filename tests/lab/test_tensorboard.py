"""TensorBoard event files of a training phase, read back with tensorboard's own reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeq.lab.tensorboard import Board
from edgeq.lab.training import TrainHooks, train
from edgeq.train.controller import QATController
from edgeq.train.modules import QuantLinear
from edgeq.train.spec import QuantSpec, ScheduleSpec

EPOCHS, BATCHES, BATCH, LR = 3, 4, 8, 0.05


def _accumulator(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tb")
    torch.manual_seed(0)
    spec = QuantSpec.from_bits(4, signed=True, algorithm="pact", granularity="per_channel")
    model = nn.Sequential(QuantLinear(5, 3, spec=spec))
    data = [(torch.randn(BATCH, 5), torch.randint(0, 3, (BATCH,))) for _ in range(BATCHES)]
    seen_losses, seen_eps = [], []

    def loss_fn(out, y):  # records what the loop optimises, independently of the board
        loss = nn.functional.cross_entropy(out, y)
        seen_losses.append(loss.item())
        return loss

    def validate(m):  # runs at the end of every epoch, before the board logs it
        seen_eps.append(m[0].weight_quantiser.eps.detach().clone())
        return {"score": 10.0 + len(seen_eps)}

    board = Board(tmp)
    hooks = TrainHooks(phase="qat", board=board, validate=validate)
    losses = train(model, data, EPOCHS, LR, "", controller=QATController(model, ScheduleSpec()),
                   progress=False, loss_fn=loss_fn, schedule="onecycle", hooks=hooks)
    board.final({"fq_accuracy": 91.25, "bit_exact": True})
    board.close()
    return tmp, losses, seen_losses, seen_eps


def test_step_scalars_are_the_losses_and_rates_of_every_step(logged):
    tmp, _, seen_losses, _ = logged
    acc = _accumulator(tmp / "step")
    loss = acc.Scalars("qat/loss")
    assert [e.step for e in loss] == list(range(EPOCHS * BATCHES))
    # event files store float32
    assert [e.value for e in loss] == [float(np.float32(v)) for v in seen_losses]
    # the rates a OneCycle schedule of the same shape gives, step by step
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, epochs=EPOCHS,
                                                steps_per_epoch=BATCHES)
    expected = []
    for _ in range(EPOCHS * BATCHES):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    rates = [e.value for e in acc.Scalars("qat/lr")]
    assert rates == pytest.approx(expected, rel=1e-6)
    assert rates[0] == pytest.approx(LR / 25)  # OneCycle starts at max_lr / div_factor


def test_epoch_scalars_are_the_epoch_mean_losses_and_metrics(logged):
    tmp, losses, seen_losses, _ = logged
    acc = _accumulator(tmp / "epoch")
    per_epoch = np.asarray(seen_losses).reshape(EPOCHS, BATCHES).mean(axis=1)  # equal batches
    values = [e.value for e in acc.Scalars("qat/loss")]
    assert values == pytest.approx(per_epoch.tolist(), rel=1e-6)
    assert values == [float(np.float32(v)) for v in losses]
    assert [e.value for e in acc.Scalars("qat/val_score")] == [11.0, 12.0, 13.0]
    (final,) = acc.Scalars("test/fq_accuracy")
    assert final.value == 91.25 and final.step == EPOCHS
    assert "test/bit_exact" not in acc.Tags()["scalars"]


def test_histograms_hold_every_channel_eps_and_bound_per_epoch(logged):
    tmp, _, _, seen_eps = logged
    acc = _accumulator(tmp / "epoch")
    eps = acc.Histograms("eps/0.weight_quantiser")
    bound = acc.Histograms("bound/0.weight_quantiser")
    assert [e.step for e in eps] == list(range(EPOCHS))
    for event, b_event, want in zip(eps, bound, seen_eps, strict=True):
        h = event.histogram_value
        assert h.num == 3  # per-channel ε: one value per output channel
        assert h.min == pytest.approx(float(want.min())) and \
            h.max == pytest.approx(float(want.max()))
        assert h.sum == pytest.approx(float(want.double().sum()))
        # signed 4-bit range [-8, 7]: bound = 8 ε
        assert b_event.histogram_value.max == pytest.approx(8 * float(want.max()))
