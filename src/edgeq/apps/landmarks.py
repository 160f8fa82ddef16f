"""The 3DDFA facial-landmark application: pre-processing -> network -> post-processing.

Torch-free (NumPy, Pillow and the engine):

1. **pre**: the face ROI (3DDFA's rule from a detector box, or the whole image as a
   centred square when there is no box), crop with zero padding, bilinear resize to the
   network's input size, 3DDFA's normalisation ``(x - 127.5) / 128``. For an integer
   model the engine then quantises this float input by the model's input rule.
2. **network**: the engine's ``reference`` backend, or the generated C program
   (``c`` on the host, ``c:cortex-a72`` under qemu-aarch64).
3. **post**: dequantise the 62 outputs (integer models), de-whiten them with the
   ``whitening.json`` that sits beside the model, reconstruct the 68 landmarks in crop
   pixels (3DDFA's reconstruction) and map them back to image pixels through the ROI.
   With a C backend this step runs in C too: the program is compiled with the
   post-processing of :mod:`edgeq.engine.backends.c.landmarks` (``eq_landmarks.c``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from edgeq.data.face3d import (
    WHITENING_FILE,
    MorphableModel,
    ParamWhitening,
    normalise_images,
    reconstruct_landmarks,
)
from edgeq.data.face3d.loaders import crop_roi, crop_to_image, read_image, roi_from_box
from edgeq.errors import ConfigError, ModelFileError

BACKENDS = ("reference", "c", "c:cortex-a72")


class LandmarkApp:
    """68 facial landmarks from an image with a 3DDFA-style 62-parameter network.

    ``whitening``: a :class:`ParamWhitening`, a path to its JSON, or None for
    ``whitening.json`` beside the model. ``mm``: the morphable model the network was
    trained with (default: ``MorphableModel.synthetic()``).
    """

    def __init__(self, model_path, whitening=None, mm: MorphableModel | None = None,
                 backend: str = "reference") -> None:
        from edgeq.engine import load

        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend '{backend}' (available: {', '.join(BACKENDS)})")
        self.backend = backend
        self.model = load(model_path)
        self.input = self.model.inputs[0]
        self.output = self.model.outputs[0]
        self.size = _input_size(self.input.shape, model_path)
        if whitening is None:
            whitening = Path(model_path).parent / WHITENING_FILE
        if not isinstance(whitening, ParamWhitening):
            whitening = ParamWhitening.load(whitening)
        self.whitening = whitening
        self.mm = MorphableModel.synthetic() if mm is None else mm
        self._compiled = None  # the C program (with the post-processing), built on use

    def compiled(self):
        """The C program of a ``c``/``c:TARGET`` backend (batch 1, post-processing in C),
        built once; the C backend's cache keeps it across runs."""
        if self._compiled is None:
            from edgeq.engine.backends.c import compile_cached
            from edgeq.engine.backends.c.landmarks import LandmarkPost

            post = LandmarkPost.for_graph(self.model.graph, self.whitening, self.mm,
                                          str(self.model.source))
            target = self.backend.partition(":")[2] or "host"
            self._compiled = compile_cached(self.model.graph, target, batch=1, post=post)
        return self._compiled

    def points(self, x: np.ndarray, roi=None) -> np.ndarray:
        """Network and post-processing for the ``x`` of :meth:`preprocess`: the 68
        landmarks ``[2,68]`` (image pixels with ``roi``), computed by the backend."""
        if self.backend == "reference":
            return self.postprocess(self.run_network(x), roi)
        from edgeq.engine.backends.c.landmarks import run_landmarks

        _, pts = run_landmarks(self.compiled(), x, roi)
        return pts[0]

    def preprocess(self, image, box=None):
        """``(x [1,3,S,S] float32, roi [4])`` for ``image`` (a path or ``uint8 [H,W,3]``
        RGB) and an optional face detector ``box`` ``(x0, y0, x1, y1)``."""
        img = read_image(image) if isinstance(image, str | os.PathLike) else np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ConfigError(f"image must be uint8 [H, W, 3], got {img.dtype} {img.shape}")
        roi = full_image_roi(img.shape) if box is None else roi_from_box(check_box(box))
        crop = crop_roi(img, roi, self.size)  # [S, S, 3]
        return normalise_images(crop.transpose(2, 0, 1)[None]), roi

    def run_network(self, x: np.ndarray) -> np.ndarray:
        """The network's 62 outputs, dequantised (``eps * y``) when the model's output is
        integer: its ε comes from the output's QuantInfo or the graph's ``meta["eps"]``
        (the F2T convention for accumulators, which have no IntRange)."""
        out = np.asarray(self.model.run({self.input.name: x})[self.output.name])
        if np.issubdtype(out.dtype, np.integer):
            out = out.astype(np.float64) * self._output_eps(out.ndim)
        out = np.asarray(out, np.float64)
        if out.size != 62:
            raise ModelFileError(f"model '{self.model.source}': output '{self.output.name}' "
                                 f"has {out.size} values, a 3DDFA network gives 62")
        return out.reshape(62)

    def _output_eps(self, ndim: int) -> np.ndarray:
        quant = self.output.quant
        eps = quant.eps_array(ndim) if quant is not None else None
        if eps is None:
            meta = getattr(self.model.graph, "meta", {}).get("eps", {}).get(self.output.name)
            eps = None if meta is None else np.asarray(meta, np.float64).reshape(
                (1, -1) if np.ndim(meta) else ())
        if eps is None:
            raise ModelFileError(
                f"model '{self.model.source}': integer output '{self.output.name}' carries "
                "no eps (scale), so its 62 parameters cannot be recovered; use the float "
                "(FP/FQ) export or a file that records the output scale")
        return eps

    def postprocess(self, outputs: np.ndarray, roi=None) -> np.ndarray:
        """De-whiten the 62 outputs and reconstruct the 68 landmarks ``[2,68]``: crop
        pixels, or image pixels when the ``roi`` of :meth:`preprocess` is given."""
        params = self.whitening.dewhiten(np.asarray(outputs, np.float64).reshape(62))
        pts = reconstruct_landmarks(params, self.mm, self.size)
        return pts if roi is None else crop_to_image(pts, roi, self.size)

    def __call__(self, image, box=None) -> np.ndarray:
        """The 68 landmarks ``[2,68]`` in image pixels."""
        x, roi = self.preprocess(image, box)
        return self.points(x, roi)


