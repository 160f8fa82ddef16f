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


def cmd_ptq(args: argparse.Namespace) -> int:
    from edgeq.engine.ptq.api import quantise_file
    from edgeq.engine.ptq.report import format_summary

    summary = quantise_file(args.model, args.calib, args.out, args.method, args.bits,
                            args.config, args.per_channel, tuple(args.keep_float), args.eval,
                            progress=not args.quiet)
    print(format_summary(summary))
    return 0
