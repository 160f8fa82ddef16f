"""Synthetic-face generation speed at 64 and 120 px, against decoding the same images.

The named peer is what a real 3DDFA training loader does per sample: decode an
already-cropped JPEG (``train_aug_120x120/*.jpg``) with Pillow. The same rendered images
are JPEG-encoded in memory first (not timed), then decoded; generation and decoding are
timed alternately, repeated, and the best of each is kept, so that load from other
processes on a shared machine hits both alike. Times are CPU seconds of this process
(``time.process_time``), single-threaded BLAS.

Prints a table (images/s, ms per image, ratio generation/decoding) and writes JSON to
``benchmarks/results/face3d_generate.json``.

    python benchmarks/face3d_generate.py           # 2048 images at 64 px, 512 at 120 px
    python benchmarks/face3d_generate.py --quick   # smoke run
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from edgeq.data.face3d import MorphableModel, generate  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "face3d_generate.json"


def cpu_time(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def jpeg_bytes(images: np.ndarray) -> list[bytes]:
    out = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im.transpose(1, 2, 0)).save(buf, format="JPEG", quality=95)
        out.append(buf.getvalue())
    return out


def decode_all(blobs: list[bytes]) -> None:
    for b in blobs:
        np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))


def measure(size: int, n: int, repeats: int, mm: MorphableModel) -> dict:
    generate(8, size=size, mm=mm, progress=False)  # build the renderer's point cloud
    blobs = jpeg_bytes(generate(n, size=size, seed=99, mm=mm, progress=False).images)
    gen, dec = [], []
    for r in range(repeats):
        gen.append(cpu_time(lambda r=r: generate(n, size=size, seed=r, mm=mm,
                                                 progress=False)))
        dec.append(cpu_time(lambda: decode_all(blobs)))
    g, d = min(gen) / n, min(dec) / n
    return {"size": size, "n": n, "generate_ms": 1e3 * g, "generate_per_s": 1 / g,
            "jpeg_decode_ms": 1e3 * d, "jpeg_decode_per_s": 1 / d, "ratio": g / d}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few images, 1 repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=str(RESULTS), metavar="OUT.json")
    args = ap.parse_args(argv)
    mm = MorphableModel.synthetic()
    plan = [(64, 32), (120, 16)] if args.quick else [(64, 2048), (120, 512)]
    repeats = 1 if args.quick else args.repeats
    rows = [measure(size, n, repeats, mm) for size, n in plan]
    print(f"{'size':>5} {'n':>6} {'generate img/s':>15} {'ms/img':>7} "
          f"{'peer: JPEG decode img/s':>24} {'ms/img':>7} {'gen/decode':>11}")
    for r in rows:
        print(f"{r['size']:>5} {r['n']:>6} {r['generate_per_s']:>15.0f} "
              f"{r['generate_ms']:>7.2f} {r['jpeg_decode_per_s']:>24.0f} "
              f"{r['jpeg_decode_ms']:>7.3f} {r['ratio']:>10.1f}x")
    r64 = rows[0]
    print(f"50,000 images at 64 px: {50000 * r64['generate_ms'] / 1e3:.0f} CPU s")
    out = {"rows": rows, "python": sys.version.split()[0], "machine": platform.machine(),
           "quick": args.quick}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
