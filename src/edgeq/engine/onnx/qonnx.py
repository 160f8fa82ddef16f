"""QONNX (Quant / BipolarQuant / Trunc) ONNX -> IR (work in progress)."""

from __future__ import annotations

import onnx


def is_qonnx(model: onnx.ModelProto) -> bool:
    return False


def import_qonnx(model: onnx.ModelProto, source: str):
    raise NotImplementedError
