import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from edgeq.data import digits_loaders, load_digits_splits
from edgeq.errors import ConfigError


@pytest.fixture(scope="module")
def splits():
    return load_digits_splits(seed=0)


def _rows(x: torch.Tensor) -> np.ndarray:
    # Sorted rows of pixel integers, to compare datasets as multisets.
    rows = np.round(x.reshape(len(x), -1).numpy() * 16).astype(np.int64)
    return rows[np.lexsort(rows.T[::-1])]


def test_split_sizes_shapes_and_range(splits):
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (1077, 360, 360)
    assert splits.x_train.shape[1:] == (1, 8, 8) and splits.x_train.dtype == torch.float32
    assert splits.y_train.dtype == torch.int64
    for name in ("train", "val", "test"):
        x, _ = splits.split(name)
        assert x.min() >= 0 and x.max() <= 1
        # pixels/16 are exact multiples of 1/16
        assert torch.equal(x * 16, torch.round(x * 16))


def test_splits_partition_the_dataset(splits):
    everything = torch.cat([splits.x_train, splits.x_val, splits.x_test])
    source = torch.from_numpy(load_digits().data.astype(np.float32) / 16)
    np.testing.assert_array_equal(_rows(everything), _rows(source))


def test_splits_are_stratified(splits):
    full = np.bincount(load_digits().target, minlength=10) / 1797
    for name in ("train", "val", "test"):
        _, y = splits.split(name)
        frac = np.bincount(y.numpy(), minlength=10) / len(y)
        assert np.abs(frac - full).max() < 0.01


def test_split_is_deterministic_per_seed(splits):
    again = load_digits_splits(seed=0)
    other = load_digits_splits(seed=1)
    assert torch.equal(again.x_train, splits.x_train) and torch.equal(again.y_test, splits.y_test)
    assert not torch.equal(other.x_train, splits.x_train)


@pytest.mark.parametrize("bad", [(0.5, 0.5, 0.0), (0.6, 0.2, 0.3), (1.0,)])
def test_bad_fractions_are_config_errors(bad):
    with pytest.raises(ConfigError, match="fractions"):
        load_digits_splits(fractions=bad)


def test_unknown_split_name():
    with pytest.raises(ConfigError, match="'dev'"):
        load_digits_splits().split("dev")


def test_loaders_shuffle_train_only_and_reproducibly(splits):
    first = digits_loaders(batch_size=100, seed=3, splits=splits)
    second = digits_loaders(batch_size=100, seed=3, splits=splits)
    y1 = torch.cat([y for _, y in first["train"]])
    y2 = torch.cat([y for _, y in second["train"]])
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, splits.y_train)  # shuffled
    assert torch.equal(torch.sort(y1).values, torch.sort(splits.y_train).values)
    assert torch.equal(torch.cat([y for _, y in first["val"]]), splits.y_val)
    with pytest.raises(ConfigError, match="batch_size"):
        digits_loaders(batch_size=0)
