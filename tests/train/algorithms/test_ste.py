"""STE: forward is the hard quantiser; backward passes g inside the clip range."""

import torch

from edgeq.numerics.intrange import IntRange
from edgeq.train.algorithms import SteQuantiser, make_quantiser, ste_quantise
from edgeq.train.spec import QuantSpec, SteParams


def test_forward_and_clipped_gradient():
    r = IntRange.from_bits(2, signed=True)  # [-2, 1], ε = 0.5 -> clip [-1, 0.5]
    x = torch.tensor([-1.5, -1.0, -0.3, 0.2, 0.25, 0.5, 0.9], requires_grad=True)
    y = ste_quantise(x, torch.tensor(0.5), r)
    # floor(x/0.5 + 1/2) clipped to [-2, 1], times 0.5
    assert y.tolist() == [-1.0, -1.0, -0.5, 0.0, 0.5, 0.5, 0.5]
    y.backward(torch.arange(1.0, 8.0))
    assert x.grad.tolist() == [0, 2, 3, 4, 5, 0, 0]


def test_unclipped_gradient():
    x = torch.tensor([-5.0, 0.3, 5.0], requires_grad=True)
    ste_quantise(x, torch.tensor(1.0), IntRange.unsigned(4), clip_gradient=False).sum().backward()
    assert x.grad.tolist() == [1, 1, 1]


def test_quantiser_module_per_channel():
    spec = QuantSpec("ste", n_levels=8, signed=True, granularity="per_channel")
    q = make_quantiser(spec, n_channels=2, channel_dim=0, weight_shape=(2, 3))
    assert isinstance(q, SteQuantiser) and not q.learns_eps
    q.set_eps(torch.tensor([0.25, 1.0]))
    w = torch.tensor([[0.3, -0.9, 2.0], [0.3, -0.9, 2.0]])
    # rows: ε=0.25 -> [1, -4(clipped from -3.6 -> -4), 3 (clip)]; ε=1 -> [0, -1, 2]
    assert q(w).tolist() == [[0.25, -1.0, 0.75], [0.0, -1.0, 2.0]]
    assert q.integers(w).tolist() == [[1, -4, 3], [0, -1, 2]]


def test_params_clip_gradient_false():
    q = make_quantiser(QuantSpec("ste", n_levels=4, params=SteParams(clip_gradient=False)))
    q.set_eps(torch.tensor(1.0))
    x = torch.tensor([-1.0, 9.0], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [1, 1]
