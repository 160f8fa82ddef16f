"""CIFAR-10 in its "python version" format (``cifar-10-batches-py``), read from disk.

The directory holds ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and
``batches.meta``: Python pickles of dicts with byte-string keys. A batch has ``b"data"``,
a uint8 array N x 3072 (1024 red, then green, then blue values of a 32x32 image, row by
row) and ``b"labels"``, a list of N integers 0..9; the meta file has
``b"label_names"``. Pickles can run code, so they are read with an unpickler that only
builds plain containers and NumPy arrays.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from edgeq.errors import DatasetFileError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
SIDE = 32

# the globals a NumPy array pickle refers to (numpy 1.x and 2.x module names)
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = _SafeUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DatasetFileError(f"{path}: missing (a CIFAR-10 python directory holds "
                               f"{', '.join(TRAIN_BATCHES)}, {TEST_BATCH}, {META})") from None
    except Exception as exc:  # any unpickling failure: truncated, foreign, malicious
        raise DatasetFileError(f"{path}: not a CIFAR-10 pickle ({type(exc).__name__}: "
                               f"{exc})") from None
    if not isinstance(data, dict):
        raise DatasetFileError(f"{path}: not a CIFAR-10 pickle (holds a "
                               f"{type(data).__name__}, not a dict)")
    return data


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x 3 x 32 x 32, labels int64 N) of one batch file."""
    path = Path(path)
    data = _read(path)
    if b"data" not in data or b"labels" not in data:
        raise DatasetFileError(f"{path}: a CIFAR-10 batch needs the keys data and labels")
    images = np.asarray(data[b"data"])
    labels = np.asarray(data[b"labels"], dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * SIDE * SIDE:
        raise DatasetFileError(f"{path}: data must be uint8 N x 3072, got {images.dtype} "
                               f"{images.shape}")
    if labels.shape != (len(images),) or labels.size and not (
            0 <= labels.min() and labels.max() <= 9):
        raise DatasetFileError(f"{path}: labels must be {len(images)} integers in 0..9")
    return images.reshape(-1, 3, SIDE, SIDE), labels


def load_cifar10(root: str | Path) -> dict:
    """``{"train": (x, y), "test": (x, y), "classes": names}`` of a CIFAR-10 directory."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFileError(f"{root}: no such CIFAR-10 directory")
    parts = [read_batch(root / name) for name in TRAIN_BATCHES]
    meta = _read(root / META)
    names = meta.get(b"label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DatasetFileError(f"{root / META}: label_names must list 10 class names")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return {"train": (np.concatenate([p[0] for p in parts]),
                      np.concatenate([p[1] for p in parts])),
            "test": read_batch(root / TEST_BATCH), "classes": classes}


def check_cifar10(root: str, **_kwargs) -> None:
    """Cheap check before any run: every file of the format is there."""
    root_path = Path(root)
    if not root_path.is_dir():
        raise DatasetFileError(f"{root_path}: no such CIFAR-10 directory")
    for name in (*TRAIN_BATCHES, TEST_BATCH, META):
        if not (root_path / name).is_file():
            raise DatasetFileError(f"{root_path / name}: missing (a CIFAR-10 python directory "
                                   f"holds {', '.join(TRAIN_BATCHES)}, {TEST_BATCH}, {META})")
