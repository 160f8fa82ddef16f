"""Post-training quantisation: edgeq's PTQ methods vs onnxruntime, on the digits CNN and
on the 3DDFA landmark MobileNetV1.

Trains each float model with the training side's own code (the digits CNN; the landmark
task's MobileNetV1 of ``edgeq.lab.tasks.landmarks`` at width 0.5, 64 px, 4 FP epochs
on 8000 faces of ``edgeq.data.face3d``; with ``--cache-dir`` the trained model is kept
there and reused), exports it as float ONNX (BatchNorm folded) with a calibration
``.npz`` (the first 256 training inputs) and an eval ``.npz`` (the test inputs with
``labels`` or whitened-parameter ``targets``), then in the same run:

- **edgeq** (``edgeq.engine.ptq``): fixed, dynamic (per tensor and per channel),
  kmeans-linear, kmeans-gauss and kmeans at 16/8/6/4(/2) bits, plus at 6/4/2 bits
  kmeans weights with **clustered activations** (``+ kmeans act``); the metric is the one of
  the **integer IR on the reference backend** (bit-exact with the emulation);
- **onnxruntime** ``quantize_static`` (the named peer), QDQ, per-channel weights, with
  MinMax, Entropy and Percentile calibration: U8S8 at 8 bits, U16S16 at 16 bits and U8S4
  (4-bit weights, 8-bit activations) at 4 bits; run by onnxruntime.

Columns: the task metric (digits: test accuracy %, higher is better; landmarks: 3DDFA's
NME %, lower is better), weight bytes (edgeq: packed at the storage width with int32
biases; onnxruntime: every initializer of the quantised file, scales included) and
activation bytes per sample (the input and every layer output at the activation width).

    python benchmarks/ptq.py                       # both models -> benchmarks/results/ptq.json
    python benchmarks/ptq.py --models digits       # one model
    python benchmarks/ptq.py --quick               # fewer epochs and widths (smoke test)
    python benchmarks/ptq.py --export-only DIR     # digits: the float model and .npz files
    python benchmarks/ptq.py --export-only DIR --models landmarks
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
CLUSTERED_ACT_BITS = (6, 4, 2)  # widths with an extra row: kmeans weights and activations


def export_digits(out: Path, epochs: int = 20, seed: int = 0, n_calib: int = 256,
                  n_eval: int | None = None) -> dict:
    """Train the float digits CNN; write ``digits_fp.onnx``, ``calib.npz`` (the first
    ``n_calib`` training images), ``eval.npz`` (the first ``n_eval`` test images, all by
    default)."""
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
    np.savez(out / "calib.npz", input=splits.x_train[:n_calib].numpy())
    np.savez(out / "eval.npz", input=splits.x_test[:n_eval].numpy(),
             labels=splits.y_test[:n_eval].numpy())
    return {"fp_torch_accuracy": fp_acc}


LANDMARKS = {"width": 0.5, "input_size": 64, "n_train": 8000, "n_test": 256, "fp_epochs": 4}
LANDMARKS_QUICK = {"width": 0.25, "input_size": 32, "n_train": 96, "n_test": 24, "fp_epochs": 1}


def landmarks_task(settings: dict, cache_dir: str | None = None):
    from edgeq.lab.config import PipelineConfig
    from edgeq.lab.tasks import make_task

    cfg = PipelineConfig.from_json({
        "task": {"name": "landmarks_3ddfa", "seed": 0, "batch_size": 64,
                 "n_train": settings["n_train"], "n_val": 1, "n_test": settings["n_test"],
                 "cache_dir": cache_dir},
        "model": {"name": "mobilenet_v1_3ddfa", "width": settings["width"],
                  "input_size": settings["input_size"]},
        "training": {"fp_epochs": settings["fp_epochs"], "qat_epochs": 1, "lr": 3e-3,
                     "schedule": "onecycle"}})
    return make_task(cfg), cfg


def export_landmarks(out: Path, settings: dict, seed: int = 0, cache_dir: str | None = None
                     ) -> dict:
    """Train the float landmark MobileNetV1 with the task's own loss and data; write
    ``landmarks_fp.onnx``, ``calib.npz`` (256 training inputs) and ``eval.npz`` (the test
    inputs and their whitened 62-parameter ``targets``)."""
    import torch

    from edgeq.lab.training import predict, train

    task, cfg = landmarks_task(settings, cache_dir)
    task.load(progress=False)
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the landmark task's measured best on 2 shared cores
    try:
        model = task.build_model()
        train(model, task.batches("train", 64, seed), settings["fp_epochs"], 3e-3,
              "FP landmarks", progress=False, loss_fn=task.loss, schedule="onecycle")
    finally:
        torch.set_num_threads(threads)
    x_test = task.inputs("test")
    fp_nme = task.evaluate(predict(model, x_test), "test")["nme"]
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x_test[:1],), str(out / "landmarks_fp.onnx"), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["params"],
                          dynamic_axes={"input": {0: "batch"}, "params": {0: "batch"}})
    np.savez(out / "calib.npz", input=task.inputs("train", 256).numpy())
    np.savez(out / "eval.npz", input=x_test.numpy(),
             targets=task.split("test").targets.numpy())
    return {"fp_torch_nme": fp_nme, "task": task}


class Bench:
    """One model of the benchmark: its files and its task metric on eval outputs."""

    def __init__(self, name: str, d: Path, metric_label: str, higher: bool, score):
        self.name, self.dir, self.label, self.higher, self.score = \
            name, d, metric_label, higher, score
        self.onnx = d / f"{name}_fp.onnx"
        self.calib = dict(np.load(d / "calib.npz"))
        self.ev = dict(np.load(d / "eval.npz"))

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher else a < b


def digits_bench(d: Path, epochs: int) -> tuple[Bench, dict]:
    info = export_digits(d, epochs)

    def score(out):
        return float(np.mean(np.argmax(out, 1) == b.ev["labels"]) * 100)

    b = Bench("digits", d, "accuracy %", True, score)
    return b, info


def landmarks_bench(d: Path, settings: dict, cache_dir=None) -> tuple[Bench, dict]:
    """The landmark model's files in ``d``, or, with a ``cache_dir``, in a sub-directory
    of it named by the settings (trained once, reused by later runs)."""
    if cache_dir is None:
        info = export_landmarks(d, settings)
        task = info.pop("task")
    else:
        d = Path(cache_dir) / ("ptq_landmarks_" + "_".join(
            f"{k}{settings[k]}" for k in ("width", "input_size", "n_train", "n_test", "fp_epochs")))
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        info_path = d / "info.json"
        if info_path.exists():
            info = json.loads(info_path.read_text())
            task = landmarks_task(settings, cache_dir)[0]
            task.load(progress=False)
        else:
            tmp = Path(tempfile.mkdtemp(prefix=".ptq_landmarks_", dir=cache_dir))
            info = export_landmarks(tmp, settings, cache_dir=cache_dir)
            task = info.pop("task")
            (tmp / "info.json").write_text(json.dumps(info) + "\n")
            tmp.replace(d)  # complete or absent: the cache is never half-written
        info["cached_model"] = str(d)

    def score(out):
        return float(task.evaluate(np.asarray(out, np.float32), "test")["nme"])

    return Bench("landmarks", d, "NME %", False, score), {**info, "settings": settings}


def act_elements(graph) -> int:
    """Elements per sample of the input and of every PTQ layer output."""
    from edgeq.engine.ptq.plan import make_plan

    names = list(graph.inputs) + [x.output for x in make_plan(graph).layers]
    total = 0
    for n in names:
        shape = graph.values[n].shape
        total += int(np.prod([d if isinstance(d, int) else 1 for d in shape]))
    return total


def run_edgeq(graph, calib: dict, ev: dict, bits_list, score) -> list[dict]:
    from edgeq.engine.analysis import layer_table, totals
    from edgeq.engine.model import Model
    from edgeq.engine.ptq import ptq
    from edgeq.engine.ptq.calibration import calibrate

    name, out_name = graph.inputs[0], graph.outputs[0]
    cal = calibrate(graph, calib, len(calib[name]), progress=False)
    acts = act_elements(graph)
    rows = []
    runs = [(b, m, pc, b, None) for b in bits_list for m, pc in EDGEQ_METHODS
            if not (m.startswith("kmeans") and b > 12)]  # 2^13+ centroids: no codebook
    if 4 in bits_list:  # 4-bit weights with 8-bit activations, as onnxruntime's U8S4
        runs += [(4, m, pc, 8, None) for m, pc in EDGEQ_METHODS if m != "fixed"]
    # clustered activations too (their codebook on an 8-bit grid, DESIGN §3.8)
    runs += [(b, "kmeans", False, b, "kmeans") for b in bits_list if b in CLUSTERED_ACT_BITS]
    for bits, method, per_channel, a_bits, a_method in runs:
        start = time.perf_counter()
        r = ptq(graph, calib, method, bits, per_channel=per_channel, cal=cal,
                config=_w_a(graph, method, bits, per_channel, a_bits, a_method))
        seconds = time.perf_counter() - start
        out = Model(r.graph).run({name: ev[name]})[out_name] * r.graph.values[out_name].quant.eps
        acc = score(out)
        emu = r.emulator.run({name: ev[name]})[out_name]
        exact = bool(np.array_equal(out, emu))
        label = method + (" per-channel" if per_channel else "")
        label += f" W{bits}A{a_bits}" if a_bits != bits else ""
        label += " + kmeans act" if a_method else ""
        rows.append({"tool": "edgeq", "method": label, "bits": bits, "metric": acc,
                     "weight_bytes": totals(layer_table(r.graph)).param_bytes,
                     "act_bytes": (acts * a_bits + 7) // 8, "ptq_seconds": seconds,
                     "emulation_exact": exact})
    return rows


def _w_a(graph, method, bits, per_channel, a_bits, a_method=None):
    """A config with activations at ``a_bits`` by ``a_method`` (dynamic by default; the
    graph input stays dynamic); None when they follow ``bits`` and the default."""
    if a_bits == bits and a_method is None:
        return None
    from edgeq.engine.ptq.config import LayerQuant, PTQConfig, VarQuant
    from edgeq.engine.ptq.plan import make_plan

    act = VarQuant(a_method or "dynamic", a_bits)
    layers = {x.name: LayerQuant(VarQuant(method, bits, per_channel) if x.kind == "linear"
                                 else None, act) for x in make_plan(graph).layers}
    return PTQConfig({n: VarQuant("dynamic", a_bits) for n in graph.inputs}, layers)


class _Reader:
    def __init__(self, x: np.ndarray):
        self.items = iter([{"input": x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.items, None)


def run_ort(fp_path: Path, calib: dict, ev: dict, bits_list, graph, score) -> list[dict]:
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
                out = np.concatenate([sess.run(None, {"input": ev["input"][i:i + 256]})[0]
                                      for i in range(0, len(ev["input"]), 256)])
                wbytes = sum(_stored_bytes(t) for t in onnx.load(str(q)).graph.initializer)
            rows.append({"tool": "onnxruntime", "method": f"{cm} {label}", "bits": bits,
                         "metric": score(out),
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


def format_table(b: Bench, fp_metric: float, fp_weight_bytes: int, fp_act: int,
                 rows: list[dict]) -> str:
    """The model's rows as a markdown table (float first, then edgeq, then onnxruntime)."""
    lines = [f"| tool | method | bits | {b.label} | weight B | act B/sample |",
             "|---|---|---:|---:|---:|---:|",
             f"| float | FP32 | 32 | {fp_metric:.2f} | {fp_weight_bytes:,} | {fp_act:,} |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['tool']} | {r['method']} | {r['bits']} | failed: "
                         f"{r['error'][:60]} | | |")
            continue
        lines.append(f"| {r['tool']} | {r['method']} | {r['bits']} | {r['metric']:.2f} | "
                     f"{r['weight_bytes']:,} | {r['act_bytes']:,} |")
    return "\n".join(lines)


