"""Network definitions used by the training side, the benchmarks and the tests.

Every digits model takes ``N x 1 x 8 x 8`` inputs in [0, 1] and returns 10 logits.
"""

from edgeq.models.concat_net import DigitsConcatNet
from edgeq.models.digits_cnn import DigitsCNN
from edgeq.models.mobilenet_v1 import DepthWiseBlock, MobileNetV1, mobilenet_v1_3ddfa
from edgeq.models.resnet import DigitsResNet

__all__ = [
    "DepthWiseBlock",
    "DigitsCNN",
    "DigitsConcatNet",
    "DigitsResNet",
    "MobileNetV1",
    "mobilenet_v1_3ddfa",
]
