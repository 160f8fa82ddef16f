"""Input/output tensor files: ``.npy`` and the QuantLab/DORY text vector format.

A text vector (``input.txt``, ``output.txt``, ``out_layer<i>.txt`` of DORY) is::

    # input (shape [1, 1, 200, 200]),
    13,
    15,
    ...

one header line naming the tensor and its NCHW shape, then one value per line with a
trailing comma. Multi-channel tensors are written channel-last: a tensor of shape
``[N, C, H, W]`` is listed in ``N, H, W, C`` order (``layout="hwc"``). In general the
channel axis is axis 1 and, for rank >= 3, it is moved to the end; for rank < 3 or a single
channel both layouts list the same sequence. Integers parse to int64, anything else to
float64 (the whole tensor is float64 if one value is).

Writing is atomic: data goes to a temporary file in the target directory, which is
renamed over the target only once complete.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from edgeq.errors import ConfigError, InputFileError, OutputFileError

LAYOUTS = ("chw", "hwc")
MAX_INPUT_ELEMENTS = 2**27  # per input file, checked before anything is allocated
NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: what the engine takes

_HEADER = re.compile(
    r"^#\s*(?P<name>.*?)\s*\(\s*shape\s*\[(?P<shape>[^\]]*)\]\s*\)\s*,?\s*\\?\s*$")
_INT = re.compile(r"^[+-]?\d+$")
# NEMO/DORY-example vectors print integers as "81.000": integral in that format
_INT_POINT_ZERO = re.compile(r"^[+-]?\d+\.0*$")


# -- layout -------------------------------------------------------------------------------


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def _file_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """Shape of the sequence as listed in the file (channel axis last for ``hwc``)."""
    if layout == "chw" or len(shape) < 3:
        return shape
    return (shape[0], *shape[2:], shape[1])


def from_file_order(flat: np.ndarray, shape: tuple[int, ...], layout: str) -> np.ndarray:
    """Reshape values listed in file order into the NCHW array of ``shape``."""
    arr = flat.reshape(_file_shape(shape, layout))
    if layout == "hwc" and len(shape) >= 3:
        arr = np.moveaxis(arr, -1, 1)
    return np.ascontiguousarray(arr)


def to_file_order(array: np.ndarray, layout: str) -> np.ndarray:
    """The flat sequence in which a text vector lists the NCHW ``array``."""
    if layout == "hwc" and array.ndim >= 3:
        array = np.moveaxis(array, 1, -1)
    return np.ravel(array)


# -- reading ----------------------------------------------------------------------------------


def _parse_header(line: str, path: Path) -> tuple[str, tuple[int, ...]]:
    m = _HEADER.match(line.strip())
    if m is None:
        raise InputFileError(
            f"{path}:1: expected a header like '# name (shape [1, 3, 8, 8]),', got {line.strip()!r}"
        )
    dims = [d.strip() for d in m.group("shape").split(",") if d.strip()]
    if not all(_INT.match(d) and int(d) >= 0 for d in dims):
        raise InputFileError(f"{path}:1: shape [{m.group('shape')}] is not a list of sizes")
    return m.group("name"), tuple(int(d) for d in dims)


def _parse_value(token: str, path: Path, lineno: int) -> int | float:
    if _INT.match(token):
        value = int(token)
        if not -(2**63) <= value < 2**63:
            raise InputFileError(f"{path}:{lineno}: integer {token} does not fit int64")
        return value
    try:
        return float(token)
    except ValueError:
        raise InputFileError(f"{path}:{lineno}: {token!r} is not a number") from None


def _is_nemo(header: str) -> bool:
    """NEMO/DORY-example vectors end every line, the header included, with ``,\\``."""
    return header.rstrip().endswith("\\")


def _strip_separators(line: str) -> str:
    """A value line without its trailing ``,`` or ``,\\`` (NEMO's line continuation)."""
    token = line.strip()
    if token.endswith("\\"):
        token = token[:-1].rstrip()
    if token.endswith(","):
        token = token[:-1].strip()
    return token


def read_text_vector(path: str | os.PathLike, layout: str = "chw") -> tuple[str, np.ndarray]:
    """Read a QuantLab/DORY text vector; return ``(name, array)`` with the array in NCHW.

    ``layout="hwc"`` means the file lists a multi-channel tensor channel-last. NEMO's
    DORY-example files (every line ending in ``,\\``, integers printed as ``81.000``)
    read too: there an integral ``81.000`` is the integer 81.
    """
    _check_layout(layout)
    path = Path(path)
    lines = _read_lines(path)
    if not lines:
        raise InputFileError(f"{path}:1: empty file, expected a '# name (shape [...])' header")
    name, shape = _parse_header(lines[0], path)
    _check_elements(path, shape)
    expected = math.prod(shape)
    values: list[int | float] = []
    nemo = _is_nemo(lines[0])
    for lineno, line in enumerate(lines[1:], start=2):
        token = _strip_separators(line)
        if not token:
            continue  # blank lines (a trailing newline) carry no value
        if nemo and _INT_POINT_ZERO.match(token):
            token = token.split(".")[0]
        if "," in token:
            raise InputFileError(f"{path}:{lineno}: expected one value per line, got {line!r}")
        if len(values) == expected:
            raise InputFileError(
                f"{path}:{lineno}: more values than the {expected} of shape {list(shape)}"
            )
        values.append(_parse_value(token, path, lineno))
    if len(values) != expected:
        raise InputFileError(
            f"{path}:{len(lines)}: {len(values)} values, but shape {list(shape)} needs {expected}"
        )
    is_int = all(isinstance(v, int) for v in values)
    flat = np.array(values, dtype=np.int64 if is_int else np.float64)
    return name, from_file_order(flat, shape, layout)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: not a text file (not UTF-8)") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _check_npy_header(path: Path) -> None:
    """Refuse, from the header alone, arrays too large or of a non-numeric dtype."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, SyntaxError, TypeError) as exc:
        if zipfile_magic(path):
            return  # an .npz archive: reported below
        raise InputFileError(f"{path}: not a valid .npy file: {_one_line(exc)}") from None
    _check_elements(path, shape)
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype:
        raise InputFileError(f"{path}: dtype {dtype} is not a numeric (bool, integer or "
                             "float) array")


def zipfile_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _check_elements(path: Path, shape) -> None:
    n = math.prod(int(d) for d in shape)
    if n > MAX_INPUT_ELEMENTS:
        raise InputFileError(f"{path}: declares {n} elements (shape {list(shape)}), more "
                             f"than the {MAX_INPUT_ELEMENTS} an input may have")


def read_npy(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    _check_npy_header(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise InputFileError(f"{path}: not a valid .npy file: {_one_line(exc)}") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        arr.close()
        raise InputFileError(f"{path}: an .npz archive, expected a single .npy array")
    return arr


def _one_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# -- writing ------------------------------------------------------------------------------------


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then rename it to ``path``.

    On any failure the temporary file is removed and ``path`` is left untouched.
    OS errors become :class:`OutputFileError` naming the file.
    """
    path = Path(path)
    # open(..., "xb") rather than mkstemp: the file gets the usual umask-based mode, not 0600
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        f = open(tmp, "xb")  # closed by the with-block below
    except OSError as exc:
        raise OutputFileError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise OutputFileError(f"{path}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def write_json(path: str | os.PathLike, data, indent: int = 2) -> None:
    """``data`` as JSON in ``path`` (parent folders made), atomically by :func:`write_atomic`."""
    text = (json.dumps(data, indent=indent) + "\n").encode()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: f.write(text))


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def format_value(v) -> str:
    """Integers as integers, floats in their shortest round-tripping form."""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v))


