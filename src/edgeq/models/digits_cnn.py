"""A small, fast CNN for scikit-learn's 8x8 digits."""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """conv-BN-ReLU x 2 (the second with stride 2), flatten, linear: 1x8x8 -> 10.

    The convolutions keep PyTorch's default ``bias=True`` on purpose: that is how most
    user code looks, and F2F must fold such a bias into the following BatchNorm.
    """

    def __init__(self, channels: tuple[int, int] = (16, 32), num_classes: int = 10):
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(c2)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(c2 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))
