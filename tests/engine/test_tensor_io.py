"""QuantLab/DORY text vectors, .npy inputs and atomic writes."""

from pathlib import Path

import numpy as np
import pytest

from edgeq.engine.tensor_io import (
    load_input,
    read_text_vector,
    write_atomic,
    write_npz,
    write_text_vector,
)
from edgeq.errors import ConfigError, EdgeqError, InputFileError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def nchw_pattern() -> np.ndarray:
    """x[0, c, h, w] = 100c + 10h + w: every element says where it belongs."""
    c, h, w = np.meshgrid(np.arange(2), np.arange(2), np.arange(3), indexing="ij")
    return (100 * c + 10 * h + w)[None].astype(np.int64)


def hwc_text(name: str = "act") -> str:
    # channel-last order written out by hand: h, then w, then c varies fastest
    values = [100 * c + 10 * h + w for h in range(2) for w in range(3) for c in range(2)]
    return f"# {name} (shape [1, 2, 2, 3]),\n" + "".join(f"{v},\n" for v in values)


# -- reading --------------------------------------------------------------------------------


def test_dronet_input_reads_as_nchw_integers(dronet_dir):
    name, x = read_text_vector(dronet_dir / "input.txt", layout="hwc")
    lines = (dronet_dir / "input.txt").read_text().splitlines()
    expected = [int(line.rstrip(",")) for line in lines[1:] if line.strip()]
    assert name == "input"
    assert x.shape == (1, 1, 200, 200) and x.dtype == np.int64
    # one channel: HWC and CHW list the same sequence
    assert x.ravel().tolist() == expected
    assert x.ravel()[:4].tolist() == [13, 13, 15, 15]


def test_dronet_golden_output(dronet_dir):
    name, y = read_text_vector(dronet_dir / "output.txt")
    assert name == "output" and y.tolist() == [[435, 0]]


def test_hwc_file_is_transposed_to_nchw(tmp_path):
    path = write(tmp_path / "act.txt", hwc_text())
    name, x = read_text_vector(path, layout="hwc")
    assert name == "act"
    np.testing.assert_array_equal(x, nchw_pattern())


def test_chw_reading_of_same_file_differs(tmp_path):
    # the layout flag matters for multi-channel tensors: chw keeps the listed order
    path = write(tmp_path / "act.txt", hwc_text())
    _, x = read_text_vector(path, layout="chw")
    assert x.shape == (1, 2, 2, 3)
    assert x[0, 0, 0].tolist() == [0, 100, 1]  # the first three listed values


def test_single_channel_layouts_coincide(tmp_path):
    path = write(tmp_path / "v.txt", "# v (shape [1, 1, 2, 2]),\n1,\n2,\n3,\n4,\n")
    assert read_text_vector(path, "hwc")[1].tolist() == [[[[1, 2], [3, 4]]]]
    assert read_text_vector(path, "chw")[1].tolist() == [[[[1, 2], [3, 4]]]]


def test_floats_and_negative_values(tmp_path):
    path = write(tmp_path / "f.txt", "# f (shape [3]),\n-1,\n2.5,\n1e-3,\n")
    _, x = read_text_vector(path)
    assert x.dtype == np.float64 and x.tolist() == [-1.0, 2.5, 0.001]


def test_negative_integers_stay_integers(tmp_path):
    path = write(tmp_path / "i.txt", "# i (shape [1, 3]),\n-128,\n0,\n127\n")  # no last comma
    _, x = read_text_vector(path)
    assert x.dtype == np.int64 and x.tolist() == [[-128, 0, 127]]


# -- malformed files name the file and line -------------------------------------------------


