"""Post-training quantisation on the digits CNN: edgeq's PTQ methods vs onnxruntime.

Trains the float DigitsCNN (BatchNorm folded by the ONNX export), writes it as float ONNX
with a calibration set (the first 256 training images) and the test set, then in the same
run:

- **edgeq** (``edgeq.engine.ptq``): fixed, dynamic (per tensor and per channel),
  kmeans-linear, kmeans-gauss and kmeans at 16/8/6/4/2 bits; the accuracy is the one of
  the **integer IR on the reference backend** (bit-exact with the emulation);
- **onnxruntime** ``quantize_static`` (the named peer), QDQ, per-channel weights, with
  MinMax, Entropy and Percentile calibration: U8S8 at 8 bits, U16S16 at 16 bits and U8S4
  (4-bit weights, 8-bit activations) at 4 bits; run by onnxruntime.

Columns: test accuracy (%), weight bytes (edgeq: packed at the storage width with int32
biases; onnxruntime: every initializer of the quantised file, scales included) and
activation bytes per sample (the input and every layer output at the activation width).

    python benchmarks/ptq.py            # full run -> benchmarks/results/ptq.json
    python benchmarks/ptq.py --quick    # fewer epochs and widths (smoke test)
    python benchmarks/ptq.py --export-only DIR   # just the float model and the .npz files
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).parent / "results" / "ptq.json"
EDGEQ_METHODS = (("fixed", False), ("dynamic", False), ("dynamic", True),
                 ("kmeans-linear", False), ("kmeans-gauss", False), ("kmeans", False))
ORT_METHODS = ("MinMax", "Entropy", "Percentile")


def export_digits(out: Path, epochs: int = 20, seed: int = 0) -> dict:
    """Train the float digits CNN; write ``digits_fp.onnx``, ``calib.npz``, ``eval.npz``."""
    import torch

    from edgeq.data import digits_loaders, load_digits_splits
    from edgeq.lab.training import accuracy, predict, train
    from edgeq.models import DigitsCNN

    torch.manual_seed(seed)
    splits = load_digits_splits(seed)
    model = DigitsCNN()
    loader = digits_loaders(batch_size=64, seed=seed, splits=splits)["train"]
    train(model, loader, epochs, 3e-3, "FP digits CNN", progress=False)
    fp_acc = accuracy(predict(model, splits.x_test), splits.y_test)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (splits.x_test[:1],), str(out / "digits_fp.onnx"), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    np.savez(out / "calib.npz", input=splits.x_train[:256].numpy())
    np.savez(out / "eval.npz", input=splits.x_test.numpy(), labels=splits.y_test.numpy())
    return {"fp_torch_accuracy": fp_acc}


def act_elements(graph) -> int:
    """Elements per sample of the input and of every PTQ layer output."""
    from edgeq.engine.ptq.plan import make_plan

    names = list(graph.inputs) + [x.output for x in make_plan(graph).layers]
    total = 0
    for n in names:
        shape = graph.values[n].shape
        total += int(np.prod([d if isinstance(d, int) else 1 for d in shape]))
    return total


def run_edgeq(graph, calib: dict, ev: dict, bits_list) -> list[dict]:
    from edgeq.engine.analysis import layer_table, totals
    from edgeq.engine.model import Model
    from edgeq.engine.ptq import ptq
    from edgeq.engine.ptq.calibration import calibrate

    cal = calibrate(graph, calib, len(calib["input"]), progress=False)
    acts = act_elements(graph)
    rows = []
    runs = [(b, m, pc, b) for b in bits_list for m, pc in EDGEQ_METHODS
            if not (m.startswith("kmeans") and b > 12)]  # 2^13+ centroids: no codebook
    if 4 in bits_list:  # 4-bit weights with 8-bit activations, as onnxruntime's U8S4
        runs += [(4, m, pc, 8) for m, pc in EDGEQ_METHODS if m != "fixed"]
    for bits, method, per_channel, a_bits in runs:
        start = time.perf_counter()
        r = ptq(graph, calib, method, bits, per_channel=per_channel, cal=cal,
                config=_w_a(graph, method, bits, per_channel, a_bits))
        seconds = time.perf_counter() - start
        out = Model(r.graph).run({"input": ev["input"]})["logits"]
        acc = float(np.mean(np.argmax(out, axis=1) == ev["labels"]) * 100)
        emu = r.emulator.run({"input": ev["input"]})["logits"]
        exact = bool(np.array_equal(out * r.graph.values["logits"].quant.eps, emu))
        label = method + (" per-channel" if per_channel else "")
        label += f" W{bits}A{a_bits}" if a_bits != bits else ""
        rows.append({"tool": "edgeq", "method": label, "bits": bits, "accuracy": acc,
                     "weight_bytes": totals(layer_table(r.graph)).param_bytes,
                     "act_bytes": (acts * a_bits + 7) // 8, "ptq_seconds": seconds,
                     "emulation_exact": exact})
    return rows


def _w_a(graph, method, bits, per_channel, a_bits):
    """A config with activations at ``a_bits`` (None when they follow ``bits``)."""
    if a_bits == bits:
        return None
    from edgeq.engine.ptq.config import LayerQuant, PTQConfig, VarQuant
    from edgeq.engine.ptq.plan import make_plan

    act = VarQuant("dynamic", a_bits)
    layers = {x.name: LayerQuant(VarQuant(method, bits, per_channel) if x.kind == "linear"
                                 else None, act) for x in make_plan(graph).layers}
    return PTQConfig({n: act for n in graph.inputs}, layers)


class _Reader:
    def __init__(self, x: np.ndarray):
        self.items = iter([{"input": x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.items, None)


def run_ort(fp_path: Path, calib: dict, ev: dict, bits_list, graph) -> list[dict]:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    types = {16: (QuantType.QUInt16, QuantType.QInt16, "U16S16", 16),
             8: (QuantType.QUInt8, QuantType.QInt8, "U8S8", 8),
             4: (QuantType.QUInt8, QuantType.QInt4, "U8S4", 8)}
    acts = act_elements(graph)
    rows = []
    for bits in bits_list:
        if bits not in types:
            continue
        a_type, w_type, label, a_bits = types[bits]
        for cm in ORT_METHODS:
            with tempfile.TemporaryDirectory() as tmp:
                q = Path(tmp) / "q.onnx"
                start = time.perf_counter()
                try:
                    quantize_static(str(fp_path), str(q), _Reader(calib["input"]),
                                    quant_format=QuantFormat.QDQ, per_channel=True,
                                    activation_type=a_type, weight_type=w_type,
                                    calibrate_method=getattr(CalibrationMethod, cm))
                except Exception as exc:  # a peer failure is a result, not a crash
                    rows.append({"tool": "onnxruntime", "method": f"{cm} {label}", "bits": bits,
                                 "error": f"{type(exc).__name__}: {exc}"[:200]})
                    continue
                seconds = time.perf_counter() - start
                sess = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
                out = sess.run(None, {"input": ev["input"]})[0]
                wbytes = sum(_stored_bytes(t) for t in onnx.load(str(q)).graph.initializer)
            rows.append({"tool": "onnxruntime", "method": f"{cm} {label}", "bits": bits,
                         "accuracy": float(np.mean(np.argmax(out, 1) == ev["labels"]) * 100),
                         "weight_bytes": int(wbytes), "act_bytes": (acts * a_bits + 7) // 8,
                         "ptq_seconds": seconds})
    return rows


def _stored_bytes(t) -> int:
    """Bytes of an initializer as stored: 4-bit types packed two per byte."""
    import onnx

    n = int(np.prod(t.dims)) if len(t.dims) else 1
    if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return (n + 1) // 2
    return onnx.numpy_helper.to_array(t).nbytes


def format_table(fp_acc: float, fp_weight_bytes: int, fp_act: int, rows: list[dict]) -> str:
    head = f"{'tool':<12} {'method':<24} {'bits':>4} {'acc %':>7} {'weight B':>9} {'act B':>6}"
    lines = [head, "-" * len(head),
             f"{'float':<12} {'FP32':<24} {32:>4} {fp_acc:>7.2f} {fp_weight_bytes:>9,} "
             f"{fp_act:>6,}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['tool']:<12} {r['method']:<24} {r['bits']:>4}  failed: "
                         f"{r['error'][:60]}")
            continue
        lines.append(f"{r['tool']:<12} {r['method']:<24} {r['bits']:>4} {r['accuracy']:>7.2f} "
                     f"{r['weight_bytes']:>9,} {r['act_bytes']:>6,}")
    return "\n".join(lines)


def best_by_bits(rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        if "accuracy" in r:
            key = f"{r['tool']} {r['bits']}"
            if key not in out or r["accuracy"] > out[key]["accuracy"]:
                out[key] = r
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--export-only", type=Path, metavar="DIR")
    args = ap.parse_args(argv)
    epochs = 5 if args.quick else 20
    if args.export_only:
        args.export_only.mkdir(parents=True, exist_ok=True)
        info = export_digits(args.export_only, epochs)
        print(f"wrote {args.export_only}/digits_fp.onnx, calib.npz, eval.npz "
              f"(FP test accuracy {info['fp_torch_accuracy']:.2f} %)")
        return 0
    from edgeq.engine import load
    from edgeq.engine.analysis import layer_table, totals

    bits_list = (8, 4) if args.quick else (16, 8, 6, 4, 2)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        info = export_digits(d, epochs)
        graph = load(d / "digits_fp.onnx").graph
        calib = dict(np.load(d / "calib.npz"))
        ev = dict(np.load(d / "eval.npz"))
        fp_out = load(d / "digits_fp.onnx").run({"input": ev["input"]})["logits"]
        fp_acc = float(np.mean(np.argmax(fp_out, 1) == ev["labels"]) * 100)
        rows = run_edgeq(graph, calib, ev, bits_list)
        rows += run_ort(d / "digits_fp.onnx", calib, ev, bits_list, graph)
    fp_w = totals(layer_table(graph)).param_bytes
    table = format_table(fp_acc, fp_w, act_elements(graph) * 4, rows)
    best = best_by_bits(rows)
    summary = []
    for bits in bits_list:
        e, o = best.get(f"edgeq {bits}"), best.get(f"onnxruntime {bits}")
        if e and o:
            summary.append(f"{bits} bit: edgeq best {e['accuracy']:.2f} % ({e['method']}) vs "
                           f"onnxruntime best {o['accuracy']:.2f} % ({o['method']}); weight "
                           f"bytes {e['weight_bytes']:,} vs {o['weight_bytes']:,}")
        elif e:
            summary.append(f"{bits} bit: edgeq best {e['accuracy']:.2f} % ({e['method']}); "
                           "onnxruntime has no such width")
    text = table + "\n\n" + "\n".join(summary)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = {"fp_accuracy": fp_acc, **info, "rows": rows, "table": text,
            "python": sys.version.split()[0]}
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
