"""The PTQ commands of ``edgeq``: ``ptq``, ``explore`` and ``analyse`` (docs/ptq.md).

Only argparse wiring lives here; each command imports the engine when it runs, so that
``edgeq --help`` stays fast and torch-free.
"""

from __future__ import annotations

import argparse

METHOD_HELP = "fixed | dynamic | kmeans-linear | kmeans-gauss | kmeans"


def add_ptq_commands(sub) -> None:
    p = sub.add_parser("ptq", help="post-training quantisation of a float ONNX model")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--calib", required=True, metavar="CALIB.npz",
                   help="calibration inputs keyed by input name, batch along axis 0")
    p.add_argument("--method", default="dynamic", metavar="METHOD", help=METHOD_HELP)
    p.add_argument("--bits", type=int, default=8, help="bit width, 2-16 (default 8)")
    p.add_argument("--config", metavar="CONFIG.json",
                   help="per-layer methods/bits/parameters; --method/--bits fill the rest")
    p.add_argument("--per-channel", action="store_true", help="per-channel weight FLs")
    p.add_argument("--keep-float", action="append", default=[], metavar="OP",
                   help="leave this op type (and what follows it) in float")
    p.add_argument("--eval", metavar="EVAL.npz", help="inputs plus 'labels' or 'targets'")
    p.add_argument("--out", required=True, metavar="OUT.onnx",
                   help="the integer model (edgeq dialect); its config goes to OUT.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ptq)

    e = sub.add_parser("explore", help="PTQ layer analysis and network space exploration")
    e.add_argument("model", metavar="MODEL.onnx")
    e.add_argument("--calib", required=True, metavar="CALIB.npz")
    e.add_argument("--eval", metavar="EVAL.npz",
                   help="inputs plus 'labels' or 'targets' (default: the calibration set)")
    e.add_argument("--out", required=True, metavar="DIR", help="a new directory for the report")
    e.add_argument("--bits", default="16,8,6,4", help="bit widths to explore (default 16,8,6,4)")
    e.add_argument("--methods", default="dynamic,kmeans",
                   help="weight methods compared per layer (default dynamic,kmeans)")
    budget = e.add_mutually_exclusive_group()
    budget.add_argument("--max-drop", type=float, default=1.0,
                        help="metric points the search may lose (default 1.0)")
    budget.add_argument("--max-l2", type=float, help="network output L2 budget instead")
    e.add_argument("--keep-float", action="append", default=[], metavar="OP")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_explore)

    a = sub.add_parser("analyse", help="operations and memory per layer at chosen bit widths")
    a.add_argument("model", metavar="MODEL.onnx")
    a.add_argument("--bits", type=int, help="bit width of float weights and activations")
    a.add_argument("--config", metavar="CONFIG.json", help="per-layer bit widths (PTQ config)")
    a.add_argument("--analysis", metavar="ANALYSIS.json",
                   help="a layer analysis (edgeq explore): adds the sensitivity heatmap")
    a.add_argument("--plot", metavar="DIR", help="write PNG plots to DIR")
    a.set_defaults(func=cmd_analyse)


def cmd_ptq(args: argparse.Namespace) -> int:
    from edgeq.engine.ptq.api import quantise_file
    from edgeq.engine.ptq.report import format_summary

    summary = quantise_file(args.model, args.calib, args.out, args.method, args.bits,
                            args.config, args.per_channel, tuple(args.keep_float), args.eval,
                            progress=not args.quiet)
    print(format_summary(summary))
    return 0


def cmd_analyse(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgeq.engine import load
    from edgeq.engine.analyser import analyse, format_rows, plot
    from edgeq.engine.ptq.config import PTQConfig
    from edgeq.engine.ptq.fixedpoint import check_bits
    from edgeq.errors import ConfigError

    if args.bits is not None:
        check_bits(args.bits, "--bits")
    if args.plot and not Path(args.plot).is_dir():
        raise ConfigError(f"--plot: {args.plot} is not a directory")
    analysis = None
    if args.analysis:
        from edgeq.engine.ptq.analysis import LayerAnalysis

        analysis = LayerAnalysis.load(args.analysis)
    graph = load(args.model).graph
    config = PTQConfig.load(args.config) if args.config else None
    if config is not None:
        unknown = sorted(set(config.layers) - {n.name for n in graph.nodes})
        if unknown:
            raise ConfigError(f"{args.config}: layer '{unknown[0]}' is not a node of the model")
    rows = analyse(graph, args.bits, config)
    width = f"{args.bits}-bit" if args.bits else "as stored"
    print(f"{args.model}: {len(rows)} nodes, per sample, "
          f"{'config ' + args.config if config else width}\n")
    print(format_rows(rows))
    if args.plot:
        written = plot(rows, args.plot, Path(args.model).stem)
        if analysis is not None:
            from edgeq.engine.ptq.plots import heatmap

            written.append(heatmap(analysis, f"{args.plot}/sensitivity.png"))
        print("\nwrote " + ", ".join(written))
    return 0


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    from edgeq.errors import ConfigError

    try:
        return tuple(int(b) for b in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def cmd_explore(args: argparse.Namespace) -> int:
    from edgeq.engine.ptq.workflow import explore_files

    bits = _int_list(args.bits, "--bits")
    methods = tuple(m for m in args.methods.split(",") if m)
    max_drop = None if args.max_l2 is not None else args.max_drop
    text = explore_files(args.model, args.calib, args.eval, args.out, bits, methods, max_drop,
                         args.max_l2, tuple(args.keep_float), progress=not args.quiet)
    print(text)
    return 0
