"""A small inception-style network with a channel concatenation, for 8x8 digits."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    pad = kernel // 2
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(),
    )


class DigitsConcatNet(nn.Module):
    """stem; a 1x1 and a 3x3 branch joined by ``torch.cat``; conv; pool; linear."""

    def __init__(self, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.stem = _conv_bn_relu(1, width, 3)
        self.branch1 = _conv_bn_relu(width, width, 1)
        self.branch3 = _conv_bn_relu(width, width, 3)
        self.mix = _conv_bn_relu(2 * width, 2 * width, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([self.branch1(x), self.branch3(x)], dim=1)
        x = self.pool(self.mix(x))
        return self.fc(torch.flatten(x, 1))
