"""The ``edgeq`` command: ``run``, ``inspect``, ``bench``, ``demo``, ``quantize``, ``f2t-report``,
``experiment``, ``experiment-report`` and more (``edgeq --help``).

Every :class:`~edgeq.errors.EdgeqError` becomes ``error: <message>`` on stderr and exit
status 1; usage errors exit with 2 (argparse). This module imports no torch and no
engine code at import time: each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from edgeq import __version__
from edgeq.errors import EdgeqError

SHOW_VALUES = 10  # values printed per output


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeq", description="From quantisation-aware training to integer-only programs."
    )
    parser.add_argument("--version", action="version", version=f"edgeq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a model on input files")
    run.add_argument("model", metavar="MODEL.onnx")
    run.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="an input: NAME=FILE.npy, NAME=FILE.txt (QuantLab/DORY text vector) or FILE",
    )
    run.add_argument(
        "--layout",
        choices=("chw", "hwc"),
        default="chw",
        help="channel order of multi-channel text vectors (QuantLab/DORY files use hwc)",
    )
    run.add_argument("--out", metavar="OUT.npz", help="also write the outputs to an .npz")
    run.add_argument("--backend", default="reference", metavar="SPEC",
                     help="reference (default), c, c:cortex-a72, or rules such as "
                          "'default=c,Conv=reference' (op type or node name, first match wins)")
    _input_range_flags(run)
    run.set_defaults(func=cmd_run)

    comp = sub.add_parser("compile", help="generate and build a C program for a model")
    comp.add_argument("model", metavar="MODEL.onnx")
    comp.add_argument("--target", choices=("host", "cortex-a72"), default="host",
                      help="host (gcc -march=native) or cortex-a72 (aarch64 cross, static)")
    comp.add_argument("--out", required=True, metavar="DIR", help="directory of the C project")
    comp.add_argument("--backend", default="c", metavar="SPEC",
                      help="c (default); with --target cortex-a72 also armcl rules such as "
                           "'default=armcl' or 'default=c,Conv=armcl', or auto (per layer the "
                           "backend with the lower instruction count)")
    comp.add_argument("--cost-table", metavar="FILE.json",
                      help="--backend auto: read the per-layer cost table from FILE.json, or "
                           "measure it and write it there when FILE.json does not exist")
    comp.add_argument("--batch", type=int, default=1, metavar="N", help="images per run")
    comp.add_argument("--threads", type=int, default=1, metavar="T",
                      help="POSIX threads per convolution (default 1)")
    comp.add_argument("--force", action="store_true", help="replace a non-empty DIR")
    comp.add_argument("--task", choices=("landmarks_3ddfa",),
                      help="add the task's post-processing in C: landmarks_3ddfa de-whitens "
                           "the 62 parameters and writes the 68 points (run_model --landmarks)")
    comp.add_argument("--whitening", metavar="WHITENING.json",
                      help="with --task landmarks_3ddfa (default: whitening.json beside MODEL)")
    _input_range_flags(comp)
    comp.set_defaults(func=cmd_compile)

    inspect = sub.add_parser("inspect", help="print the per-layer table of a model")
    inspect.add_argument("model", metavar="MODEL.onnx")
    _input_range_flags(inspect)
    inspect.set_defaults(func=cmd_inspect)

    bench = sub.add_parser("bench", help="time a model on a backend: latency, images/s, layers")
    bench.add_argument("model", metavar="MODEL.onnx")
    bench.add_argument("--backend", choices=("reference", "c", "ort"), default="c",
                       help="reference (NumPy spec), c (generated C) or ort (onnxruntime)")
    bench.add_argument("--batch", type=int, default=1, metavar="B", help="images per run")
    bench.add_argument("--threads", type=int, default=1, metavar="T", help="threads")
    bench.add_argument("--repeat", type=int, default=20, metavar="N", help="timed runs")
    bench.add_argument("--per-layer", action="store_true",
                       help="per-layer table: time, MACs, GMAC/s, share (c and reference)")
    bench.add_argument("--target", choices=("host", "cortex-a72"), default="host",
                       help="host: wall time; cortex-a72: instructions per layer of c and "
                            "armcl side by side, counted under qemu")
    bench.add_argument("--cost-table", metavar="FILE.json",
                       help="--target cortex-a72: also write the cost table as JSON")
    _input_range_flags(bench)
    bench.set_defaults(func=cmd_bench)

    demo = sub.add_parser(
        "demo", help="end to end on a built-in task: FP -> 8-bit PACT QAT -> integer engine")
    demo.add_argument("--task", choices=("digits", "landmarks"), default="digits",
                      help="digits: bundled 8x8 digits (~10 s); landmarks: 3DDFA landmarks "
                           "on freshly generated synthetic faces (<= 10 min)")
    demo.add_argument("--out", metavar="DIR",
                      help="output directory (default: edgeq-demo, edgeq-demo-landmarks)")
    _pipeline_flags(demo)
    demo.set_defaults(func=cmd_demo)

    quantize = sub.add_parser("quantize", help="run the pipeline a JSON config describes")
    quantize.add_argument("config", metavar="CONFIG.json")
    quantize.add_argument("--out", metavar="DIR", help="output directory (default: the config's)")
    _pipeline_flags(quantize)
    quantize.set_defaults(func=cmd_quantize)

    report = sub.add_parser("f2t-report", help="FQ vs TQ fidelity of a finished run, per layer")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--split", choices=("train", "val", "test"), default="test")
    report.add_argument("--json", metavar="OUT.json", help="also write the report as JSON")
    report.set_defaults(func=cmd_f2t_report)

    from edgeq.cli_ptq import add_ptq_commands  # argparse only: imports no engine code

    add_ptq_commands(sub)

    from edgeq.lab.experiment.commands import add_experiment_commands  # argparse only

    add_experiment_commands(sub)

    marks = sub.add_parser("landmarks", help="68 facial landmarks of a face image (3DDFA app)")
    marks.add_argument("model", metavar="MODEL.onnx", help="a 62-parameter 3DDFA network; "
                       "its whitening.json must sit beside it (or give --whitening)")
    marks.add_argument("image", metavar="IMAGE")
    marks.add_argument("--box", metavar="X0,Y0,X1,Y1",
                       help="face detector box (3DDFA's ROI rule); default: whole image")
    marks.add_argument("--backend", choices=("reference", "c", "c:cortex-a72"),
                       default="reference", help="reference (NumPy), c (generated C, host) "
                       "or c:cortex-a72 (under qemu-aarch64); C runs the post-processing too")
    marks.add_argument("--whitening", metavar="WHITENING.json")
    marks.add_argument("--out", required=True, metavar="ANNOTATED.png")
    marks.set_defaults(func=cmd_landmarks)
    return parser


def _input_range_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "integer input (QuantLab/DORY files carry no input precision; default: a DORY "
        "config*.json beside the model, else unsigned 8 bit)")
    group.add_argument("--input-bits", type=int, metavar="B", help="input bit width")
    group.add_argument("--signed-input", action="store_true", help="the input is signed")


def _input_range(args: argparse.Namespace):
    if args.input_bits is None and not args.signed_input:
        return None
    from edgeq.numerics import IntRange

    return IntRange.from_bits(args.input_bits or 8, signed=args.signed_input)


def _pipeline_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="replace existing results")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


# -- formatting ---------------------------------------------------------------------------


def format_values(array: np.ndarray, limit: int = SHOW_VALUES) -> str:
    """The first ``limit`` values, integers as integers (``435, 0``)."""
    flat = np.ravel(array)
    if np.issubdtype(flat.dtype, np.integer) or flat.dtype == np.bool_:
        shown = [str(int(v)) for v in flat[:limit]]
    else:
        shown = [_float_str(float(v)) for v in flat[:limit]]
    more = f", ... ({flat.size} values)" if flat.size > limit else ""
    return ", ".join(shown) + more


def _float_str(v: float) -> str:
    # integers carried in floats (QuantLab/DORY outputs) print in full, not as 1.23457e+06
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return f"{v:.6g}"


def describe_output(name: str, array: np.ndarray) -> str:
    return f"{name}: shape {list(array.shape)} {array.dtype.name}\n  {format_values(array)}"


# -- commands ---------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from edgeq.engine import load
    from edgeq.engine.tensor_io import load_input, write_npz

    model = load(args.model, input_range=_input_range(args), backend=args.backend)
    names = [i.name for i in model.inputs]
    feeds: dict[str, np.ndarray] = {}
    for spec in args.input:
        name, array = load_input(spec, args.layout, names)
        if name in feeds:
            raise EdgeqError(f"input '{name}' is given twice")
        feeds[name] = array
    outputs = model.run(feeds)
    for name, array in outputs.items():
        print(describe_output(name, np.asarray(array)))
    if args.out:
        write_npz(args.out, {k: np.asarray(v) for k, v in outputs.items()})
        print(f"wrote {args.out}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from edgeq.engine import load
    from edgeq.engine.analysis import format_table, layer_table, precision_of

    model = load(args.model, input_range=_input_range(args))
    graph = model.graph
    print(
        f"model {args.model}: graph '{graph.name}', opset {graph.opset}, {len(graph.nodes)} nodes"
    )
    for kind, names in (("input ", graph.inputs), ("output", graph.outputs)):
        for name in names:
            v = graph.values[name]
            print(f"  {kind} {name}: {v.shape_str()} {precision_of(v)}")
    graph = _with_bounds(graph)
    print()
    print(format_table(layer_table(graph)))
    return 0


def _with_bounds(graph):
    """The graph with proven accumulator bounds, or as it is (with a note) when unprovable."""
    from edgeq.engine.passes.ranges import prove_ranges
    from edgeq.errors import RangeError

    try:
        return prove_ranges(graph)
    except RangeError as exc:
        print(f"accumulator bounds: not proven ({exc})")
        return graph


def cmd_compile(args: argparse.Namespace) -> int:
    from edgeq.engine import load
    from edgeq.engine.backends.c import compile_model

    if args.backend.strip() == "auto" or "armcl" in args.backend:
        if args.task is not None:
            raise EdgeqError(f"compile: --task {args.task} needs --backend c "
                             f"(the task's post-processing is a C kernel), not '{args.backend}'")
        return _compile_armcl(args)
    model = load(args.model, input_range=_input_range(args), backend=args.backend)
    others = sorted({b for b in model._assignment.values() if b.split(":")[0] != "c"})
    if others:
        node = next(n for n, b in model._assignment.items() if b in others)
        raise EdgeqError(f"compile: node '{node}' is assigned to backend '{others[0]}'; "
                         "a compiled program runs only the c backend")
    post = _compile_post(args, model)
    cm = compile_model(model.graph, args.out, target=args.target, batch=args.batch,
                       threads=args.threads, force=args.force, post=post)
    p = cm.plan
    print(f"wrote {args.out}: {len(cm.graph.nodes)} nodes, target {args.target}, "
          f"batch {args.batch}")
    if cm.loop is not None:
        print(f"the batch runs sample by sample: arena {cm.arena_bytes} bytes = {cm.contexts} "
              f"x {p.arena_bytes} (one sample per thread), lower bound {p.lower_bound} bytes "
              f"a sample (ratio {p.ratio:.3f})")
    else:
        print(f"arena {p.arena_bytes} bytes, lower bound {p.lower_bound} bytes "
              f"(ratio {p.ratio:.3f})")
    runner = " ".join([*cm.target.runner, str(cm.binary)])
    extra = " [--landmarks PTS.npy [--roi X0,Y0,X1,Y1]]" if post is not None else ""
    print(f"run: {runner} IN.npy OUT.npy [--repeat N] [--per-layer]{extra}")
    return 0


def _compile_armcl(args: argparse.Namespace) -> int:
    """compile with armcl layers (mixed c/armcl, or auto): edgeq.engine.backends.armcl."""
    from edgeq.engine.bench import compile_armcl

    cm = compile_armcl(args.model, args.out, args.backend, target=args.target, batch=args.batch,
                       force=args.force, cost_table=args.cost_table,
                       input_range=_input_range(args))
    p = cm.plan
    print(f"wrote {args.out}: {len(cm.graph.nodes)} nodes, target {args.target}, "
          f"batch {args.batch}, backend {cm.spec}")
    print(f"{len(cm.armcl_layers)} layers on armcl, "
          f"{sum(b == 'c' for b in cm.assignment.values())} on c, "
          f"{cm.conversions} layout conversions")
    print(f"arena {p.arena_bytes} bytes, lower bound {p.lower_bound} bytes "
          f"(ratio {p.ratio:.3f}); binary {cm.binary_bytes} bytes")
    if cm.armcl_layers:  # ACL's heap, measured by one run on a random input
        from edgeq.engine.bench import bench_input

        ws = cm.workspace_bytes(bench_input(cm.graph, args.batch))
        print(f"ACL workspace {ws} bytes; arena + workspace {p.arena_bytes + ws} bytes")
    runner = " ".join([*cm.target.runner, str(cm.binary)])
    print(f"run: {runner} IN.npy OUT.npy [--repeat N] [--per-layer]")
    return 0


def _compile_post(args: argparse.Namespace, model):
    """The task's C post-processing for ``edgeq compile --task`` (None without --task)."""
    from pathlib import Path

    if args.task is None:
        if args.whitening is not None:
            raise EdgeqError("--whitening needs --task landmarks_3ddfa")
        return None
    from edgeq.data.face3d import WHITENING_FILE, ParamWhitening
    from edgeq.engine.backends.c.landmarks import LandmarkPost

    path = args.whitening or Path(args.model).parent / WHITENING_FILE
    return LandmarkPost.for_graph(model.graph, ParamWhitening.load(path), source=args.model)


