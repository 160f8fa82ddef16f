"""read_text_vector on NEMO's DORY-example text files (every line ends in ",\\")."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine.tensor_io import read_text_vector
from edgeq.errors import InputFileError
from tests.conftest import shared_fixture


def test_nemo_format_written_by_hand(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("# act (shape [1, 2, 2]),\\\n81.000,\\\n-3.000,\\\n0.000,\\\n255.000,\\\n")
    name, x = read_text_vector(path)
    assert name == "act" and x.dtype == np.int64 and x.tolist() == [[[81, -3], [0, 255]]]


def test_nemo_format_keeps_fractions_as_floats(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("# f (shape [2]),\\\n1.500,\\\n2.000,\\\n")
    _, x = read_text_vector(path)
    assert x.dtype == np.float64 and x.tolist() == [1.5, 2.0]


def test_nemo_format_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("# f (shape [2]),\\\n1.000,\\\nx,\\\n")
    with pytest.raises(InputFileError, match=r"bad.txt:3:"):
        read_text_vector(path)


@pytest.mark.parametrize("name, first, golden", [
    ("dronet_2.0", [81, 81, 82, 80], [31, 1594]),
    ("Residual_connection_test_1", None, [2585, 7547])])
def test_nemo_fixture_vectors(name, first, golden):
    folder = shared_fixture("nemo", name)
    _, x = read_text_vector(folder / "input.txt")
    _, y = read_text_vector(folder / "output.txt")
    assert x.shape == (1, 200, 200) and x.dtype == np.int64
    assert 0 <= x.min() and x.max() <= 255
    if first:
        assert x.ravel()[:4].tolist() == first
    assert y.tolist() == golden
    # the same numbers as the plain reading: strip ",\", int(float(v))
    lines = (folder / "input.txt").read_text().splitlines()[1:]
    plain = [int(float(ln.strip().rstrip("\\").rstrip(","))) for ln in lines if ln.strip()]
    assert x.ravel().tolist() == plain
