"""ONNX -> IR: read, detect the dialect, run its passes, complete shapes, validate."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import onnx

from edgeq.engine.ir import Graph
from edgeq.engine.onnx import edgeq_dialect, nemo, qdq, qonnx, quantlab
from edgeq.engine.onnx.reader import infer_shapes, read_model, to_graph
from edgeq.engine.onnx.validate import (
    check_json_text,
    check_shapes_after_inference,
    validate_model,
)
from edgeq.engine.passes.shapes import complete_shapes
from edgeq.errors import ConfigError, EdgeqError, ModelFileError, UnsupportedOpError
from edgeq.numerics import IntRange

MAX_CONFIG_BYTES = 2**20  # a DORY config is a handful of keys


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
    validate_model(model, name)  # before shape inference (data propagation) and any trial run
    with _guard(name, "import"):
        graph = _import_dialect(model, name, source, input_range)
        _check_ops(graph, supported_ops())
    with _guard(name, "trial run"):
        graph = complete_shapes(graph)
    with _guard(name, "validation"):
        graph.validate(supported_ops())
    return graph


def _import_dialect(model: onnx.ModelProto, name: str, source, input_range) -> Graph:
    """The dialect's importer: the graph in the IR, before shape completion."""
    if qdq.is_qdq(model):  # onnxruntime QDQ/QOperator (custom domains: before to_graph)
        graph = qdq.import_qdq(model, name)
    elif qonnx.is_qonnx(model):
        graph = qonnx.import_qonnx(model, name)
    else:
        inferred = infer_shapes(model, name)
        check_shapes_after_inference(inferred, name)
        graph = to_graph(inferred, name)
    if edgeq_dialect.has_annotations(model):  # edgeq-dialect hook: files from export_onnx
        graph = edgeq_dialect.import_edgeq(graph, model, input_range)
    elif quantlab.is_quantlab(graph):
        if input_range is None and not isinstance(source, onnx.ModelProto):
            input_range = _dory_input_range(Path(source))
        graph = quantlab.import_quantlab(graph, input_range)
    elif nemo.is_nemo(graph):
        graph = nemo.import_nemo(graph, input_range)
    return graph


@contextmanager
def _guard(source: str, stage: str):
    """Last resort: an unexpected exception in a stage becomes a ModelFileError naming the file.

    :func:`validate_model` is meant to make this unreachable; it keeps a malformed file
    that slips through from surfacing as a raw traceback (or a MemoryError).
    """
    try:
        yield
    except EdgeqError:
        raise
    except (MemoryError, RecursionError, ArithmeticError, LookupError, TypeError, ValueError,
            AttributeError, AssertionError, NotImplementedError, RuntimeError) as exc:
        raise ModelFileError(
            f"{source}: malformed model, {stage} failed ({type(exc).__name__}: "
            f"{_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no detail"


def _check_ops(graph: Graph, known) -> None:
    for node in graph.nodes:
        if node.op not in known:
            raise UnsupportedOpError(node.op, node.name, graph.opset)


def _dory_input_range(model_path: Path) -> IntRange | None:
    """Input precision from a DORY side file, if one is there.

    ``config_<model stem>.json`` (what the exporter writes) wins; otherwise the first
    ``config*.json`` that is a DORY config (it has ``input_bits`` or ``BNRelu_bits``) and
    names no other ``onnx_file``. Other JSON files (a pipeline's ``config.json``) are
    not DORY configs and are skipped.
    """
    own = model_path.with_name(f"config_{model_path.stem}.json")
    candidates = [own] if own.is_file() else []
    candidates += [c for c in sorted(model_path.parent.glob("config*.json")) if c != own]
    for cfg in candidates:
        data = _read_dory_config(cfg)
        if data is None:
            continue
        onnx_file = data.get("onnx_file")
        if cfg != own and isinstance(onnx_file, str) and Path(onnx_file).name != model_path.name:
            continue
        if "input_bits" in data:
            return _config_range(data, cfg)
    return None


def _read_dory_config(cfg: Path) -> dict | None:
    try:
        size = cfg.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{cfg}: {size} bytes, too large for a DORY config")
        text = cfg.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg}: unreadable DORY config ({_first_line(exc)})") from None
    try:
        check_json_text(text, str(cfg))
        data = json.loads(text)
    except (ValueError, ModelFileError) as exc:
        raise ConfigError(f"{cfg}: unreadable DORY config ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        if cfg.name.startswith("config_"):
            raise ConfigError(f"{cfg}: a DORY config must be a JSON object, got "
                              f"{type(data).__name__}")
        return None
    return data if {"input_bits", "BNRelu_bits"} & set(data) else None


def _config_range(data: dict, cfg: Path) -> IntRange:
    bits, signed = data["input_bits"], data.get("input_signed", False)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ConfigError(f"{cfg}: key 'input_bits' must be an integer in [1, 32], got {bits!r}")
    if not isinstance(signed, bool | int) or signed not in (0, 1):
        raise ConfigError(f"{cfg}: key 'input_signed' must be true or false, got {signed!r}")
    if "BNRelu_bits" in data and (isinstance(data["BNRelu_bits"], bool)
                                  or data["BNRelu_bits"] not in (8, 16, 32, 64)):
        raise ConfigError(f"{cfg}: key 'BNRelu_bits' must be 8, 16, 32 or 64, "
                          f"got {data['BNRelu_bits']!r}")
    return IntRange.from_bits(bits, bool(signed))