@pytest.mark.parametrize(
    "text, where",
    [
        ("", ":1:"),
        ("13,\n14,\n", ":1:"),  # no header
        ("# x (shape [1, a]),\n1,\n", ":1:"),
        ("# x (shape [2]),\n1,\n", ":2:"),  # too few: the last line
        ("# x (shape [2]),\n1,\n2,\n3,\n", ":4:"),  # too many: the first extra line
        ("# x (shape [2]),\n1,\nabc,\n", ":3:"),
        ("# x (shape [2]),\n1, 2,\n", ":2:"),
        ("# x (shape [1]),\n99999999999999999999,\n", ":2:"),  # beyond int64
    ],
)
def test_malformed_file_errors(tmp_path, text, where):
    path = write(tmp_path / "bad.txt", text)
    with pytest.raises(InputFileError) as info:
        read_text_vector(path)
    message = str(info.value)
    assert f"bad.txt{where}" in message and "\n" not in message


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_text_vector(tmp_path / "nope.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(InputFileError, match="bin.txt"):
        read_text_vector(tmp_path / "bin.txt")


def test_unknown_layout(tmp_path):
    with pytest.raises(ConfigError):
        read_text_vector(write(tmp_path / "v.txt", "# v (shape [1]),\n1,\n"), layout="nhwc")


# -- writing -----------------------------------------------------------------------------------


def test_write_hwc_matches_hand_written_order(tmp_path):
    path = tmp_path / "out.txt"
    write_text_vector(path, "act", nchw_pattern(), layout="hwc")
    assert path.read_text() == hwc_text()


def test_write_then_read_floats_exactly(tmp_path):
    x = np.array([[0.1, -2.0, 1e-300]])
    write_text_vector(tmp_path / "f.txt", "f", x)
    name, y = read_text_vector(tmp_path / "f.txt")
    assert name == "f" and y.tolist() == x.tolist()


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = write(tmp_path / "keep.txt", "old")

    def explode(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_atomic(target, explode)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_write_into_missing_directory_is_edgeq_error(tmp_path):
    with pytest.raises(EdgeqError, match="missing"):
        write_npz(tmp_path / "missing" / "o.npz", {"y": np.zeros(2)})


def test_npz_round_trip(tmp_path):
    write_npz(tmp_path / "o.npz", {"128": np.array([[435, 0]])})
    with np.load(tmp_path / "o.npz") as data:
        assert data["128"].tolist() == [[435, 0]]


# -- load_input -----------------------------------------------------------------------------------


def test_named_npy(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(6).reshape(2, 3))
    name, x = load_input(f"data={tmp_path / 'x.npy'}", input_names=["data"])
    assert name == "data" and x.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_named_text_overrides_header(tmp_path):
    path = write(tmp_path / "v.txt", "# input (shape [2]),\n1,\n2,\n")
    assert load_input(f"input.1={path}", input_names=["input.1"])[0] == "input.1"


def test_text_alone_uses_header_name_when_the_model_has_it(tmp_path):
    path = write(tmp_path / "v.txt", "# b (shape [2]),\n1,\n2,\n")
    assert load_input(str(path), input_names=["a", "b"])[0] == "b"
    assert load_input(str(path))[0] == "b"


def test_text_alone_falls_back_to_single_model_input(tmp_path):
    # DORY names its file "input" while the ONNX graph input is "input.1"
    path = write(tmp_path / "v.txt", "# input (shape [2]),\n1,\n2,\n")
    assert load_input(str(path), input_names=["input.1"])[0] == "input.1"


def test_ambiguous_file_alone(tmp_path):
    path = write(tmp_path / "v.txt", "# c (shape [2]),\n1,\n2,\n")
    with pytest.raises(InputFileError, match="NAME="):
        load_input(str(path), input_names=["a", "b"])
    np.save(tmp_path / "x.npy", np.zeros(2))
    with pytest.raises(InputFileError, match="NAME="):
        load_input(str(tmp_path / "x.npy"))
    assert load_input(str(tmp_path / "x.npy"), input_names=["only"])[0] == "only"


def test_hwc_layout_applies_to_text_inputs(tmp_path):
    path = write(tmp_path / "act.txt", hwc_text())
    _, x = load_input(f"act={path}", layout="hwc")
    np.testing.assert_array_equal(x, nchw_pattern())


@pytest.mark.parametrize("spec", ["=x.npy", "x="])
def test_bad_spec(spec):
    with pytest.raises(InputFileError):
        load_input(spec)


def test_bad_files(tmp_path):
    write(tmp_path / "x.csv", "1,2")
    with pytest.raises(InputFileError, match=r"x\.csv"):
        load_input(f"x={tmp_path / 'x.csv'}")
    write(tmp_path / "junk.npy", "not numpy")
    with pytest.raises(InputFileError, match=r"junk\.npy"):
        load_input(f"x={tmp_path / 'junk.npy'}")
    np.savez(tmp_path / "arch.npz", a=np.zeros(2))
    (tmp_path / "arch.npz").rename(tmp_path / "arch.npy")
    with pytest.raises(InputFileError, match="npz"):
        load_input(f"x={tmp_path / 'arch.npy'}")
    with pytest.raises(InputFileError, match="no such file"):
        load_input(f"x={tmp_path / 'absent.npy'}")
