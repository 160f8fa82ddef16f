"""Is the synthetic 3DDFA task learnable? A small CNN against the two baselines.

Trains a 6-layer plain CNN (conv-BN-ReLU, 32..256 channels, global average pool, FC 62)
on freshly generated 64 px faces with the normalised-parameter MSE (3DDFA's PDC loss),
and reports 3DDFA's NME (percent; per yaw bin and the unweighted bin mean) on a
held-out set next to the named peers measured on the same set: the mean-parameter
baseline (predict the training mean for every face) and the oracle-pose baseline (the
true pose with zero shape and expression). A learnable task puts the CNN far below the
mean baseline. Single-threaded; writes JSON to ``benchmarks/results/face3d_sanity_cnn.json``.

    python benchmarks/face3d_sanity_cnn.py           # 16384 train / 1024 test, 6 epochs
    python benchmarks/face3d_sanity_cnn.py --quick   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from edgeq.data.face3d import (
    MorphableModel,
    ParamWhitening,
    baseline_mean_params,
    baseline_oracle_pose,
    generate,
    nme_report,
    normalise_images,
    reconstruct_landmarks,
)

RESULTS = Path(__file__).parent / "results" / "face3d_sanity_cnn.json"


def small_cnn() -> nn.Module:
    def block(i, o, s):
        return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU())

    return nn.Sequential(block(3, 32, 2), block(32, 64, 2), block(64, 64, 1),
                         block(64, 128, 2), block(128, 128, 1), block(128, 256, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 62))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--train", type=int, default=16384)
    ap.add_argument("--test", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--json", default=str(RESULTS), metavar="OUT.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.train, args.test, args.epochs = 256, 64, 1
    torch.set_num_threads(1)
    torch.manual_seed(0)
    mm = MorphableModel.synthetic()
    t0 = time.time()
    train = generate(args.train, 64, seed=1, mm=mm, progress=not args.quick)
    test = generate(args.test, 64, seed=2, mm=mm, progress=False)
    gen_s = time.time() - t0
    wh = ParamWhitening.fit(train.params)
    x, y = torch.from_numpy(normalise_images(train.images)), torch.from_numpy(
        wh.whiten(train.params))
    xt = torch.from_numpy(normalise_images(test.images))
    net = small_cnn()
    batch = 128
    steps = args.epochs * max(1, len(x) // batch)
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    t0 = time.time()
    for _ in range(args.epochs):
        net.train()
        perm = torch.randperm(len(x))
        for i in range(0, max(1, len(x) - batch + 1), batch):
            idx = perm[i:i + batch]
            loss = ((net(x[idx]) - y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.time() - t0
    net.eval()
    with torch.no_grad():
        out = torch.cat([net(xt[i:i + 256]) for i in range(0, len(xt), 256)]).numpy()
    pred = reconstruct_landmarks(wh.dewhiten(out), mm, 64)
    rows = {"small CNN": nme_report(pred, test.landmarks, test.boxes, test.yaw),
            "peer: mean parameters": baseline_mean_params(train, test, mm),
            "peer: oracle pose, alpha=0": baseline_oracle_pose(test, mm)}
    keys = ("nme_yaw_0_30", "nme_yaw_30_60", "nme_yaw_60_90", "nme_bins_mean", "nme")
    print(f"{'NME %':<28}{'yaw 0-30':>9}{'30-60':>8}{'60-90':>8}{'bins mean':>10}{'all':>7}")
    for name, rep in rows.items():
        print(f"{name:<28}" + "".join(f"{rep[k]:>{w}.2f}" for k, w in zip(
            keys, (9, 8, 8, 10, 7), strict=True)))
    ratio = rows["small CNN"]["nme_bins_mean"] / rows["peer: mean parameters"]["nme_bins_mean"]
    print(f"CNN / mean baseline: {ratio:.2f}  ({args.train} train images, {args.epochs} "
          f"epochs; generation {gen_s:.0f} s, training {train_s:.0f} s wall)")
    result = {"rows": rows, "train": args.train, "test": args.test, "epochs": args.epochs,
              "generate_s": gen_s, "train_s": train_s, "quick": args.quick}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
