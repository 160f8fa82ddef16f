"""Deployment side: ONNX import, IR, passes and backends. Imports no torch."""

from edgeq.engine.ir import Graph, Node, QuantInfo, Value
from edgeq.engine.model import Model, TensorInfo, load

__all__ = ["Graph", "Model", "Node", "QuantInfo", "TensorInfo", "Value", "load"]
