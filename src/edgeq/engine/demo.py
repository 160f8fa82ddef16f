"""A self-contained engine demo: build a small float ONNX model, run it, check it.

The model (conv 3x3 -> ReLU -> max pool 2x2 -> flatten -> Gemm) is built with
``onnx.helper`` from seeded weights, so the demo needs no download and no torch. It is
saved, loaded back through :func:`edgeq.engine.load`, run on a seeded input, and compared
against onnxruntime when that is installed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeq.engine.analysis import format_table, layer_table
from edgeq.engine.tensor_io import write_atomic
from edgeq.errors import EdgeqError

INPUT_SHAPE = (1, 3, 16, 16)
CHANNELS = 8
CLASSES = 10
OPSET = 13
# float32 sums in a different order: allow a few ulps of the output's magnitude
REL_TOL = 1e-4


def build_model(seed: int = 0) -> onnx.ModelProto:
    """conv(3->8, 3x3, pad 1) -> relu -> maxpool(2) -> flatten -> gemm(512->10)."""
    rng = np.random.default_rng(seed)
    n, c, h, w = INPUT_SHAPE
    flat = CHANNELS * (h // 2) * (w // 2)
    weights = {
        "conv.weight": rng.normal(0, 0.3, (CHANNELS, c, 3, 3)),
        "conv.bias": rng.normal(0, 0.1, (CHANNELS,)),
        "fc.weight": rng.normal(0, 0.05, (CLASSES, flat)),
        "fc.bias": rng.normal(0, 0.1, (CLASSES,)),
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "conv.weight", "conv.bias"],
            ["conv"],
            name="conv",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node(
            "MaxPool", ["relu"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "edgeq_demo",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(INPUT_SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, CLASSES])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgeq-demo"
    )
    model.ir_version = 8  # readable by every onnxruntime that supports opset 13
    onnx.checker.check_model(model)
    return model


def make_input(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 1).normal(0, 1, INPUT_SHAPE).astype(np.float32)


def onnxruntime_outputs(path: Path, x: np.ndarray) -> dict[str, np.ndarray] | None:
    """The model's outputs under onnxruntime, or ``None`` if it is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"x": x}), strict=True))


@dataclass
class DemoResult:
    model_path: Path
    input_path: Path
    outputs: dict[str, np.ndarray]
    reference: dict[str, np.ndarray] | None  # onnxruntime's outputs, if available
    max_abs_diff: float | None
    table: str


def run_demo(out_dir: str | os.PathLike = "edgeq-demo", seed: int = 0) -> DemoResult:
    """Build, save, load, run and check the demo model; raise EdgeqError on a mismatch."""
    from edgeq.engine import load  # the engine is imported only when the demo runs

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeqError(f"{out}: cannot create directory: {exc.strerror or exc}") from None
    model_path, input_path = out / "demo.onnx", out / "input.npy"
    data = build_model(seed).SerializeToString()
    write_atomic(model_path, lambda f: f.write(data))
    x = make_input(seed)
    write_atomic(input_path, lambda f: np.save(f, x))

    model = load(model_path)
    outputs = model.run({"x": x})
    reference = onnxruntime_outputs(model_path, x)
    diff = None if reference is None else _max_abs_diff(outputs, reference)
    if diff is not None:
        scale = max(float(np.max(np.abs(r))) for r in reference.values())
        if not diff <= REL_TOL * max(1.0, scale):
            raise EdgeqError(f"demo: engine and onnxruntime differ by {diff:.3g}")
    table = format_table(layer_table(model.graph))
    return DemoResult(model_path, input_path, outputs, reference, diff, table)


def _max_abs_diff(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> float:
    if set(ours) != set(theirs):
        raise EdgeqError(f"demo: output names {sorted(ours)} != onnxruntime's {sorted(theirs)}")
    for k in ours:
        if ours[k].shape != theirs[k].shape:
            raise EdgeqError(
                f"demo: output '{k}' has shape {ours[k].shape}, onnxruntime's {theirs[k].shape}"
            )
    diffs = [np.max(np.abs(ours[k].astype(np.float64) - theirs[k])) for k in ours]
    return float(max(diffs))
