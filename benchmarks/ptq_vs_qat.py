"""PTQ vs QAT (the seed's bonus task): one table and one plot per run, digits and 3DDFA.

For each task, in the same run and from the same float network:

- **QAT**: PACT and TQT at 8 and 4 bits, each trained by the training side's pipeline
  (``edgeq.lab.pipeline.run_seed``: FP training, F2F, calibration, QAT, F2T, integer ONNX
  in our dialect); the metric is the integer network's (``tq_<metric>``);
- **FP**: the float network of the first QAT run (every run trains the same FP network:
  same seed, data and settings; its ``model_fp.onnx`` is the PTQ input);
- **PTQ**: every ``edgeq.engine.ptq`` method (fixed, dynamic, dynamic per channel,
  kmeans-linear, kmeans-gauss, kmeans) at 8, 6 and 4 bits, calibrated on 256 training
  inputs; the metric is the integer IR's on the reference backend.

Columns: task metric (digits: test accuracy %, landmarks: NME %), weight bytes (the
integer network's constants at their storage width: ``pipeline.int_weight_bytes``),
activation bytes per sample (every node output; for integer networks after fusing each
requantisation into its Conv/Gemm, as the deployed program stores them:
``pipeline.fused_activation_bytes``; FP: the same tensors in float32), and
**deployed bit-exactness**: the generated C program (``edgeq.engine.load(...,
backend="c")``) gives the same integers as the reference backend on the test inputs
(``null`` without gcc).

Writes ``ptq_vs_qat.json``, ``ptq_vs_qat.md`` and ``ptq_vs_qat.png`` to ``--out-dir``.

    python benchmarks/ptq_vs_qat.py                      # digits and landmarks (real settings)
    python benchmarks/ptq_vs_qat.py --quick --out-dir D  # tiny settings (the test)
    python benchmarks/ptq_vs_qat.py --tasks digits --out-dir A &   # one process per task
    python benchmarks/ptq_vs_qat.py --tasks landmarks --out-dir B
    python benchmarks/ptq_vs_qat.py --merge A B          # one table and plot of both
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).parent / "results"
QAT = (("PACT", "pact", 8), ("PACT", "pact", 4), ("TQT", "tqt", 8), ("TQT", "tqt", 4))
PTQ_METHODS = (("fixed", False), ("dynamic", False), ("dynamic", True),
               ("kmeans-linear", False), ("kmeans-gauss", False), ("kmeans", False))
PTQ_BITS = (8, 6, 4)
CALIB = 256
SETTINGS = {
    "digits": {"task": {"name": "digits", "seed": 0, "batch_size": 64},
               "training": {"fp_epochs": 20, "qat_epochs": 4, "lr": 3e-3, "qat_lr": 1e-3}},
    "landmarks": {"task": {"name": "landmarks_3ddfa", "seed": 0, "batch_size": 64,
                           "n_train": 3000, "n_val": 64, "n_test": 256},
                  "model": {"name": "mobilenet_v1_3ddfa", "width": 0.25, "input_size": 64},
                  "training": {"fp_epochs": 4, "qat_epochs": 1, "lr": 3e-3, "qat_lr": 5e-4,
                               "schedule": "onecycle"}},
}
QUICK = {
    "digits": {"task": {"name": "digits", "seed": 0, "batch_size": 64},
               "training": {"fp_epochs": 1, "qat_epochs": 1}},
    "landmarks": {"task": {"name": "landmarks_3ddfa", "seed": 0, "batch_size": 32,
                           "n_train": 64, "n_val": 4, "n_test": 16},
                  "model": {"name": "mobilenet_v1_3ddfa", "width": 0.25, "input_size": 32},
                  "training": {"fp_epochs": 1, "qat_epochs": 1}},
}
QUICK_QAT = (("PACT", "pact", 8), ("TQT", "tqt", 4))
QUICK_PTQ = (("dynamic", False), ("kmeans", False))
QUICK_BITS = (8, 4)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny settings (seconds)")
    p.add_argument("--tasks", default="digits,landmarks", help="comma-separated")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--cache-dir", default=None, help="cache the generated faces here")
    args = p.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = sorted(set(args.tasks) - set(SETTINGS))
    if bad or not args.tasks:
        p.error(f"--tasks: unknown task {bad[0] if bad else '(none)'}; use digits, landmarks")
    return args


def pipeline_config(task: str, quick: bool, algorithm: str, bits: int, cache_dir=None):
    from edgeq.lab.config import PipelineConfig

    data = json.loads(json.dumps((QUICK if quick else SETTINGS)[task]))
    if task == "landmarks":
        data["task"]["cache_dir"] = cache_dir
    data["policy"] = {"uniform": {"bits": bits, "algorithm": algorithm}}
    return PipelineConfig.from_json(data)


def c_backend_available() -> bool:
    return shutil.which("gcc") is not None


def deployed_exact(path_or_graph, x: np.ndarray) -> bool | None:
    """The C program's integers == the reference backend's on ``x`` (None: no gcc)."""
    if not c_backend_available():
        return None
    from edgeq.engine.model import Model
    from edgeq.lab.pipeline import engine_outputs

    if isinstance(path_or_graph, Path):
        ref = engine_outputs(path_or_graph, x)
        return bool(np.array_equal(engine_outputs(path_or_graph, x, backend="c"), ref))
    name = path_or_graph.inputs[0]
    ref = Model(path_or_graph).run({name: x})
    got = Model(path_or_graph, backend="c").run({name: x})
    return all(np.array_equal(got[k], v) for k, v in ref.items())


def run_qat(task_name: str, args, work: Path) -> tuple[list[dict], dict]:
    """Every QAT variant through the pipeline; returns its rows and the FP row."""
    from edgeq.lab.pipeline import run_seed
    from edgeq.lab.tasks import make_task

    variants = QUICK_QAT if args.quick else QAT
    rows, fp, task = [], None, None
    for label, algorithm, bits in variants:
        cfg = pipeline_config(task_name, args.quick, algorithm, bits, args.cache_dir)
        task = task or make_task(cfg)
        out = work / f"{algorithm}{bits}"
        out.mkdir()
        start = time.perf_counter()
        res = run_seed(cfg, 0, out, progress=False, task=task)
        name = task.metric.name
        x = task.inputs("test").numpy()
        rows.append({"family": "QAT", "method": label, "bits": bits,
                     "metric": res.metrics[f"tq_{name}"], "weight_bytes": res.int_weight_bytes,
                     "act_bytes": res.int_activation_bytes, "torch_engine_exact": res.bit_exact,
                     "deployed_exact": deployed_exact(out / "model_tq.onnx", x),
                     "seconds": time.perf_counter() - start})
        if fp is None:
            fp = {"family": "FP", "method": "FP32", "bits": 32, "metric": res.metrics[f"fp_{name}"],
                  "weight_bytes": res.fp_weight_bytes, "onnx": out / "model_fp.onnx"}
    return rows, {"fp": fp, "task": task}


def run_ptq(fp_onnx: Path, task, quick: bool) -> tuple[list[dict], int]:
    from edgeq.engine import load
    from edgeq.engine.ptq import ptq
    from edgeq.engine.ptq.calibration import calibrate
    from edgeq.lab.pipeline import fused_activation_bytes, int_weight_bytes

    graph = load(fp_onnx).graph
    name, out_name = graph.inputs[0], graph.outputs[0]
    calib = {name: task.inputs("train", CALIB).numpy()}
    x = task.inputs("test").numpy()
    cal = calibrate(graph, calib, len(calib[name]), progress=False)
    rows = []
    for bits in QUICK_BITS if quick else PTQ_BITS:
        for method, per_channel in QUICK_PTQ if quick else PTQ_METHODS:
            start = time.perf_counter()
            r = ptq(graph, calib, method, bits, per_channel=per_channel, cal=cal)
            from edgeq.engine.model import Model

            out = Model(r.graph).run({name: x})[out_name] * r.graph.values[out_name].quant.eps
            metric = task.evaluate(np.asarray(out, np.float32), "test")[task.metric.name]
            rows.append({"family": "PTQ",
                         "method": method + (" per-channel" if per_channel else ""),
                         "bits": bits, "metric": metric, "weight_bytes": int_weight_bytes(r.graph),
                         "act_bytes": fused_activation_bytes(r.graph),
                         "deployed_exact": deployed_exact(r.graph, x),
                         "seconds": time.perf_counter() - start})
    # the float network's activations: the same tensors as the fused integer graph, float32
    return rows, fused_activation_bytes(r.graph, float_bytes=4)


def run_task(task_name: str, args) -> dict:
    import torch

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            qat_rows, info = run_qat(task_name, args, Path(tmp))
        finally:
            torch.set_num_threads(threads)
        task, fp = info["task"], info["fp"]
        ptq_rows, fp_act = run_ptq(fp.pop("onnx"), task, args.quick)
    fp["act_bytes"] = fp_act
    m = task.metric
    return {"metric": m.name, "label": m.label, "higher_is_better": m.higher_is_better,
            "rows": [fp, *ptq_rows, *qat_rows]}


def markdown(results: dict) -> str:
    lines = []
    for task_name, res in results.items():
        lines += [f"### {task_name} ({res['label']}, "
                  f"{'higher' if res['higher_is_better'] else 'lower'} is better)", "",
                  f"| family | method | bits | {res['label']} | weight B | act B/sample "
                  "| deployed bit-exact |", "|---|---|---:|---:|---:|---:|---|"]
        for r in res["rows"]:
            exact = {True: "yes", False: "NO", None: "n/a"}[r.get("deployed_exact")]
            if r["family"] == "FP":
                exact = "—"
            lines.append(f"| {r['family']} | {r['method']} | {r['bits']} | {r['metric']:.2f} | "
                         f"{r['weight_bytes']:,} | {r['act_bytes']:,} | {exact} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.8), squeeze=False)
    marks = {"FP": ("*", "k"), "PTQ": ("o", "tab:blue"), "QAT": ("s", "tab:red")}
    for ax, (task_name, res) in zip(axes[0], results.items(), strict=True):
        for fam, (mk, col) in marks.items():
            rs = [r for r in res["rows"] if r["family"] == fam]
            ax.scatter([r["weight_bytes"] for r in rs], [r["metric"] for r in rs], marker=mk,
                       color=col, label=fam, s=60 if fam != "PTQ" else 30, alpha=0.8)
            for r in rs:
                if fam != "PTQ" or r["method"] in ("dynamic", "kmeans"):
                    ax.annotate(f"{r['method'].split()[0]} {r['bits']}",
                                (r["weight_bytes"], r["metric"]), fontsize=7,
                                textcoords="offset points", xytext=(4, 3))
        ax.set_xscale("log")
        ax.set_xlabel("weight bytes (log)")
        ax.set_ylabel(res["label"])
        ax.set_title(f"{task_name}: PTQ vs QAT")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(results: dict, out_dir: Path, settings: dict, quick: bool,
                  seconds: float) -> str:
    """``ptq_vs_qat.json``, ``.md`` and ``.png`` in ``out_dir`` (each written to a
    temporary name, then renamed); returns the markdown table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(results)
    data = {"settings": settings, "quick": quick, "results": results, "table": md,
            "seconds": seconds}
    for name, text in (("ptq_vs_qat.json", json.dumps(data, indent=1) + "\n"),
                       ("ptq_vs_qat.md", md)):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out_dir / name)
    tmp_png = out_dir / ".ptq_vs_qat.tmp.png"
    plot(results, tmp_png)
    tmp_png.replace(out_dir / "ptq_vs_qat.png")
    return md


