"""edgeq: from PyTorch quantisation-aware training to integer-only programs."""

__version__ = "0.1.0"
