"""3DDFA post-processing in the generated C program: data for ``kernels/eq_landmarks.c``.

A compiled model always gets a generated ``post.c`` exposing ``eq_post_points`` (2D
points per sample; 0 = no post-processing) and ``eq_post_run(roi, pts)``. For a 3DDFA
landmark network (:class:`LandmarkPost`), ``post.c`` holds the data as const arrays —
the output's ε, the whitening mean/std, the 68-point mean shape and the shape and
expression bases — and one call of the kernel ``eq_landmarks_3ddfa``; ``run_model
IN.npy OUT.npy --landmarks PTS.npy [--roi x0,y0,x1,y1]`` then writes the points
``[N, 2, 68]`` (float32, crop pixels, or image pixels through the ROI). The maths is
:mod:`edgeq.data.face3d`'s (``ParamWhitening.dewhiten``, ``reconstruct_landmarks``,
``crop_to_image``), float32 where that code rounds to float32, so the C points equal
the Python ones up to the summation order inside float64 sums (≤ 1 float32 ulp).

Torch-free: the landmark app (``edgeq landmarks --backend c``) uses it.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.engine.ir import Graph
from edgeq.errors import BuildError, ConfigError, ModelFileError

N_PARAMS = 62
N_POINTS = 68


def graph_output_eps(graph: Graph, name: str | None = None) -> np.ndarray | None:
    """The ε of output ``name`` (default: the first) as a flat float64 array (1 or one per
    channel): from its QuantInfo, else ``graph.meta["eps"]`` (F2T's accumulators, which
    the edgeq dialect records); None when neither says."""
    name = graph.outputs[0] if name is None else name
    quant = graph.values[name].quant
    if quant is not None and quant.eps is not None:
        return np.asarray(quant.eps, np.float64).reshape(-1)
    meta = (graph.meta.get("eps") or {}).get(name)
    return None if meta is None else np.asarray(meta, np.float64).reshape(-1)


@dataclass(frozen=True, eq=False)
class LandmarkPost:
    """What ``post.c`` needs: ε of the output (``[1]`` or ``[62]``), whitening
    ``mean``/``std`` ``[62]``, the morphable model (``u [204]``, ``w_shp [204,40]``,
    ``w_exp [204,10]``) and the crop ``size`` in pixels."""

    eps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    u: np.ndarray
    w_shp: np.ndarray
    w_exp: np.ndarray
    size: int

    @staticmethod
    def for_graph(graph: Graph, whitening, mm=None, source: str = "model") -> LandmarkPost:
        """The post-processing of a 3DDFA network ``graph`` (input ``[N,3,S,S]``, output
        62 values per sample) with ``whitening`` (a ParamWhitening) and ``mm`` (a
        MorphableModel; default the synthetic one of the landmark task)."""
        from edgeq.data.face3d import MorphableModel

        shape = graph.values[graph.inputs[0]].shape
        if shape is None or len(shape) != 4 or shape[1] != 3 or not isinstance(shape[2], int) \
                or shape[2] != shape[3]:
            raise ModelFileError(f"{source}: input shape {shape} is not [N, 3, S, S] "
                                 "(a 3DDFA landmark network)")
        out = graph.values[graph.outputs[0]]
        per_sample = None if out.shape is None else out.shape[1:]
        if per_sample is None or any(not isinstance(d, int) for d in per_sample) \
                or int(np.prod(per_sample, dtype=np.int64)) != N_PARAMS:
            raise ModelFileError(f"{source}: output '{out.name}' has shape {out.shape}, a "
                                 f"3DDFA network gives {N_PARAMS} values per sample")
        eps = graph_output_eps(graph)
        if eps is None:
            if out.dtype is not None and np.issubdtype(np.dtype(out.dtype), np.integer):
                raise ModelFileError(
                    f"{source}: integer output '{out.name}' carries no eps (scale), so its "
                    f"{N_PARAMS} parameters cannot be recovered")
            eps = np.ones(1)  # a float output is the whitened parameters themselves
        if eps.size not in (1, N_PARAMS):
            raise ModelFileError(f"{source}: output '{out.name}' has {eps.size} eps values, "
                                 f"expected 1 or {N_PARAMS}")
        mm = MorphableModel.synthetic() if mm is None else mm
        as64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
        return LandmarkPost(as64(eps), as64(whitening.mean), as64(whitening.std),
                            as64(mm.u).reshape(-1), as64(mm.w_shp), as64(mm.w_exp),
                            int(shape[2]))

    def digest(self) -> str:
        """Content hash (part of the C build cache key)."""
        h = hashlib.sha256(f"3ddfa|{self.size}".encode())
        for a in (self.eps, self.mean, self.std, self.u, self.w_shp, self.w_exp):
            h.update(np.ascontiguousarray(a, np.float64).tobytes())
        return h.hexdigest()

    def c_source(self, out_dtype_code: str) -> str:
        """``post.c``: the data as const arrays and the call of the kernel."""
        arrays = {"lm_eps": self.eps, "lm_mean": self.mean, "lm_std": self.std,
                  "lm_u": self.u, "lm_w_shp": self.w_shp, "lm_w_exp": self.w_exp}
        lines = [
            "/* Generated by edgeq: 3DDFA landmark post-processing data (the maths is in",
            " * eq_landmarks.c): output eps, whitening, the 68-point shape/expression model. */",
            "#include <stddef.h>",
            '#include "eq_kernels.h"',
            '#include "eq_landmarks.h"',
            '#include "model.h"',
            "",
        ]
        for name, a in arrays.items():
            flat = np.asarray(a, np.float64).reshape(-1)
            lines.append(f"static const double {name}[{flat.size}] = {{"
                         + ",".join(repr(float(v)) for v in flat) + "};")
        lines += [
            f"static const eq_lm_model lm = {{lm_eps, {self.eps.size}, lm_mean, lm_std, lm_u, "
            f"lm_w_shp, lm_w_exp, {self.size}}};",
            "",
            f"const int eq_post_points = {N_POINTS};",
            "void eq_post_run(const double *roi, float *pts) {",
            f"    eq_landmarks_3ddfa(&lm, eq_output(0), {out_dtype_code}, "
            f"eq_out_numel[0] / {N_PARAMS}, roi, pts);",
            "}",
        ]
        return "\n".join(lines) + "\n"


NO_POST_SOURCE = """/* Generated by edgeq: this model has no post-processing. */
#include <stddef.h>
#include "model.h"