def merge(run_dirs: list[Path], out_dir: Path) -> str:
    """One table and plot from several runs' ``ptq_vs_qat.json`` (e.g. one task per
    process, run in parallel on a shared machine); a task in two runs is an error."""
    results, settings, quick, seconds = {}, {}, set(), 0.0
    for d in run_dirs:
        data = json.loads((Path(d) / "ptq_vs_qat.json").read_text())
        clash = sorted(set(data["results"]) & set(results))
        if clash:
            raise SystemExit(f"error: --merge: task '{clash[0]}' is in two runs")
        results.update(data["results"])
        settings.update(data["settings"])
        quick.add(data["quick"])
        seconds = max(seconds, data["seconds"])
    if len(quick) > 1:
        raise SystemExit("error: --merge: mixes --quick and real runs")
    return write_results(results, out_dir, settings, quick.pop(), seconds)


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--merge"]:  # --merge RUN_DIR... --out-dir DIR
        rest = argv[1:]
        out = Path(rest[rest.index("--out-dir") + 1]) if "--out-dir" in rest else DEFAULT_OUT
        dirs = [Path(a) for i, a in enumerate(rest)
                if a != "--out-dir" and (i == 0 or rest[i - 1] != "--out-dir")]
        print(merge(dirs, out))
        print(f"wrote {out}/ptq_vs_qat.json, ptq_vs_qat.md, ptq_vs_qat.png")
        return 0
    args = parse_args(argv)
    start = time.perf_counter()
    results = {t: run_task(t, args) for t in args.tasks}
    settings = {t: (QUICK if args.quick else SETTINGS)[t] for t in args.tasks}
    md = write_results(results, args.out_dir, settings, args.quick, time.perf_counter() - start)
    print(md)
    print(f"wrote {args.out_dir}/ptq_vs_qat.json, ptq_vs_qat.md, ptq_vs_qat.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
