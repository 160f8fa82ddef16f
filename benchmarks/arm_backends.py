"""The C and ARM Compute Library (armcl) backends on cortex-a72, per layer and in total.

Models: MobileNetV1 3DDFA (width 1.0, 3x120x120 -> 62, random weights, 8-bit PACT F2F
with activations observed and BatchNorm statistics taken on random inputs, then F2T)
and the QuantLab Dronet fixture (``shared/fixtures/quantlab/dronet``). Variants, each
one static aarch64 binary:

- **all-C**: ``--backend c`` (the peer: edgeq's own C kernels);
- **all-ARMCL-where-possible**: ``default=armcl`` (Conv with group 1, Gemm, MatMul on
  ACL 20.08; depthwise, pools, adds and the rest fall back to C);
- **auto**: per layer the backend with the lower count in the cost table.

Cost = guest instructions retired per layer under ``qemu-aarch64 -cpu cortex-a72``
(our TCG plugin; never qemu wall time, which says nothing about a Pi). For each variant:
per-layer and total instructions, binary size, arena bytes, ACL workspace bytes, and
bit-exactness against the NumPy reference backend (Dronet also against its golden
output). Ratios are variant / all-C (below 1: fewer instructions). Instruction counts
are deterministic, so there is nothing to repeat. Writes
``benchmarks/results/arm_backends.json``.

    python benchmarks/arm_backends.py            # full run (MobileNet width 1.0, Dronet)
    python benchmarks/arm_backends.py --quick    # smoke run (width 0.25, 32 px, Dronet)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.engine.tensor_io import write_json

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "arm_backends.json"
DRONET = ROOT.parent / "shared" / "fixtures" / "quantlab" / "dronet"
VARIANTS = (("all-C", "c"), ("all-ARMCL", "default=armcl"), ("auto", "auto"))


@dataclass(frozen=True)
class Config:
    width: float = 1.0
    size: int = 120
    calibration: int = 8

    @classmethod
    def quick(cls) -> Config:
        return cls(width=0.25, size=32, calibration=2)


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mobilenet(cfg: Config):
    """(TQ graph, integer input of one image)."""
    import torch

    from edgeq.engine.model import quantise_input
    from edgeq.models import mobilenet_v1_3ddfa
    from edgeq.train.controller import observing
    from edgeq.train.f2f import Policy, f2f, unit_input_spec
    from edgeq.train.f2t import f2t
    from edgeq.train.modules import quant_modules

    torch.manual_seed(0)
    x = torch.rand(cfg.calibration, 3, cfg.size, cfg.size)
    net = mobilenet_v1_3ddfa(cfg.width)
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()
    gm, _ = f2f(net, Policy.uniform(8, "pact"), x[:1], input_spec=unit_input_spec())
    gm.train()
    with torch.no_grad(), observing(gm):
        gm(x)
    for _, m in quant_modules(gm):
        m.start()
    with torch.no_grad():
        gm(x)
    graph = f2t(gm.eval(), x[:1]).to_ir()
    v = graph.values[graph.inputs[0]]
    return graph, quantise_input(x[:1].numpy(), v.quant).astype(v.dtype)


def dronet():
    """(graph, fixture input, golden output)."""
    from edgeq.engine import load
    from edgeq.engine.tensor_io import read_text_vector

    graph = load(DRONET / "DRONETV3_ql_integerized.onnx").graph
    _, x = read_text_vector(DRONET / "input.txt")
    return graph, x.astype(np.uint8), [[435, 0]]


def measure_model(name: str, graph, x, golden=None) -> dict:
    """Cost table, then each variant: build, bit-exactness, sizes, per-layer counts."""
    from edgeq.engine.backends.armcl import compile_mixed, cost
    from edgeq.engine.backends.reference.executor import run_graph

    feeds = {graph.inputs[0]: x}
    progress(f"{name}: cost table (all-C and all-ARMCL builds, instruction counts)")
    table = cost.measure(graph, feeds, model=name)
    want = run_graph(graph, feeds)
    variants = {}
    with tempfile.TemporaryDirectory(prefix="edgeq-armbench-") as tmp:
        for label, spec in VARIANTS:
            progress(f"{name}: {label}")
            spec_obj = cost.auto_spec(table) if spec == "auto" else spec
            cm = compile_mixed(graph, Path(tmp) / label, spec_obj)
            got = cm.run(feeds)
            exact = all(np.array_equal(got[k], want[k]) for k in graph.outputs)
            if golden is not None:
                exact = exact and next(iter(got.values())).tolist() == golden
            layers = cost.layer_instructions(cm, feeds)
            variants[label] = {
                "spec": str(cm.spec), "bit_exact": bool(exact),
                "armcl_layers": len(cm.armcl_layers), "layout_conversions": cm.conversions,
                "binary_bytes": cm.binary_bytes, "arena_bytes": cm.arena_bytes,
                **_acl(cm, feeds),
                "instructions": sum(n for *_, n in layers),
                "layers": [{"node": nd, "op": op, "backend": cm.assignment.get(nd, "c"),
                            "instructions": n} for nd, op, n in layers]}
    base = variants["all-C"]["instructions"]
    for v in variants.values():
        v["ratio_to_all_c"] = v["instructions"] / base if base else None
    return {"cost_table": table.to_json(), "variants": variants}


def _acl(cm, feeds) -> dict:
    if not cm.armcl_layers:
        return {"acl_workspace_bytes": 0, "acl_gemms": 0, "acl_a_in_place": 0}
    r = cm.acl_report(feeds)
    return {"acl_workspace_bytes": r["workspace_bytes"], "acl_gemms": r["gemms"],
            "acl_a_in_place": r["a_in_place"]}


def format_model(name: str, data: dict) -> str:
    lines = [f"== {name} (cortex-a72, instructions under qemu; ratio = variant / all-C)",
             f"{'variant':10} {'Minsn':>9} {'ratio':>6} {'armcl':>5} {'conv':>4} "
             f"{'binary KB':>9} {'arena KB':>8} {'ACL ws KB':>9} {'A in place':>10}  exact"]
    for label, v in data["variants"].items():
        lines.append(f"{label:10} {v['instructions'] / 1e6:9.2f} {v['ratio_to_all_c']:6.2f} "
                     f"{v['armcl_layers']:5d} {v['layout_conversions']:4d} "
                     f"{v['binary_bytes'] / 1024:9.0f} {v['arena_bytes'] / 1024:8.0f} "
                     f"{v['acl_workspace_bytes'] / 1024:9.0f} "
                     f"{v['acl_a_in_place']:4d} of {v['acl_gemms']:3d}  {v['bit_exact']}")
    rows = data["cost_table"]["layers"]
    lines.append(f"per layer (kinsn): {'node':24} {'op':14} {'c':>10} {'armcl':>10} best")
    for r in rows:
        if r["armcl"] is None and r["c"] < 1000:
            continue
        a = f"{r['armcl'] / 1e3:10.1f}" if r["armcl"] is not None else f"{'-':>10}"
        lines.append(f"{'':19}{r['node'][:24]:24} {r['op'][:14]:14} {r['c'] / 1e3:10.1f} {a} "
                     f"{r['best']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny MobileNet")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    args = parser.parse_args(argv)
    from edgeq.engine.backends.armcl import missing_acl

    missing = missing_acl()
    if missing:
        print(f"error: ARM Compute Library toolchain missing: {', '.join(missing)} "
              "(scripts/install-arm-toolchain.sh)", file=sys.stderr)
        return 1
    cfg = Config.quick() if args.quick else Config()
    progress(f"MobileNetV1 3DDFA width {cfg.width}, {cfg.size} px: F2F + F2T")
    g, x = mobilenet(cfg)
    results = {"config": {"width": cfg.width, "size": cfg.size, "quick": args.quick},
               "metric": "guest instructions retired, qemu-aarch64 -cpu cortex-a72 (TCG plugin)",
               "models": {}}
    name = f"mobilenet_v1_3ddfa_w{cfg.width}"
    results["models"][name] = measure_model(name, g, x)
    print(format_model(name, results["models"][name]), flush=True)
    dg, dx, golden = dronet()
    results["models"]["dronet"] = measure_model("dronet", dg, dx, golden)
    print(format_model("dronet", results["models"]["dronet"]), flush=True)
    write_json(args.out, results)
    progress(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
