"""The image folder loader, on PNG trees written here with known pixel values."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.data.imagefolder import image_folder_dataset, load_image_folder
from edgeq.errors import DatasetFileError
from tests.data.image_fixtures import image, write_image_folder


@pytest.mark.parametrize("channels", [1, 3])
def test_classes_are_sorted_subfolders_and_pixels_round_trip(tmp_path, channels):
    written = write_image_folder(tmp_path, {"zebra": 2, "ant": 3}, channels=channels)
    data = load_image_folder(tmp_path, channels=channels)
    assert data.classes == ("ant", "zebra")
    assert data.images.dtype == np.uint8 and data.images.shape == (5, channels, 8, 8)
    # file order: ant's images, then zebra's; labels by sorted class name
    expected = [w for w in written if w[0] == "ant"] + [w for w in written if w[0] == "zebra"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1]
    for got, (_, i) in zip(data.images, expected, strict=True):
        assert np.array_equal(got, image(i, channels, 8))


def test_size_resizes_and_grey_converts(tmp_path):
    write_image_folder(tmp_path, {"a": 1, "b": 1}, channels=3, side=16)
    data = load_image_folder(tmp_path, size=4, channels=1)
    assert data.images.shape == (2, 1, 4, 4)


def test_train_and_test_roots(tmp_path):
    write_image_folder(tmp_path / "train", {"a": 2, "b": 2})
    write_image_folder(tmp_path / "test", {"a": 1, "b": 1}, start=10)
    d = image_folder_dataset(str(tmp_path / "train"), str(tmp_path / "test"), channels=1)
    assert len(d["train"][0]) == 4 and d["test"][1].tolist() == [0, 1]
    write_image_folder(tmp_path / "other", {"a": 1, "c": 1})
    with pytest.raises(DatasetFileError, match="classes"):
        image_folder_dataset(str(tmp_path / "train"), str(tmp_path / "other"), channels=1)


def test_bad_trees_name_the_folder_or_file(tmp_path):
    with pytest.raises(DatasetFileError, match="no such image folder"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFileError, match="no class subfolders"):
        load_image_folder(tmp_path / "empty")
    write_image_folder(tmp_path / "t", {"a": 1})
    (tmp_path / "t" / "b").mkdir()
    (tmp_path / "t" / "b" / "notes.txt").write_text("x")
    with pytest.raises(DatasetFileError, match=r"t/b: no images"):
        load_image_folder(tmp_path / "t")
    (tmp_path / "t" / "b" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetFileError, match=r"bad.png: cannot read"):
        load_image_folder(tmp_path / "t")
    write_image_folder(tmp_path / "sizes", {"a": 1})
    write_image_folder(tmp_path / "sizes", {"b": 1}, side=9)
    with pytest.raises(DatasetFileError, match="give a size"):
        load_image_folder(tmp_path / "sizes", channels=1)