def write_text_vector(
    path: str | os.PathLike, name: str, array: np.ndarray, layout: str = "chw"
) -> None:
    """Write ``array`` (NCHW) as a text vector, listing channel-last if ``layout="hwc"``."""
    _check_layout(layout)
    array = np.asarray(array)
    shape = ", ".join(str(d) for d in array.shape)
    lines = [f"# {name} (shape [{shape}]),"]
    lines += [f"{format_value(v)}," for v in to_file_order(array, layout).tolist()]
    text = "\n".join(lines) + "\n"
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` archive, atomically."""
    write_atomic(path, lambda f: np.savez(f, **arrays))


# -- command-line input specs ---------------------------------------------------------------------


def load_input(
    spec: str, layout: str = "chw", input_names: Sequence[str] | None = None
) -> tuple[str, np.ndarray]:
    """Load one ``--input`` spec: ``NAME=FILE.npy``, ``NAME=FILE.txt`` or ``FILE``.

    With ``FILE`` alone the name is the text vector's header name when that is one of
    ``input_names``, otherwise the model's single input; a ``.npy`` file alone needs a
    model with a single input. ``layout`` applies to text vectors only (``.npy`` files
    are NCHW already).
    """
    _check_layout(layout)
    name, file = _split_spec(spec)
    suffix = Path(file).suffix.lower()
    if suffix == ".npy":
        array, header_name = read_npy(file), None
    elif suffix == ".txt":
        header_name, array = read_text_vector(file, layout)
    else:
        raise InputFileError(f"{file}: unknown input file type, expected .npy or .txt")
    if name is None:
        name = _default_name(file, header_name, input_names)
    return name, array


def _split_spec(spec: str) -> tuple[str | None, str]:
    # a path that exists wins, so a file name containing '=' still works on its own
    if "=" not in spec or os.path.exists(spec):
        return None, spec
    name, file = spec.split("=", 1)
    if not name or not file:
        raise InputFileError(f"input spec {spec!r}: expected NAME=FILE or FILE")
    return name, file


def _default_name(file: str, header_name: str | None, input_names: Sequence[str] | None) -> str:
    names = list(input_names) if input_names is not None else None
    if header_name is not None and (names is None or header_name in names):
        return header_name
    if names is not None and len(names) == 1:
        return names[0]
    if names is None:
        raise InputFileError(f"{file}: no tensor name; give the input as NAME={file}")
    raise InputFileError(
        f"{file}: cannot tell which of the inputs {names} this is; give NAME={file}"
    )
