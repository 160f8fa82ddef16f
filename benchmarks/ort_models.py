"""An onnxruntime-quantised network deployed by edgeq's C backend, against onnxruntime.

MobileNetV1 (3DDFA head, width 1.0, 120x120 input, seeded random weights) exported from
PyTorch, quantised by onnxruntime's own ``quantize_static`` (QDQ, uint8 activations,
int8 per-channel weights; 7-bit weights on CPUs without VNNI, where onnxruntime's 8-bit
kernels may saturate), then compiled with ``edgeq compile`` (the C backend, host target,
one thread) at batch 1 and batch 32. In the same run, on the same file:

- **agreement**: the C program's outputs vs onnxruntime's (CPU provider, default graph
  optimisation) on a batch of 32 random inputs -- the fraction of bit-identical values;
- **latency**: the median over repeated runs of the C program (``run_model --repeat``)
  and of ``InferenceSession.run`` (one intra-op thread, like the C program), per batch.

Writes ``benchmarks/results/ort_models.json``.

    python benchmarks/ort_models.py                 # width 1.0, batches 1 and 32
    python benchmarks/ort_models.py --width 0.25 --batches 1 --repeat 3 --out /tmp/o.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
PX = 120


def export(width: float, batch: int, path: Path) -> None:
    """torch -> ONNX with a fixed batch (the network's flatten bakes it into a Reshape);
    Constant nodes and Identity copies of initializers become initializers (the
    quantiser wants them so)."""
    import torch

    from edgeq.models.mobilenet_v1 import mobilenet_v1_3ddfa

    torch.manual_seed(0)
    net = mobilenet_v1_3ddfa(width=width).eval()
    torch.onnx.export(net, torch.randn(batch, 3, PX, PX), str(path), input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    keep = []
    for n in m.graph.node:
        if n.op_type == "Constant":
            data = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type == "Identity" and n.input[0] in inits:  # shared weights
            data = inits[n.input[0]]
        else:
            keep.append(n)
            continue
        inits[n.output[0]] = data
        m.graph.initializer.append(numpy_helper.from_array(data, n.output[0]))
    del m.graph.node[:]
    m.graph.node.extend(keep)
    onnx.save(m, str(path))


def quantise(src: Path, dst: Path, batch: int, reduce_range: bool) -> None:
    """quantize_static with min/max calibration on the same 8 images for every batch
    size (as 8 batches of 1, or tiled into one batch), so every file has the same
    scales and zero points."""
    from onnxruntime import quantization as q

    images = np.random.default_rng(0).standard_normal((8, 3, PX, PX)).astype(np.float32)
    feeds = ([images[i:i + 1] for i in range(8)] if batch == 1
             else [np.resize(images, (batch, 3, PX, PX))])

    class Calib(q.CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"x": x} for x in feeds])

        def get_next(self):
            return next(self._it, None)

    q.quantize_static(str(src), str(dst), Calib(), quant_format=q.QuantFormat.QDQ,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                      per_channel=True, reduce_range=reduce_range)


def edgeq_compile(model: Path, out: Path, batch: int) -> Path:
    """``edgeq compile`` as a user runs it; returns the built program."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    edgeq = shutil.which("edgeq") or "edgeq"
    proc = subprocess.run([edgeq, "compile", str(model), "--out", str(out),
                           "--target", "host", "--batch", str(batch), "--force"],
                   check=False, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"edgeq compile {model} failed: {proc.stderr.strip()}")
    return out / "run_model"


def run_c(binary: Path, x: np.ndarray, tmp: Path, repeat: int = 0):
    """(output, median ms or None) of the generated program on ``x``."""
    np.save(tmp / "in.npy", x)
    args = [str(binary), str(tmp / "in.npy"), str(tmp / "out.npy")]
    if repeat:
        args += ["--repeat", str(repeat)]
    proc = subprocess.run(args, check=True, capture_output=True, text=True)
    ms = next((float(ln.split()[1]) for ln in proc.stdout.splitlines()
               if ln.startswith("latency_ms_median")), None)
    return np.load(tmp / "out.npy"), ms


def ort_latency(sess, x: np.ndarray, repeat: int) -> float:
    sess.run(None, {"x": x})  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        sess.run(None, {"x": x})
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main(argv=None) -> int:
    import onnxruntime as ort

    sys.path.insert(0, str(ROOT))
    from tests.engine.onnx.qdq_builder import has_vnni

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--agree", type=int, default=32, help="inputs compared bit for bit")
    ap.add_argument("--repeat", type=int, default=20, help="timed runs per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="alternating C/onnxruntime rounds")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ort_models.json")
    args = ap.parse_args(argv)
    reduce_range = not has_vnni()
    with tempfile.TemporaryDirectory(prefix="edgeq-ort-") as t:
        tmp = Path(t)
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        rng = np.random.default_rng(1)
        rows = []
        for batch in sorted(set(args.batches) | {args.agree}):
            model = tmp / f"qdq_b{batch}.onnx"
            export(args.width, batch, tmp / "float.onnx")
            quantise(tmp / "float.onnx", model, batch, reduce_range)
            sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
            binary = edgeq_compile(model, tmp / f"c_b{batch}", batch)
            x = rng.standard_normal((batch, 3, PX, PX)).astype(np.float32)
            row = {"batch": batch}
            if batch == args.agree:
                got, _ = run_c(binary, x, tmp)
                want = sess.run(None, {"x": x})[0]
                row.update(exact=float(np.mean(got == want)), values=int(want.size),
                           max_abs_diff=float(np.abs(got - want).max()))
            if batch in args.batches:
                c_ms, o_ms = [], []
                for _ in range(args.rounds):  # alternate: both see the same machine load
                    c_ms.append(run_c(binary, x, tmp, args.repeat)[1])
                    o_ms.append(ort_latency(sess, x, args.repeat))
                row.update(c_ms=statistics.median(c_ms), ort_ms=statistics.median(o_ms))
                row["c_over_ort"] = row["c_ms"] / row["ort_ms"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"model": f"mobilenet_v1_3ddfa width {args.width}, {PX}x{PX}",
              "quantisation": "onnxruntime quantize_static QDQ U8S8 per-channel"
                              + (" reduce_range" if reduce_range else ""),
              "threads": 1, "repeat": args.repeat, "rounds": args.rounds,
              "onnxruntime": ort.__version__, "machine": platform.processor() or
              platform.machine(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    part = args.out.with_suffix(".json.tmp")
    part.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(part, args.out)
    print(f"wrote {args.out}")
    return 0 if all(r.get("exact", 1.0) == 1.0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