def best_by_bits(b: Bench, rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        if "metric" in r:
            key = f"{r['tool']} {r['bits']}"
            if key not in out or b.better(r["metric"], out[key]["metric"]):
                out[key] = r
    return out


def clustering_wins(b: Bench, rows: list[dict], bits: int) -> str:
    """Which family is best at ``bits`` (weights at that width): codebooks or fixed point."""
    fam = {"codebook": [], "fixed point": []}
    for r in rows:
        if r.get("tool") == "edgeq" and r["bits"] == bits and "metric" in r:
            fam["codebook" if r["method"].startswith("kmeans") else "fixed point"].append(r)
    best = {k: (max if b.higher else min)(v, key=lambda r: r["metric"]) for k, v in fam.items()
            if v}
    if len(best) < 2:
        return ""
    c, f = best["codebook"], best["fixed point"]
    win = "tie" if c["metric"] == f["metric"] else \
        "clustering wins" if b.better(c["metric"], f["metric"]) else "fixed point wins"
    return (f"{bits} bit: {win}: best codebook {c['metric']:.2f} ({c['method']}) vs best "
            f"fixed point {f['metric']:.2f} ({f['method']})")


def clustered_activations(b: Bench, rows: list[dict], bits: int) -> str:
    """kmeans weights with clustered vs dynamic fixed-point activations at ``bits``."""
    by = {r["method"]: r for r in rows
          if r.get("tool") == "edgeq" and r["bits"] == bits and "metric" in r}
    c, f = by.get("kmeans + kmeans act"), by.get("kmeans")
    if not (c and f):
        return ""
    win = "tie" if c["metric"] == f["metric"] else \
        "clustered wins" if b.better(c["metric"], f["metric"]) else "fixed point wins"
    return (f"{bits}-bit activations (kmeans weights): {win}: clustered {c['metric']:.2f} vs "
            f"dynamic fixed point {f['metric']:.2f}")


def bench_model(b: Bench, bits_list) -> dict:
    """Every edgeq and onnxruntime row of one model, its table and summary lines."""
    from edgeq.engine import load
    from edgeq.engine.analysis import layer_table, totals

    graph = load(b.onnx).graph
    name, out_name = graph.inputs[0], graph.outputs[0]
    fp_out = load(b.onnx).run({name: b.ev[name]})[out_name]
    fp_metric = b.score(fp_out)
    rows = run_edgeq(graph, b.calib, b.ev, bits_list, b.score)
    rows += run_ort(b.onnx, b.calib, b.ev, bits_list, graph, b.score)
    fp_w = totals(layer_table(graph)).param_bytes
    table = format_table(b, fp_metric, fp_w, act_elements(graph) * 4, rows)
    best = best_by_bits(b, rows)
    summary = []
    for bits in bits_list:
        e, o = best.get(f"edgeq {bits}"), best.get(f"onnxruntime {bits}")
        if e and o:
            verdict = "no worse" if not b.better(o["metric"], e["metric"]) else "WORSE"
            summary.append(f"{bits} bit: edgeq best {e['metric']:.2f} ({e['method']}) vs "
                           f"onnxruntime best {o['metric']:.2f} ({o['method']}): edgeq {verdict}; "
                           f"weight bytes {e['weight_bytes']:,} vs {o['weight_bytes']:,}")
        elif e:
            summary.append(f"{bits} bit: edgeq best {e['metric']:.2f} ({e['method']}); "
                           "onnxruntime has no such width")
    summary += [t for t in (clustering_wins(b, rows, bits) for bits in bits_list if bits <= 6) if t]
    summary += [t for t in (clustered_activations(b, rows, bits) for bits in bits_list) if t]
    text = f"## {b.name} ({b.label}, FP {fp_metric:.2f})\n\n" + table + "\n\n" + \
        "\n".join(f"- {line}" for line in summary)
    return {"metric": b.label, "higher_is_better": b.higher, "fp_metric": fp_metric,
            "rows": rows, "summary": summary, "table": text}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", default=None,
                    help="comma-separated: digits, landmarks (default: both; with "
                         "--export-only: digits)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--export-only", type=Path, metavar="DIR")
    ap.add_argument("--cache-dir", default=None, help="cache the generated faces here")
    args = ap.parse_args(argv)
    if args.models is None:
        args.models = "digits" if args.export_only else "digits,landmarks"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = sorted(set(models) - {"digits", "landmarks"})
    if bad or not models:
        ap.error(f"--models: unknown model {bad[0] if bad else '(none)'}; use digits, landmarks")
    if args.export_only and len(models) > 1:
        ap.error("--export-only writes one model's calib.npz and eval.npz: give one --models")
    epochs = 3 if args.quick else 20
    settings = LANDMARKS_QUICK if args.quick else LANDMARKS
    if args.export_only:
        args.export_only.mkdir(parents=True, exist_ok=True)
        for m in models:
            if m == "digits":  # --quick: small sets, so the README example runs in seconds
                sizes = {"n_calib": 64, "n_eval": 120} if args.quick else {}
                info = export_digits(args.export_only, epochs, **sizes)
                print(f"wrote {args.export_only}/digits_fp.onnx, calib.npz, eval.npz "
                      f"(FP test accuracy {info['fp_torch_accuracy']:.2f} %)")
            else:
                info = export_landmarks(args.export_only, settings, cache_dir=args.cache_dir)
                print(f"wrote {args.export_only}/landmarks_fp.onnx, calib.npz, eval.npz "
                      f"(FP test NME {info['fp_torch_nme']:.2f} %)")
        return 0
    bits_list = (8, 4) if args.quick else (16, 8, 6, 4, 2)
    data = {"python": sys.version.split()[0], "models": {}}
    for m in models:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            if m == "digits":
                b, info = digits_bench(Path(tmp), epochs)
            else:
                b, info = landmarks_bench(Path(tmp), settings, args.cache_dir)
            res = bench_model(b, bits_list)
        res.update(info, seconds=time.perf_counter() - start)
        data["models"][m] = res
        print(res["table"] + "\n", flush=True)
    if args.out.exists():  # keep the other models' results of an earlier run
        try:
            old = json.loads(args.out.read_text()).get("models", {})
        except ValueError:
            old = {}
        data["models"] = {**{k: v for k, v in old.items() if k not in models}, **data["models"]}
    data["table"] = "\n\n".join(v["table"] for v in data["models"].values())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    md = args.out.with_suffix(".md")
    for path, text in ((args.out, json.dumps(data, indent=1) + "\n"),
                       (md, "# PTQ: edgeq vs onnxruntime\n\n" + data["table"] + "\n")):
        tmp_out = path.with_name(f".{path.name}.tmp")
        tmp_out.write_text(text)
        tmp_out.replace(path)
    print(f"wrote {args.out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
