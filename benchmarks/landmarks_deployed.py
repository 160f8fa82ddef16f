"""NME of a landmarks demo run's int8 model deployed as a C program, on each target.

Reads a finished ``edgeq demo --task landmarks`` (or ``edgeq quantize``) run directory,
regenerates its test faces from ``config.json``, compiles ``model_tq.onnx`` with the
3DDFA post-processing in C (``post.c`` + ``kernels/eq_landmarks.c``) for every target
(``host``: gcc; ``cortex-a72``: the aarch64 cross compiler, run under ``qemu-aarch64 -cpu
cortex-a72``) and runs the whole test set through it. The NME is computed from the
points the program itself wrote (de-whitening and the 68-point reconstruction on the
target), beside the engine's (NumPy reference backend) NME of the same model and the
run's FP NME; ``bit_exact`` says whether the program's integer outputs equal the
reference's.

    python benchmarks/landmarks_deployed.py edgeq-demo-landmarks
    python benchmarks/landmarks_deployed.py RUN_DIR --targets cortex-a72 --out R.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from edgeq.engine.tensor_io import write_json
from edgeq.errors import ConfigError, EdgeqError

DEFAULT_OUT = Path(__file__).parent / "results" / "landmarks_deployed.json"
TARGETS = ("host", "cortex-a72")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    return p.parse_args(argv)


def _run_files(run: Path) -> dict:
    """The files a finished landmarks run must hold (validated before any work)."""
    files = {k: run / n for k, n in (("config", "config.json"), ("model", "model_tq.onnx"),
                                      ("whitening", "whitening.json"),
                                      ("summary", "summary.json"))}
    for path in files.values():
        if not path.is_file():
            raise ConfigError(f"{path}: missing (not a finished landmarks run directory?)")
    return files


def measure(run: Path, targets: list[str]) -> dict:
    from edgeq.data.face3d import ParamWhitening, nme_report
    from edgeq.engine import load
    from edgeq.engine.backends.c import compile_cached
    from edgeq.engine.backends.c.landmarks import LandmarkPost, run_landmarks
    from edgeq.lab.config import PipelineConfig
    from edgeq.lab.pipeline import deployed_skip_reason, engine_outputs
    from edgeq.lab.tasks import make_task

    files = _run_files(run)
    config = PipelineConfig.load(files["config"])
    if config.task.name != "landmarks_3ddfa":
        raise ConfigError(f"{files['config']}: task.name is {config.task.name!r}, "
                          "not 'landmarks_3ddfa'")
    summary = json.loads(files["summary"].read_text())
    skipped = {t: deployed_skip_reason(t) for t in targets}
    model = load(files["model"])
    post = LandmarkPost.for_graph(model.graph, ParamWhitening.load(files["whitening"]))
    task = make_task(config)
    task.load(progress=False)
    faces, x = task.faces["test"], task.inputs("test").numpy()
    ref = engine_outputs(files["model"], x)
    eps = np.asarray(model.graph.meta["eps"][model.outputs[0].name], np.float64)
    result = {"run_dir": str(run), "n_test": len(x), "fp_nme": summary.get("fp_nme"),
              "engine": task.evaluate(ref * eps, "test"), "targets": {},
              "baselines": task.baselines()}
    for target in targets:
        if skipped[target] is not None:
            result["targets"][target] = {"skipped": skipped[target]}
            continue
        compiled = compile_cached(model.graph, target, batch=len(x), post=post)
        cpu0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        out, pts = run_landmarks(compiled, x)
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["targets"][target] = {
            "command": compiled.command()[:3] if target != "host" else ["run_model"],
            "bit_exact": bool(np.array_equal(out, ref)),
            **nme_report(pts, faces.landmarks, faces.boxes, faces.yaw),
            "run_wall_s": time.perf_counter() - t0,
            "run_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)}
    return result


def format_table(result: dict) -> str:
    cols = ("nme", "nme_yaw_0_30", "nme_yaw_30_60", "nme_yaw_60_90", "nme_bins_mean")
    lines = [f"{'int8 model_tq.onnx on':34s} {'NME %':>7s} {'0-30':>7s} {'30-60':>7s} "
             f"{'60-90':>7s} {'bins':>7s}  bit-exact"]
    e = result["engine"]
    lines.append(f"{'edgeq engine (NumPy reference)':34s} "
                 + " ".join(f"{e[c]:7.2f}" for c in cols) + "  (reference)")
    for target, r in result["targets"].items():
        label = "C program, host (gcc)" if target == "host" else \
            "C program, cortex-a72 (qemu)"
        if "skipped" in r:
            lines.append(f"{label:34s} skipped: {r['skipped']}")
            continue
        lines.append(f"{label:34s} " + " ".join(f"{r[c]:7.2f}" for c in cols)
                     + f"  {'yes' if r['bit_exact'] else 'NO'}")
    for key, label in (("mean", "baseline: mean parameters"),
                       ("oracle_pose", "baseline: true pose, α=0")):
        b = result["baselines"][key]
        lines.append(f"{label:34s} " + " ".join(f"{b[c]:7.2f}" for c in cols))
    if result["fp_nme"] is not None:
        lines.append(f"FP NME of the run {result['fp_nme']:.2f}; {result['n_test']} test faces; "
                     "points computed by the program (post-processing in C)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = measure(args.run_dir, args.targets)
    except EdgeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["table"] = format_table(result)
    write_json(args.out, result)
    print(result["table"])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