def _input_size(shape, model_path) -> int:
    ok = shape is not None and len(shape) == 4 and shape[1] == 3
    ok = ok and isinstance(shape[2], int) and shape[2] == shape[3]
    if not ok:
        raise ModelFileError(f"model '{model_path}': input shape {shape} is not "
                             "[N, 3, S, S] (a 3DDFA landmark network)")
    return int(shape[2])


def full_image_roi(shape) -> np.ndarray:
    """Without a detector box: the whole image as a centred square (the image is taken
    to be a face crop already)."""
    h, w = shape[:2]
    side = max(h, w)
    x0, y0 = (w - side) / 2, (h - side) / 2
    return np.array([x0, y0, x0 + side, y0 + side], np.float64)


def check_box(box) -> np.ndarray:
    """A detector box ``(x0, y0, x1, y1)``: 4 finite numbers with x1 > x0, y1 > y0."""
    try:
        b = np.asarray([float(v) for v in box], np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"box {box!r} must be 4 numbers x0,y0,x1,y1") from None
    if b.shape != (4,) or not np.all(np.isfinite(b)) or b[2] <= b[0] or b[3] <= b[1]:
        raise ConfigError(f"box {box!r} must be 4 finite numbers x0,y0,x1,y1 with x1 > x0 "
                          "and y1 > y0")
    return b


def parse_box(text: str) -> np.ndarray:
    """``"x0,y0,x1,y1"`` -> a checked box."""
    return check_box(text.split(","))


def draw_landmarks(image: np.ndarray, points: np.ndarray, out_path, roi=None) -> None:
    """Write ``image`` with the 68 points (and the ROI, if given) drawn on it, atomically
    (a temporary file in the same folder, then rename). The format follows the suffix."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.asarray(image, np.uint8))
    draw = ImageDraw.Draw(im)
    r = max(1.0, max(im.size) / 150)
    if roi is not None:
        draw.rectangle([float(v) for v in roi], outline=(255, 200, 0))
    for x, y in np.asarray(points, np.float64).T:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(0, 255, 0), outline=(0, 90, 0))
    out_path = Path(out_path)
    fd, tmp = tempfile.mkstemp(suffix=out_path.suffix or ".png", dir=out_path.parent or ".")
    os.close(fd)
    try:
        im.save(tmp)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_cli(model: str, image: str, out: str, box: str | None = None,
            backend: str = "reference", whitening: str | None = None) -> np.ndarray:
    """``edgeq landmarks``: predict, draw, write ``out``; returns the points ``[2,68]``."""
    parsed = parse_box(box) if box is not None else None
    out_dir = Path(out).resolve().parent
    if not out_dir.is_dir():
        raise ConfigError(f"--out '{out}': folder '{out_dir}' does not exist")
    app = LandmarkApp(model, whitening, backend=backend)
    img = read_image(image)
    x, roi = app.preprocess(img, parsed)
    pts = app.points(x, roi)
    try:
        draw_landmarks(img, pts, out, roi if parsed is not None else None)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"cannot write '{out}': {e}") from None
    return pts
