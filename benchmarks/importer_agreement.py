"""Agreement of edgeq's third-party importers with the tools that define those formats.

- **onnxruntime QDQ / QOperator** (32 files: DigitsCNN, DigitsResNet, DigitsConcatNet,
  MobileNetV1-3DDFA width 0.25; QDQ and QOperator; U8S8 and S8S8; per tensor and per
  channel, written by
  onnxruntime's ``quantize_static``): edgeq's integer IR run by the reference backend vs
  onnxruntime (CPU, default optimisation). The named peer in the same run is the "float
  reading" of the QDQ files: onnxruntime itself with graph optimisations off
  (DequantizeLinear -> float op -> QuantizeLinear).
- **NEMO**: the two DORY-example networks in ``shared/fixtures/nemo`` against their
  golden outputs.

Prints a table (exact-match percentage of output values and the largest difference in
output LSBs) and writes ``benchmarks/results/importer_agreement.json``.

    python benchmarks/importer_agreement.py              # 64 random inputs per file
    python benchmarks/importer_agreement.py --inputs 8   # quicker
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.engine.onnx.qdq_builder import agreement, has_vnni, quantise_all  # noqa: E402


def _nemo_rows() -> list[dict]:
    from edgeq.engine import load
    from edgeq.engine.backends.reference.executor import run_graph

    def vector(path):
        vals = [ln.strip().rstrip("\\").rstrip(",") for ln in open(path)]
        return np.array([int(float(v)) for v in vals if v and not v.startswith("#")])

    rows = []
    for name in ("Residual_connection_test_1", "dronet_2.0"):
        folder = ROOT.parent / "shared" / "fixtures" / "nemo" / name
        if not folder.exists():
            continue
        graph = load(folder / "model_int.onnx").graph
        seen: dict = {}
        x = vector(folder / "input.txt").reshape(1, 1, 200, 200).astype(np.uint8)
        run_graph(graph, {graph.inputs[0]: x}, observe=seen.__setitem__)
        last = [n for n in graph.nodes if n.op == "MatMul"][-1].outputs[0]
        got, want = seen[last].ravel(), vector(folder / "output.txt")
        rows.append({"file": f"nemo/{name}", "exact": float(np.mean(got == want)),
                     "max_lsb": int(np.abs(got - want).max()), "n": int(want.size)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=64, help="random inputs per file")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/importer_agreement.json"))
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = quantise_all(Path(tmp))
        for (name, fmt, act, pc), path in files.items():
            exact, worst, n = agreement(path, n_inputs=args.inputs)
            row = {"file": f"{name} {fmt} {act}S8 {'per-channel' if pc else 'per-tensor'}",
                   "exact": exact, "max_lsb": worst, "n": n}
            if fmt == "QDQ":
                fe, fw, _ = agreement(path, n_inputs=args.inputs, peer="float")
                row.update(float_reading_exact=fe, float_reading_max_lsb=fw)
            rows.append(row)
    rows += _nemo_rows()
    print(f"{'file':40s} {'edgeq exact':>12s} {'max LSB':>8s} {'float-reading exact':>20s}"
          f" {'max LSB':>8s} {'values':>7s}")
    for r in rows:
        fr = (f"{100 * r['float_reading_exact']:19.2f}% {r['float_reading_max_lsb']:8d}"
              if "float_reading_exact" in r else f"{'-':>20s} {'-':>8s}")
        print(f"{r['file']:40s} {100 * r['exact']:11.2f}% {r['max_lsb']:8d} {fr} {r['n']:7d}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"onnxruntime": onnxruntime.__version__, "machine": platform.machine(),
            "vnni": has_vnni(), "inputs_per_file": args.inputs}
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    tmp_out.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
