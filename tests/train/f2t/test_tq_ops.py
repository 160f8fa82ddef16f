"""The TQ program on ops the model families do not use, and its input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeq.engine.model import Model
from edgeq.errors import IntegralityError, ShapeError
from edgeq.train.controller import observing
from edgeq.train.f2f import Policy, f2f, unit_input_spec
from edgeq.train.f2t import f2t, fidelity_report
from edgeq.train.f2t.tq import IntMaxPool, IntSumPool, RequantShift, Reshape
from edgeq.train.modules import quant_modules

X = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))


class Odd(nn.Module):
    """ReLU6, max pool with padding, dilated grouped conv, padded average pool followed by
    a quantiser, functional max pool, a non-flatten reshape, dropout, a biased classifier."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.act1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), \
            nn.ReLU6()
        self.pool1 = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(4), nn.ReLU()
        self.pool2 = nn.AvgPool2d(2, stride=1, padding=1)
        self.act3 = nn.ReLU6()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, 5)  # 8x8 -> 4x4 -> 4x4 -> 5x5 -> 2x2, 4 channels

    def forward(self, x):
        x = self.pool1(self.act1(self.bn1(self.conv1(x))))
        x = self.pool2(self.act2(self.bn2(self.conv2(x))))
        x = F.max_pool2d(self.act3(x), 2)
        x = x.view(x.shape[0], 2, -1)
        return self.fc(self.drop(torch.flatten(x, 1)))


def _fq_odd():
    torch.manual_seed(0)
    model = Odd()
    gm, _ = f2f(model, Policy.uniform(8, "pact"), X[:2], input_spec=unit_input_spec())
    gm.train()
    with torch.no_grad(), observing(gm):
        gm(X)
        gm(X)
    for _, m in quant_modules(gm):
        m.start()
    return gm.eval()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_odd_ops_engine_equal_and_within_one_lsb(dtype):
    gm = _fq_odd()
    tq = f2t(gm, X[:1], dtype=dtype, allow_subnormal=True)  # float16: subnormal scales
    kinds = {type(op) for op in tq.ops}
    assert {IntMaxPool, IntSumPool, RequantShift, Reshape} <= kinds
    graph = tq.to_ir()
    for x in (X, torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8)):
        x_int = tq.quantise_input(x)
        out = Model(graph).run({tq.input_name: x_int.numpy()})[tq.output_name]
        np.testing.assert_array_equal(out, tq(x_int).numpy())
    report = fidelity_report(gm, tq, X)
    if dtype == torch.float64:
        assert report.max_lsb <= 1, report.format()


def test_sum_pool_eps_and_max_pool_keep_the_range():
    tq = f2t(_fq_odd(), X[:1])
    sum_pool = next(op for op in tq.ops if isinstance(op, IntSumPool))
    pre, post = tq.values[sum_pool.inputs[0]], tq.values[sum_pool.output]
    assert float(post.eps) == float(pre.eps) / 4 and (post.lo, post.hi) == (0, 4 * pre.hi)
    max_pool = next(op for op in tq.ops if isinstance(op, IntMaxPool))
    assert tq.values[max_pool.output].range == tq.values[max_pool.inputs[0]].range


def test_input_checks():
    tq = f2t(_fq_odd(), X[:1])
    with pytest.raises(IntegralityError, match="integer tensor"):
        tq(X)
    with pytest.raises(IntegralityError, match=r"outside its range \[0,255\]"):
        tq(torch.full((1, 1, 8, 8), 256))
    with pytest.raises(ShapeError, match=r"expected \[N, 1, 8, 8\]"):
        tq(torch.zeros(1, 1, 4, 4, dtype=torch.int64))


def test_quantise_input_rounds_half_up_exactly():
    tq = f2t(_fq_odd(), X[:1])
    eps = tq.input_quant.eps
    x = torch.tensor([0.5, 1.5, 2.5, -3.0, 300.0], dtype=torch.float64) * eps
    assert tq.quantise_input(x).tolist() == [1, 2, 3, 0, 255]


def test_requant_shift_floor_and_clip_on_negatives():
    op = RequantShift("rq", ["x"], "y", mul=np.array([3, -3]).reshape(2, 1, 1),
                      add=np.array(4), shift=3, lo=-4, hi=3)
    x = torch.arange(-12, 12).reshape(1, 2, 3, 4)
    expected = np.clip(np.floor((x.numpy() * np.array([3, -3]).reshape(1, 2, 1, 1) + 4) / 8),
                       -4, 3)
    np.testing.assert_array_equal(op(x).numpy(), expected)
