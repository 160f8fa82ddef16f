"""onnxruntime-quantised test models (QDQ and QOperator) and the agreement measure.

Shared by ``test_qdq.py`` and ``benchmarks/importer_agreement.py``. Needs torch,
onnxruntime (with its quantisation tools) and the built-in models.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

MODELS = {"cnn": (1, 1, 8, 8), "resnet": (1, 1, 8, 8), "concat": (1, 1, 8, 8),
          "mbv1": (1, 3, 32, 32)}
VARIANTS = list(itertools.product(MODELS, ["QDQ", "QOperator"], ["U8", "S8"], [False, True]))


def has_vnni() -> bool:
    """Without VNNI, onnxruntime's U8S8 x86 kernels may saturate int16 pair sums
    (vpmaddubsw), which no exact integer reading reproduces."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_vnni|avx_vnni)\b", flags))


def _net(name):
    import torch

    from edgeq.models.concat_net import DigitsConcatNet
    from edgeq.models.digits_cnn import DigitsCNN
    from edgeq.models.mobilenet_v1 import mobilenet_v1_3ddfa
    from edgeq.models.resnet import DigitsResNet

    torch.manual_seed(0)
    return {"cnn": DigitsCNN, "resnet": DigitsResNet, "concat": DigitsConcatNet,
            "mbv1": lambda: mobilenet_v1_3ddfa(width=0.25)}[name]().eval()


def export(name: str, path: Path) -> None:
    """torch export, then Constant/Identity-of-initializer nodes become initializers (the
    quantiser wants constant biases as initializers)."""
    import torch

    torch.onnx.export(_net(name), torch.randn(*MODELS[name]), str(path), input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)
    m = onnx.load(str(path))
    inits = {i.name: i for i in m.graph.initializer}
    keep = []
    for n in m.graph.node:
        src = None
        if n.op_type == "Constant":
            src = helper.get_attribute_value(n.attribute[0])
        elif n.op_type == "Identity" and n.input[0] in inits:
            src = inits[n.input[0]]
        if src is None:
            keep.append(n)
            continue
        t = onnx.TensorProto()
        t.CopyFrom(src)
        t.name = n.output[0]
        m.graph.initializer.append(t)
        inits[t.name] = t
    del m.graph.node[:]
    m.graph.node.extend(keep)
    onnx.save(m, str(path))


def quantise_all(folder: Path, variants=VARIANTS, reduce_range: bool | None = None) -> dict:
    """Write every (model, format, activation type, per-channel) file; return their paths.

    ``reduce_range`` (7-bit weights) defaults to True on CPUs without VNNI, where
    onnxruntime's 8-bit kernels may saturate int16 pair sums (``vpmaddubsw``) and so
    compute something no exact integer reading reproduces; 7-bit weights cannot saturate.
    """
    if reduce_range is None:
        reduce_range = not has_vnni()
    from onnxruntime import quantization as q

    class Calib(q.CalibrationDataReader):
        def __init__(self, shape):
            rng = np.random.default_rng(0)
            self._it = iter([{"x": rng.standard_normal(shape).astype(np.float32)}
                             for _ in range(2)])

        def get_next(self):
            return next(self._it, None)

    for name in {v[0] for v in variants}:
        export(name, folder / f"{name}.onnx")
    files = {}
    for name, fmt, act, pc in variants:
        out = folder / f"{name}_{fmt}_{act}S8_{'pc' if pc else 'pt'}.onnx"
        q.quantize_static(
            str(folder / f"{name}.onnx"), str(out), Calib(MODELS[name]),
            quant_format=getattr(q.QuantFormat, fmt),
            activation_type=q.QuantType.QUInt8 if act == "U8" else q.QuantType.QInt8,
            weight_type=q.QuantType.QInt8, per_channel=pc, reduce_range=reduce_range)
        files[(name, fmt, act, pc)] = out
    return files


def ort_session(model: onnx.ModelProto, float_reading: bool = False):
    """onnxruntime CPU session; ``float_reading`` disables its graph optimisations, so
    QDQ files run as DequantizeLinear -> float op -> QuantizeLinear."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if float_reading:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def _lsb(model: onnx.ModelProto) -> float:
    """The output scale: the scale of the final DequantizeLinear."""
    from onnx import numpy_helper

    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"][-1]
    inits = {i.name: i for i in model.graph.initializer}
    return float(numpy_helper.to_array(inits[dq.input[1]]))


def agreement(path, n_inputs=4, scale=1.5, peer=None):
    """(exact fraction, max |diff| in output LSB, number of values): the model output of
    ``peer`` (default: edgeq's import run by the reference backend) against onnxruntime,
    on random inputs. ``peer="float"`` is onnxruntime without graph optimisations."""
    from edgeq.engine.backends.reference.executor import run_graph
    from edgeq.engine.onnx import import_onnx

    model = onnx.load(str(path))
    sess = ort_session(model)
    if peer == "float":
        other = ort_session(model, float_reading=True)
        run = lambda x: other.run(None, {"x": x})[0]  # noqa: E731
    else:
        graph = import_onnx(path)
        run = lambda x: run_graph(graph, {"x": x})[graph.outputs[0]]  # noqa: E731
    lsb = _lsb(model)
    shape = MODELS[next(k for k in MODELS if Path(path).name.startswith(k))]
    same = total = worst = 0
    for seed in range(n_inputs):
        x = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)
        ref, got = sess.run(None, {"x": x})[0], run(x)
        diff = np.rint(np.abs(got.astype(np.float64) - ref.astype(np.float64)) / lsb)
        same, total = same + int((got == ref).sum()), total + ref.size
        worst = max(worst, int(diff.max()))
    return same / total, worst, total
