"""Small datasets written in the real on-disk formats: an image folder tree of PNG files
and a CIFAR-10 "python version" directory. Pixel values follow ``pixel()``, so tests can
check the loaders against values computed here, not read back by the code under test."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


def pixel(i: int, c: int, y: int, x: int) -> int:
    return (i * 37 + c * 91 + y * 7 + x * 3) % 256


def image(i: int, channels: int, side: int) -> np.ndarray:
    """Image ``i`` as uint8 C x H x W."""
    c, y, x = np.meshgrid(np.arange(channels), np.arange(side), np.arange(side), indexing="ij")
    return ((i * 37 + c * 91 + y * 7 + x * 3) % 256).astype(np.uint8)


def write_image_folder(root: Path, classes: dict[str, int], channels: int = 1,
                       side: int = 8, start: int = 0) -> list[tuple[str, int]]:
    """``classes``: name -> image count. Returns (class, image index) in file order."""
    written, i = [], start
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            img = image(i, channels, side)
            pil = Image.fromarray(img[0] if channels == 1 else img.transpose(1, 2, 0))
            pil.save(root / name / f"img{k:03d}.png")
            written.append((name, i))
            i += 1
    (root / "README.txt").write_text("not a class folder")
    return written


def _dump_py2_style(path: Path, obj: dict) -> None:
    """A protocol-2 pickle whose NumPy global is spelt as in the published files (written
    by Python 2 and NumPy 1: ``numpy.core.multiarray``)."""
    data = pickle.dumps(obj, protocol=2)
    data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(data)


def cifar_batch(start: int, n: int) -> tuple[np.ndarray, list[int]]:
    """Rows of 3072 bytes: the red plane, then green, then blue, each row-major."""
    rows = np.stack([image(start + k, 3, 32).reshape(-1) for k in range(n)])
    labels = [(start + k) % 10 for k in range(n)]
    return rows, labels


def write_cifar10(root: Path, per_batch: int = 4, test: int = 6) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for b in range(5):
        rows, labels = cifar_batch(b * per_batch, per_batch)
        _dump_py2_style(root / f"data_batch_{b + 1}", {
            b"batch_label": f"training batch {b + 1} of 5".encode(), b"labels": labels,
            b"data": rows, b"filenames": [f"f{k}.png".encode() for k in range(per_batch)]})
    rows, labels = cifar_batch(1000, test)
    _dump_py2_style(root / "test_batch", {b"batch_label": b"testing batch 1 of 1",
                                          b"labels": labels, b"data": rows,
                                          b"filenames": [b"t.png"] * test})
    _dump_py2_style(root / "batches.meta", {b"label_names": [c.encode() for c in
                                                              CIFAR_CLASSES],
                                            b"num_cases_per_batch": per_batch,
                                            b"num_vis": 3072})
