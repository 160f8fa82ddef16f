"""QATController: start, freeze, observation reset, ANA annealing, INQ fractions, re-fits."""

import pytest
import torch
from torch import nn

from edgeq.errors import ConfigError
from edgeq.train.controller import QATController
from edgeq.train.modules import QuantActivation, QuantLinear
from edgeq.train.spec import AnaParams, AnnealSpec, InqParams, QuantSpec, ScheduleSpec


def make_net(weight_spec, act_spec):
    torch.manual_seed(0)
    return nn.Sequential(
        QuantLinear.from_float(nn.Linear(6, 5), weight_spec), QuantActivation("relu", act_spec)
    )


def run_epoch(net, ctrl, epoch, x, opt=None):
    ctrl.epoch_start(epoch)
    net.train()
    out = net(x)
    if opt is not None:
        opt.zero_grad()
        (out - 1.0).pow(2).mean().backward()
        opt.step()
    ctrl.step()
    return out


def test_start_epoch():
    net = make_net(QuantSpec("pact", 16, True), QuantSpec("pact", 16))
    ctrl = QATController(net, ScheduleSpec(start_epoch=2))
    x = torch.randn(32, 6)
    enabled = []
    for epoch in range(4):
        out = run_epoch(net, ctrl, epoch, x)
        enabled.append(ctrl.started)
        on_grid = torch.allclose(out, torch.round(out / net[1].eps) * net[1].eps) if epoch else None
        assert on_grid in (None, epoch >= 2)
    assert enabled == [False, False, True, True]
    # the activation ε was initialised from what epochs 0 and 1 observed
    assert int(net[1].observer.n_batches) == 2


def test_observe_epochs_resets_statistics():
    net = make_net(QuantSpec("ste", 16, True), QuantSpec("ste", 16))
    ctrl = QATController(net, ScheduleSpec(start_epoch=3, observe_epochs=1))
    for epoch in range(3):
        # big activations early, small ones in the last observed epoch
        run_epoch(net, ctrl, epoch, torch.randn(16, 6) * (100.0 if epoch < 2 else 1.0))
    ctrl.epoch_start(3)
    assert int(net[1].observer.n_batches) == 1
    assert float(net[1].eps) < 1.0


def test_freeze_epoch_stops_learning():
    net = make_net(QuantSpec("pact", 16, True), QuantSpec("tqt", 16))
    ctrl = QATController(net, ScheduleSpec(start_epoch=0, freeze_epoch=2))
    x = torch.randn(32, 6)
    bounds = []
    for epoch in range(4):
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        run_epoch(net, ctrl, epoch, x, opt)
        bounds.append((net[0].weight_quantiser.bound.detach().clone(), net[1].eps.clone()))
    assert ctrl.frozen
    assert not net[0].weight_quantiser.bound.requires_grad
    assert not net[1].quantiser.log2_t.requires_grad
    assert not torch.equal(bounds[0][1], bounds[1][1])  # learning before the freeze
    assert torch.equal(bounds[2][0], bounds[3][0]) and torch.equal(bounds[2][1], bounds[3][1])


def test_step_refits_fixed_weight_eps_until_frozen():
    net = make_net(QuantSpec("ste", 16, True), QuantSpec("ste", 16))
    ctrl = QATController(net, ScheduleSpec(start_epoch=0, freeze_epoch=1))
    lin = net[0]
    ctrl.epoch_start(0)
    lin(torch.zeros(1, 6))
    with torch.no_grad():
        lin.weight.mul_(2)
    ctrl.step()  # re-fitted: ε doubles with the weights
    eps0 = lin.weight_eps.clone()
    w = lin.weight.detach()
    # signed 4 bit, minmax per tensor: ε = max(max w / 7, min w / -8)
    assert float(eps0) == pytest.approx(max(float(w.max()) / 7, float(w.min()) / -8), rel=1e-6)
    ctrl.epoch_start(1)
    with torch.no_grad():
        lin.weight.mul_(2)
    ctrl.step()
    assert torch.equal(lin.weight_eps, eps0)  # frozen: no more re-fits


def test_ana_annealing_per_epoch():
    params = AnaParams(
        noise="uniform",
        mu=AnnealSpec("const", base=0.0),
        sigma=AnnealSpec("bws", base=1.0, start=1, end=5),
    )
    spec = QuantSpec("ana", 16, params=params)
    net = make_net(QuantSpec("ana", 16, True, params=params), spec)
    ctrl = QATController(net, ScheduleSpec(start_epoch=1))
    sigmas = []
    for epoch in range(7):
        ctrl.epoch_start(epoch)
        net.train()(torch.randn(4, 6))
        sigmas.append(float(net[1].quantiser.sigma))
    # σ(t) = clip((5 - t)/4, 0, 1); epoch 0 is before the start (initial value σ(0) = 1)
    assert sigmas == [1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert float(net[0].weight_quantiser.sigma) == 0.0


def test_inq_fractions_per_epoch():
    inq = QuantSpec("inq", 8, True, params=InqParams(schedule=((1, 0.2), (2, 0.6), (4, 1.0))))
    net = make_net(inq, QuantSpec("pact", 16))
    ctrl = QATController(net, ScheduleSpec(start_epoch=1))
    fractions = []
    for epoch in range(6):
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        run_epoch(net, ctrl, epoch, torch.randn(8, 6), opt)
        fractions.append(net[0].weight_quantiser.frozen_fraction)
    # 30 weights: round(0.2·30) = 6, round(0.6·30) = 18
    assert fractions == pytest.approx([0.0, 0.2, 0.6, 0.6, 1.0, 1.0])
    w = net[0].quantised_weight().detach()
    assert torch.allclose(w, net[0].weight_eps * net[0].int_weight())


def test_separate_controllers_for_module_groups():
    net = make_net(QuantSpec("pact", 16, True), QuantSpec("pact", 16))
    w_ctrl = QATController(net, ScheduleSpec(start_epoch=0), modules=[net[0]])
    a_ctrl = QATController(net, ScheduleSpec(start_epoch=2), modules=[net[1]])
    w_ctrl.epoch_start(0)
    a_ctrl.epoch_start(0)
    assert net[0].quant_enabled and not net[1].quant_enabled


def test_schedule_type_checked():
    with pytest.raises(ConfigError, match="ScheduleSpec"):
        QATController(nn.Linear(1, 1), {"start_epoch": 0})


def test_state_dict_restores_epoch_and_step_counters():
    """Checkpoints: a new controller loading the state continues the same counters; the
    modules' ε and flags travel in the model's state dict, not here."""
    net = make_net(QuantSpec("pact", 16, True), QuantSpec("pact", 16))
    ctrl = QATController(net, ScheduleSpec(start_epoch=0))
    for epoch in range(2):
        run_epoch(net, ctrl, epoch, torch.randn(4, 6))
    state = ctrl.state_dict()
    again = QATController(net, ScheduleSpec(start_epoch=0))
    again.load_state_dict(state)
    assert (again.epoch, again.n_steps) == (1, 2)