def cmd_bench(args: argparse.Namespace) -> int:
    from edgeq.engine.bench import bench, format_result

    if args.target != "host":
        from edgeq.engine.bench import bench_target

        print(bench_target(args.model, args.target, batch=args.batch, per_layer=args.per_layer,
                           cost_table=args.cost_table, input_range=_input_range(args)))
        return 0
    result = bench(args.model, args.backend, batch=args.batch, threads=args.threads,
                   repeat=args.repeat, per_layer=args.per_layer,
                   input_range=_input_range(args))
    print(format_result(result, args.model))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edgeq.lab.config import demo_config
    from edgeq.lab.tasks import DEMO_TASKS

    out = args.out or ("edgeq-demo" if args.task == "digits" else f"edgeq-demo-{args.task}")
    return _run_pipeline(demo_config(out, DEMO_TASKS[args.task]), args)


def cmd_quantize(args: argparse.Namespace) -> int:
    from edgeq.lab.config import PipelineConfig

    return _run_pipeline(PipelineConfig.load(args.config), args)


def _run_pipeline(config, args: argparse.Namespace) -> int:
    from edgeq.lab.pipeline import format_table, run_pipeline
    from edgeq.lab.tasks import make_task

    out = getattr(args, "out", None) or config.output_dir
    summary = run_pipeline(config, force=args.force, progress=not args.quiet, out_dir=out)
    print(format_table(summary, make_task(config)))
    extra = "".join(f", {name}" for name in summary.get("artefacts", []))
    print(f"\nwrote {out}/ (summary.json, table.txt, fidelity.txt, ONNX files{extra})")
    return 0


