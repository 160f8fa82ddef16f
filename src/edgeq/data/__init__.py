"""Datasets. Everything here works offline: data either ships with a pip package or is
generated.

The digits loaders need torch; they are imported lazily so that the torch-free
:mod:`edgeq.data.face3d` (used by the deployment-side landmark app) pulls in no torch.
"""

_DIGITS = ("DigitsSplits", "digits_loaders", "load_digits_splits")

__all__ = list(_DIGITS)


def __getattr__(name: str):
    if name in _DIGITS:
        from edgeq.data import digits

        return getattr(digits, name)
    raise AttributeError(f"module 'edgeq.data' has no attribute {name!r}")
