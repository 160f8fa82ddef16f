"""ONNX -> IR: read, detect the dialect, run its passes, complete shapes, validate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx

from edgeq.engine.ir import Graph
from edgeq.engine.onnx import edgeq_dialect, nemo, qdq, qonnx, quantlab
from edgeq.engine.onnx.reader import infer_shapes, read_model, to_graph
from edgeq.engine.passes.shapes import complete_shapes
from edgeq.errors import ConfigError, UnsupportedOpError
from edgeq.numerics import IntRange


def import_onnx(
    source: str | os.PathLike | onnx.ModelProto, input_range: IntRange | None = None
) -> Graph:
    """Import an ONNX file (or ModelProto) into a validated IR graph.

    QuantLab/DORY files are detected by their annotations. Their input range is
    ``input_range`` if given, else ``input_bits``/``input_signed`` from a DORY
    ``config*.json`` beside the file, else unsigned 8 bit.
    """
    from edgeq.engine.backends.reference import supported_ops

    if isinstance(source, onnx.ModelProto):
        model, name = source, "<model>"
    else:
        model, name = read_model(source), str(source)
    if qdq.is_qdq(model):  # onnxruntime QDQ/QOperator (custom domains: before to_graph)
        graph = qdq.import_qdq(model, name)
    elif qonnx.is_qonnx(model):
        graph = qonnx.import_qonnx(model, name)
    else:
        graph = to_graph(infer_shapes(model, name), name)
    if edgeq_dialect.has_annotations(model):  # edgeq-dialect hook: files from export_onnx
        graph = edgeq_dialect.import_edgeq(graph, model, input_range)
    elif quantlab.is_quantlab(graph):
        if input_range is None and not isinstance(source, onnx.ModelProto):
            input_range = _dory_input_range(Path(source))
        graph = quantlab.import_quantlab(graph, input_range)
    elif nemo.is_nemo(graph):
        graph = nemo.import_nemo(graph, input_range)
    _check_ops(graph, supported_ops())
    graph = complete_shapes(graph)
    graph.validate(supported_ops())
    return graph


def _check_ops(graph: Graph, known) -> None:
    for node in graph.nodes:
        if node.op not in known:
            raise UnsupportedOpError(node.op, node.name, graph.opset)


def _dory_input_range(model_path: Path) -> IntRange | None:
    """Input precision from a DORY side file (``config*.json``), if one is there."""
    for cfg in sorted(model_path.parent.glob("config*.json")):
        try:
            data = json.loads(cfg.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{cfg}: unreadable DORY config ({exc})") from None
        if "input_bits" in data:
            return IntRange.from_bits(int(data["input_bits"]), bool(data.get("input_signed", 0)))
    return None