const int eq_post_points = 0;
void eq_post_run(const double *roi, float *pts) { (void)roi; (void)pts; }
"""


def post_source(graph: Graph, post: LandmarkPost | None) -> str:
    """``post.c`` of a compiled ``graph`` (after :func:`prepare_graph`)."""
    if post is None:
        return NO_POST_SOURCE
    from edgeq.engine.backends.c.generator import DTYPE_CODES

    return post.c_source(DTYPE_CODES[np.dtype(graph.values[graph.outputs[0]].dtype)])


def run_landmarks(compiled, x: np.ndarray, roi=None) -> tuple[np.ndarray, np.ndarray]:
    """Run a model compiled with a :class:`LandmarkPost` on ``x`` (``[N,3,S,S]``, float
    or integer by the input rule); returns ``(network output, points [N,2,68] float32)``.
    ``roi``: ``(x0, y0, x1, y1)`` to get image pixels (one ROI for the whole batch)."""
    name = compiled.graph.inputs[0]
    with tempfile.TemporaryDirectory(prefix="edgeq-run-") as tmp:
        (path_in,) = compiled._write_inputs({name: np.asarray(x)}, Path(tmp))
        out, pts = Path(tmp) / "out.npy", Path(tmp) / "points.npy"
        args = [path_in, str(out), "--landmarks", str(pts)]
        if roi is not None:
            r = np.asarray(roi, np.float64).reshape(-1)
            if r.shape != (4,) or not np.all(np.isfinite(r)):
                raise ConfigError(f"roi must be 4 finite numbers, got {roi!r}")
            args += ["--roi", ",".join(repr(float(v)) for v in r)]
        proc = subprocess.run(compiled.command(*args), capture_output=True, text=True)
        if proc.returncode != 0:
            detail = proc.stderr.strip() or f"exit status {proc.returncode}"
            raise BuildError(f"{compiled.binary}: {detail}")
        return np.load(out), np.load(pts)
