"""Datasets. Everything here works offline: data either ships with a pip package or is
generated."""

from edgeq.data.digits import DigitsSplits, digits_loaders, load_digits_splits

__all__ = ["DigitsSplits", "digits_loaders", "load_digits_splits"]
