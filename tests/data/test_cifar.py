"""The CIFAR-10 python-pickle loader, on a small directory written in the real format."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from edgeq.data.cifar import load_cifar10, read_batch
from edgeq.errors import DatasetFileError
from tests.data.image_fixtures import CIFAR_CLASSES, image, pixel, write_cifar10


def test_batches_meta_and_channel_planes(tmp_path):
    write_cifar10(tmp_path, per_batch=4, test=6)
    raw = (tmp_path / "data_batch_1").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct" in raw  # spelt as the published files
    d = load_cifar10(tmp_path)
    assert d["classes"] == tuple(CIFAR_CLASSES)
    x, y = d["train"]
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.uint8
    assert y.tolist() == [k % 10 for k in range(20)]
    # image 13 (batch 4, row 1): green plane, row 5, column 30
    assert x[13, 1, 5, 30] == pixel(13, 1, 5, 30)
    assert all(np.array_equal(x[k], image(k, 3, 32)) for k in range(20))
    xt, yt = d["test"]
    assert xt.shape == (6, 3, 32, 32) and yt.tolist() == [(1000 + k) % 10 for k in range(6)]


def test_bad_directories_name_the_file(tmp_path):
    with pytest.raises(DatasetFileError, match="no such CIFAR-10 directory"):
        load_cifar10(tmp_path / "none")
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DatasetFileError, match="data_batch_3: missing"):
        load_cifar10(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DatasetFileError, match="data_batch_3: not a CIFAR-10 pickle"):
        load_cifar10(tmp_path)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DatasetFileError, match=r"refusing to load \w+\.print"):
        read_batch(path)
