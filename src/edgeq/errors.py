"""Typed errors. Every message is one line and names the file, node or key at fault.

The CLI catches :class:`EdgeqError` and prints ``error: <message>`` with a non-zero
exit status instead of a traceback.
"""

from __future__ import annotations


class EdgeqError(Exception):
    """Base class of every error edgeq raises on purpose."""


class ModelFileError(EdgeqError):
    """A model file is missing, unreadable or not valid ONNX."""


class UnsupportedOpError(EdgeqError):
    """An operator (or an attribute value of it) that the engine does not implement."""

    def __init__(self, op: str, node: str, opset: int | None = None, detail: str = ""):
        where = f"node '{node}'" + (f" (opset {opset})" if opset is not None else "")
        msg = f"unsupported op '{op}' at {where}"
        super().__init__(msg + (f": {detail}" if detail else ""))
        self.op, self.node, self.opset = op, node, opset


class ShapeError(EdgeqError):
    """Shapes that do not fit together, or an input of the wrong shape."""


class IntegralityError(EdgeqError):
    """A tensor that must hold integers (carried in floats) holds a non-integer."""


class MissingInputError(EdgeqError):
    """A graph input was not supplied, or a node reads a value nobody produces."""


class IntegerOverflowError(EdgeqError):
    """An integer computation whose result does not fit the chosen width."""


class RangeError(EdgeqError):
    """An impossible integer range (no levels, inconsistent offset/step...), or an integer
    bound the static range proof cannot establish (the message names the node)."""


class ConfigError(EdgeqError):
    """An invalid configuration: names the offending key or rule."""


class ValidationError(EdgeqError):
    """The IR validator found an inconsistent graph (after import or after a pass)."""


class InputFileError(EdgeqError):
    """An input tensor file (.npy or QuantLab/DORY text vector) that cannot be read."""


class OutputFileError(EdgeqError):
    """An output file that cannot be written (e.g. its directory is a regular file)."""


class BuildError(EdgeqError):
    """Generated code that cannot be built or run: missing compiler, compiler error."""


class OutputDirError(EdgeqError):
    """An output directory that cannot be written, or is not empty without --force."""


class BackendError(EdgeqError):
    """A node no selected backend can run, or a backend rule that cannot be honoured."""


class DatasetFileError(EdgeqError):
    """A dataset or image file (.mat, .pkl, .pts, list, image) that is missing or malformed."""


class CheckpointError(EdgeqError):
    """A training checkpoint that cannot be resumed from (corrupt, or of another run)."""
