"""MobileNetV1 in the layout of cleardusk/3DDFA (``mobilenet_v1.py``), re-implemented.

3x120x120 -> 62 3DMM parameters. Names (``conv1``, ``dw2_1`` ... ``dw6``, ``fc``) follow
the original so its checkpoints load by name. Two details matter for quantisation and
are kept on purpose:

* one ``ReLU`` module per block is shared by the depthwise and the pointwise
  activation (F2F splits it, since each site needs its own clipping bound);
* channel counts are ``int()``-truncated, as in the original.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgeq.errors import ConfigError

# (in, out, stride) of the 13 depthwise blocks in units of the width factor.
_BLOCKS = (
    ("dw2_1", 32, 64, 1),
    ("dw2_2", 64, 128, 2),
    ("dw3_1", 128, 128, 1),
    ("dw3_2", 128, 256, 2),
    ("dw4_1", 256, 256, 1),
    ("dw4_2", 256, 512, 2),
    ("dw5_1", 512, 512, 1),
    ("dw5_2", 512, 512, 1),
    ("dw5_3", 512, 512, 1),
    ("dw5_4", 512, 512, 1),
    ("dw5_5", 512, 512, 1),
    ("dw5_6", 512, 1024, 2),
    ("dw6", 1024, 1024, 1),
)


class DepthWiseBlock(nn.Module):
    """dw3x3-BN-ReLU-pw1x1-BN-ReLU with a single ReLU module used twice."""

    def __init__(self, inplanes: float, planes: float, stride: int = 1):
        super().__init__()
        inplanes, planes = int(inplanes), int(planes)
        self.conv_dw = nn.Conv2d(
            inplanes, inplanes, 3, stride=stride, padding=1, groups=inplanes, bias=False
        )
        self.bn_dw = nn.BatchNorm2d(inplanes)
        self.conv_sep = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn_sep = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn_dw(self.conv_dw(x)))
        return self.relu(self.bn_sep(self.conv_sep(x)))


class MobileNetV1(nn.Module):
    """The 3DDFA MobileNetV1; see the module docstring."""

    def __init__(self, width: float = 1.0, num_classes: int = 62, input_channels: int = 3):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(
            input_channels, int(32 * width), 3, stride=2, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(int(32 * width))
        self.relu = nn.ReLU(inplace=True)
        for name, cin, cout, stride in _BLOCKS:
            self.add_module(name, DepthWiseBlock(cin * width, cout * width, stride))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(int(1024 * width), num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He-style init of the original: N(0, sqrt(2 / (k*k*out))); BN gamma=1, beta=0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for name, *_ in _BLOCKS:
            x = getattr(self, name)(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


def mobilenet_v1_3ddfa(width: float = 1.0, num_classes: int = 62) -> MobileNetV1:
    """MobileNetV1 as in 3DDFA; widths 1.0, 0.5 and 0.25 are the ones we test."""
    if not width > 0:
        raise ConfigError(f"mobilenet_v1_3ddfa: width must be positive, got {width!r}")
    return MobileNetV1(width=width, num_classes=num_classes)
