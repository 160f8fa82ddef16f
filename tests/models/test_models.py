import operator

import pytest
import torch
import torch.fx as fx
from torch import nn

from edgeq.errors import ConfigError
from edgeq.models import (
    DigitsCNN,
    DigitsConcatNet,
    DigitsResNet,
    MobileNetV1,
    mobilenet_v1_3ddfa,
)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("cls", [DigitsCNN, DigitsResNet, DigitsConcatNet])
def test_digits_models_map_8x8_to_10_logits(cls):
    torch.manual_seed(0)
    model = cls().eval()
    out = model(torch.rand(3, 1, 8, 8))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("width, expected", [(1.0, 3.271e6), (0.5, 0.850e6), (0.25, 0.229e6)])
def test_mobilenet_parameter_counts_match_3ddfa(width, expected):
    # Figures from the 3DDFA README / recount (3ddfa.md §1), BN affine parameters included.
    assert _n_params(mobilenet_v1_3ddfa(width)) == pytest.approx(expected, rel=2e-3)


def test_mobilenet_quarter_width_layout():
    model = mobilenet_v1_3ddfa(0.25).eval()
    assert model.conv1.out_channels == 8 and model.conv1.stride == (2, 2)
    assert model.conv1.bias is None
    assert model.dw5_6.conv_sep.out_channels == 256 and model.dw6.conv_dw.groups == 256
    assert model.fc.in_features == 256 and model.fc.bias is not None
    sizes = []
    hook = model.dw6.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape)))
    assert model(torch.randn(2, 3, 120, 120)).shape == (2, 62)
    hook.remove()
    assert sizes == [(2, 256, 4, 4)]  # 120 -> 60 -> 30 -> 15 -> 8 -> 4


def test_mobilenet_int_truncates_channels():
    model = MobileNetV1(width=0.3)
    assert model.conv1.out_channels == int(32 * 0.3) == 9
    assert model.dw2_1.conv_sep.out_channels == int(64 * 0.3) == 19


def test_mobilenet_block_shares_one_relu_between_two_sites():
    gm = fx.symbolic_trace(mobilenet_v1_3ddfa(0.25))
    sites = [n.target for n in gm.graph.nodes if n.op == "call_module" and "relu" in n.target]
    assert sites.count("dw2_1.relu") == 2
    assert sites.count("relu") == 1
    assert len(sites) == 1 + 2 * 13


def test_mobilenet_rejects_non_positive_width():
    with pytest.raises(ConfigError, match="width"):
        mobilenet_v1_3ddfa(0.0)


def test_resnet_has_two_residual_adds_and_concat_net_a_cat():
    adds = [n for n in fx.symbolic_trace(DigitsResNet()).graph.nodes if n.target is operator.add]
    cats = [n for n in fx.symbolic_trace(DigitsConcatNet()).graph.nodes if n.target is torch.cat]
    assert len(adds) == 2 and len(cats) == 1
