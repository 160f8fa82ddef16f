"""An image folder tree as a classification dataset: one subfolder per class.

::

    ROOT/cat/0001.png
    ROOT/cat/0002.jpg
    ROOT/dog/a.png

Classes are the subfolder names in sorted order (label 0, 1, ...); images are read with
Pillow, converted to grey (``channels=1``) or RGB (``channels=3``) and, with ``size``,
resized to ``size`` x ``size``; without it every image must have the first one's size.
Result: uint8 images N x C x H x W and int64 labels. Errors name the folder or file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.errors import DatasetFileError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                  ".webp")


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # uint8, N x C x H x W
    labels: np.ndarray  # int64, N
    classes: tuple[str, ...]


def scan(root: str | Path) -> list[tuple[str, list[Path]]]:
    """(class, image files) per class subfolder, sorted; checks without decoding."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFileError(f"{root}: no such image folder")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetFileError(f"{root}: no class subfolders (expected ROOT/<class>/<image>)")
    out = []
    for folder in classes:
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetFileError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        out.append((folder.name, files))
    return out


def load_image_folder(root: str | Path, size: int | None = None,
                      channels: int = 3) -> ImageSet:
    """Every image of the tree under ``root``, labelled by its subfolder."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise DatasetFileError(f"{root}: channels must be 1 or 3, got {channels!r}")
    mode = "L" if channels == 1 else "RGB"
    images, labels, shape = [], [], None
    tree = scan(root)
    for label, (_, files) in enumerate(tree):
        for path in files:
            try:
                with Image.open(path) as img:
                    img = img.convert(mode)
                    if size is not None:
                        img = img.resize((size, size), Image.Resampling.BILINEAR)
                    array = np.asarray(img, dtype=np.uint8)
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                raise DatasetFileError(f"{path}: cannot read the image ({exc})") from None
            array = array[None] if channels == 1 else array.transpose(2, 0, 1)
            if shape is None:
                shape = array.shape
            elif array.shape != shape:
                raise DatasetFileError(f"{path}: image is {array.shape[2]}x{array.shape[1]}, "
                                       f"the first was {shape[2]}x{shape[1]}; give a size")
            images.append(array)
            labels.append(label)
    return ImageSet(np.stack(images), np.asarray(labels, dtype=np.int64),
                    tuple(name for name, _ in tree))


def image_folder_dataset(root: str, test_root: str | None = None, size: int | None = None,
                         channels: int = 3) -> dict:
    """The ``imagefolder`` dataset of the classification task: ``root`` for training
    (and, without ``test_root``, for a test part too); class lists must match."""
    train = load_image_folder(root, size, channels)
    out = {"train": (train.images, train.labels), "classes": train.classes}
    if test_root is not None:
        test = load_image_folder(test_root, size, channels)
        if test.classes != train.classes:
            raise DatasetFileError(f"{test_root}: classes {list(test.classes)} differ from "
                                   f"{root}'s {list(train.classes)}")
        out["test"] = (test.images, test.labels)
    return out


def check_image_folder_dataset(root: str, test_root: str | None = None, **_kwargs) -> None:
    """Cheap check before any run: the folders exist and hold images per class."""
    scan(root)
    if test_root is not None:
        scan(test_root)
