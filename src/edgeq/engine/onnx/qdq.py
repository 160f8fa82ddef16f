"""onnxruntime QDQ / QOperator ONNX -> integer IR (work in progress)."""

from __future__ import annotations

import onnx


def is_qdq(model: onnx.ModelProto) -> bool:
    return False


def import_qdq(model: onnx.ModelProto, source: str):
    raise NotImplementedError
