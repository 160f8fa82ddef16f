"""ONNX import into the IR: float ONNX and the QuantLab/DORY integer dialect."""

from edgeq.engine.onnx.exporter import export_onnx
from edgeq.engine.onnx.importer import import_onnx

__all__ = ["export_onnx", "import_onnx"]