def cmd_f2t_report(args: argparse.Namespace) -> int:
    import json

    from edgeq.engine.tensor_io import write_atomic
    from edgeq.lab.pipeline import fidelity_of_run

    report = fidelity_of_run(args.run_dir, args.split)
    print(report.format())
    if args.json:
        text = (json.dumps(report.to_json(), indent=2) + "\n").encode()
        write_atomic(args.json, lambda f: f.write(text))
        print(f"wrote {args.json}")
    return 0


def cmd_landmarks(args: argparse.Namespace) -> int:
    from edgeq.apps.landmarks import run_cli

    run_cli(args.model, args.image, args.out, box=args.box, backend=args.backend,
            whitening=args.whitening)
    print(f"wrote {args.out} (68 landmarks)")
    return 0


# -- entry point ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) and usage errors (2)
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except EdgeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (Exception, RecursionError, MemoryError) as exc:  # last resort: still one line
        print(f"error: edgeq {args.command} {_subject(args)}: unexpected "
              f"{type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
        return 1


def _subject(args: argparse.Namespace) -> str:
    """The file or directory a command works on, for the last-resort error line."""
    for key in ("model", "config", "design", "run_dir", "out"):
        if getattr(args, key, None):
            return str(getattr(args, key))
    return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "(no message)"


if __name__ == "__main__":
    sys.exit(main())
