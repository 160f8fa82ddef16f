"""ONNX import into the IR: float ONNX and the QuantLab/DORY integer dialect."""

from edgeq.engine.onnx.importer import import_onnx

__all__ = ["import_onnx"]
