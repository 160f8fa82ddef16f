"""Compile an IR graph into a self-contained C99 project and build it.

``compile_model(graph | path, out_dir, target, batch, threads)`` runs the passes
(fusion, range proof) through :func:`run_passes` so the validator checks each, plans
memory, writes ``model.h``/``model.c``/``weights.c``, the kernels used, the harness
``main.c`` and a ``Makefile`` into a temporary directory next to ``out_dir``, builds
``run_model`` there and renames the directory into place: a failure leaves nothing
half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from edgeq.engine.backends.c import generator as gen
from edgeq.engine.backends.c import landmarks as post_c
from edgeq.engine.ir import Graph
from edgeq.errors import BuildError, ConfigError, OutputDirError, ShapeError

KERNEL_FILES = ("eq_kernels.h", "eq_common.c", "eq_threads.c", "eq_requant.c", "eq_conv.c",
                "eq_gemm.c", "eq_pool.c", "eq_misc.c", "eq_thirdparty.h", "eq_thirdparty.c",
                "eq_landmarks.h", "eq_landmarks.c")
KERNEL_FILES += ("eq_nhwc.c",)  # the NHWC kernels of the layout pass
PROGRAM_FILES = ("main.c", "model.c", "post.c")  # harness, call sequence, task post-processing


MAX_THREADS = 16  # EQ_MAX_THREADS in eq_kernels.h


@dataclass(frozen=True)
class Target:
    """A compiler and its flags, plus how to run the binary on this machine."""

    name: str
    cc: str
    cflags: str
    ldflags: str
    runner: tuple[str, ...] = ()


TARGETS = {
    "host": Target("host", "gcc", "-O3 -march=native", ""),
    "cortex-a72": Target("cortex-a72", "aarch64-linux-gnu-gcc", "-O3 -mcpu=cortex-a72",
                         "-static", ("qemu-aarch64", "-cpu", "cortex-a72")),
}


def target(name: str) -> Target:
    if name not in TARGETS:
        raise ConfigError(f"unknown target '{name}'; choose one of {sorted(TARGETS)}")
    return TARGETS[name]


def kernel_source(name: str) -> str:
    return resources.files("edgeq.engine.backends.c").joinpath("kernels", name).read_text()


def harness_source() -> str:
    return resources.files("edgeq.engine.backends.c").joinpath("runtime", "run_model.c").read_text()


def library_digest() -> str:
    """Hash of the kernel library, the harness and the generator (cache key part)."""
    h = hashlib.sha256()
    for name in KERNEL_FILES:
        h.update(kernel_source(name).encode())
    h.update(harness_source().encode())
    h.update(Path(gen.__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    from edgeq.engine.backends.c import nhwc
    from edgeq.engine.passes import layout

    h.update(Path(nhwc.__file__).read_bytes())  # kernel choice and the layout pass too
    h.update(Path(layout.__file__).read_bytes())
    h.update(Path(post_c.__file__).read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------
# passes
# ---------------------------------------------------------------------------------
def concretise(graph: Graph, batch: int) -> Graph:
    """A copy with symbolic input dims set to ``batch`` and every shape made concrete."""
    from edgeq.engine.passes.shapes import complete_shapes

    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    g = graph.copy()
    for name in g.inputs:
        v = g.values[name]
        if v.shape is None:
            raise ShapeError(f"input '{name}' has no shape: the C backend needs one")
        dims = tuple(d if isinstance(d, int) else batch for d in v.shape)
        if dims and isinstance(v.shape[0], int) and v.shape[0] != batch and batch != 1:
            raise ShapeError(f"input '{name}' has a fixed batch of {v.shape[0]}, not {batch}")
        v.shape = dims
    # Trial run with the concrete shapes: intermediate shapes become concrete too.
    for v in g.values.values():
        if not v.is_const and v.name not in g.inputs and v.shape is not None:
            if any(not isinstance(d, int) for d in v.shape):
                v.shape = None
    return complete_shapes(g)


def fuse_graph(graph: Graph, batch: int = 1) -> Graph:
    """Concrete shapes, constant quantisers folded and each requantisation (and clip) fused
    into the Conv/Gemm/MatMul it follows, validated after each pass."""
    from edgeq.engine.backends.reference import supported_ops
    from edgeq.engine.passes import run_passes
    from edgeq.engine.passes.fold import absorb_input_zero_point, fold_constant_quantisers
    from edgeq.engine.passes.fusion import fuse_clip, fuse_requant

    return run_passes(concretise(graph, batch), [fold_constant_quantisers,
                                                 absorb_input_zero_point, fuse_requant,
                                                 fuse_clip], known_ops=supported_ops())


def prepare_graph(graph: Graph, batch: int = 1) -> Graph:
    """:func:`fuse_graph`, then the range proof and the layouts (NHWC for the 8-bit
    convolutions), validated after each pass."""
    from edgeq.engine.backends.reference import supported_ops
    from edgeq.engine.passes import run_passes
    from edgeq.engine.passes.layout import assign_c_layouts
    from edgeq.engine.passes.ranges import prove_ranges

    return run_passes(fuse_graph(graph, batch), [prove_ranges, assign_c_layouts],
                      known_ops=supported_ops())


def plan(graph: Graph, batch: int = 1):
    from edgeq.engine.passes.memory import plan_memory

    # NCHW everywhere: a channel slice of a batch-1 Concat output is contiguous.
    return plan_memory(graph, batch=batch, align=64, inplace=True, concat_views=True)


# ---------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------
def _c_string(s: str) -> str:
    safe = "".join(ch if ch.isprintable() and not ch.isspace() and ch not in '"\\' else "_"
                   for ch in s)
    return f'"{safe or "_"}"'


def _io_tables(graph: Graph, em, pointers: dict[str, str] | None = None) -> list[str]:
    """Per input/output tables: dtype, rank, shape, element count (+ input rule);
    ``pointers``: C expressions of the I/O buffers (default: their arena places)."""
    lines = []
    for prefix, names in (("eq_in", graph.inputs), ("eq_out", graph.outputs)):
        vals = [graph.values[n] for n in names]
        shapes = [[int(d) for d in v.shape] for v in vals]
        n = len(names)
        rows = ", ".join("{" + (", ".join(map(str, s)) or "1") + "}" for s in shapes)
        lines += [
            f"const int {'eq_n_inputs' if prefix == 'eq_in' else 'eq_n_outputs'} = {n};",
            f"const int {prefix}_dtype[{n}] = {{"
            + ", ".join(gen.DTYPE_CODES[np.dtype(v.dtype)] for v in vals) + "};",
            f"const int {prefix}_rank[{n}] = {{{', '.join(str(len(s)) for s in shapes)}}};",
            f"const long {prefix}_shape[{n}][8] = {{{rows}}};",
            f"const size_t {prefix}_numel[{n}] = {{"
            + ", ".join(str(int(np.prod(s, dtype=np.int64))) for s in shapes) + "};",
        ]
        ptrs = ", ".join(f"(void *){pointers[nm] if pointers else em.ptr(nm)}" for nm in names)
        fn = "eq_input" if prefix == "eq_in" else "eq_output"
        lines.append(f"void *{fn}(int k) {{ static void *const p[{n}] = {{{ptrs}}}; "
                     "return p[k]; }")
    qs = [graph.values[n].quant for n in graph.inputs]
    n = len(qs)

    def eps(q):
        return q.eps if q is not None and isinstance(q.eps, float) else 0.0

    lines += [
        f"const int eq_in_quantised[{n}] = {{{', '.join(str(int(q is not None)) for q in qs)}}};",
        f"const double eq_in_eps[{n}] = {{{', '.join(repr(eps(q)) for q in qs)}}};",
        f"const int64_t eq_in_lo[{n}] = {{"
        + ", ".join(gen._c_int(q.range.lo if q else 0) for q in qs) + "};",
        f"const int64_t eq_in_hi[{n}] = {{"
        + ", ".join(gen._c_int(q.range.hi if q else 0) for q in qs) + "};",
    ]
    return lines


MODEL_H = """/* Generated by edgeq: the model's interface (see model.c). */
#ifndef EQ_MODEL_H
#define EQ_MODEL_H
#include <stddef.h>
#include <stdint.h>

/* per input k < eq_n_inputs: dtype code, rank, shape, element count, input rule */
extern const int eq_n_inputs, eq_n_outputs;
extern const int eq_in_dtype[], eq_in_rank[], eq_in_quantised[];
extern const long eq_in_shape[][8];
extern const size_t eq_in_numel[];
extern const double eq_in_eps[];
extern const int64_t eq_in_lo[], eq_in_hi[];
extern const int eq_out_dtype[], eq_out_rank[];
extern const long eq_out_shape[][8];
extern const size_t eq_out_numel[];
extern const int eq_n_layers;
extern const char *const eq_layer_names[];
extern const char *const eq_layer_ops[];
extern const size_t eq_arena_bytes;

void *eq_input(int k);
void *eq_output(int k);
void eq_run(void);
void eq_run_layer(int i);

/* eq_samples > 1: eq_run runs the batch sample by sample (one arena per thread). To time
 * layers: eq_sample_begin(s) loads sample s into the first arena, eq_run_layer(i) runs
 * layer i on it, eq_sample_end(s) stores its outputs. eq_samples == 1: the batch runs
 * whole, begin/end do nothing. */
extern const int eq_samples;
void eq_sample_begin(int s);
void eq_sample_end(int s);

/* post-processing (post.c): eq_post_points 2D points per sample (0: none); after
 * eq_run, eq_post_run writes [N][2][eq_post_points] floats (roi: NULL or 4 doubles) */
extern const int eq_post_points;
void eq_post_run(const double *roi, float *pts);
#endif
"""


SCRATCH_TYPES = {"cols8": "uint8_t", "acc32": "int32_t", "pad8": "uint8_t", "acc64": "int64_t"}


def model_c(graph: Graph, em: gen._Emitter, arena_bytes: int, loop=None) -> str:
    """model.c: data declarations, the arena, the I/O tables and the layer functions;
    ``loop`` (a :class:`~edgeq.engine.backends.c.samples.SampleLoop`): ``graph`` is the
    batch-1 graph and eq_run runs ``loop.samples`` of it, one arena per context."""
    lines = [
        "/* Generated by edgeq: the call sequence of the model. Data is in weights.c,",
        " * kernels in eq_*.c; one static arena holds every activation (memory plan). */",
        "#include <math.h>",
        "#include <stdint.h>",
        "#include <string.h>",
        '#include "eq_kernels.h"',
        '#include "model.h"',
        "",
        *em.decls,
        "",
    ]
    lines += _whole_batch(graph, em, arena_bytes) if loop is None else \
        _sample_buffers(em, arena_bytes, loop)
    for i, (_, _, body) in enumerate(em.layers):
        lines.append(f"static void layer_{i}(void) {{")
        lines += [f"    {b}" for b in body]
        lines.append("}")
    n = len(em.layers)
    names = ", ".join(_c_string(name) for name, _, _ in em.layers) or '""'
    ops = ", ".join(_c_string(op) for _, op, _ in em.layers) or '""'
    table = ", ".join(f"layer_{i}" for i in range(n)) or "0"
    lines += [
        f"const int eq_n_layers = {n};",
        f"const char *const eq_layer_names[] = {{{names}}};",
        f"const char *const eq_layer_ops[] = {{{ops}}};",
        f"static void (*const layers[])(void) = {{{table}}};",
        "void eq_run_layer(int i) { layers[i](); }",
    ]
    lines += _whole_run() if loop is None else _sample_run(graph, em, loop)
    return "\n".join(lines) + "\n"


def _whole_batch(graph: Graph, em: gen._Emitter, arena_bytes: int) -> list[str]:
    lines = [
        f"const size_t eq_arena_bytes = {arena_bytes};",
        f"static uint8_t arena[{max(arena_bytes, 1)}] __attribute__((aligned(64)));",
    ]
    for buf, ctype in SCRATCH_TYPES.items():
        n = em.scratch.get(buf, 0)
        if n:
            lines.append(f"static {ctype} s_{buf}[{n}] __attribute__((aligned(64)));")
    return lines + _io_tables(graph, em)


def _whole_run() -> list[str]:
    return [
        "void eq_run(void) { for (int i = 0; i < eq_n_layers; i++) layers[i](); }",
        "const int eq_samples = 1;",
        "void eq_sample_begin(int s) { (void)s; }",
        "void eq_sample_end(int s) { (void)s; }",
    ]


def _sample_buffers(em: gen._Emitter, arena_bytes: int, loop) -> list[str]:
    """One arena and scratch set per context; the layers reach the thread's own through
    thread-local pointers named like the whole-batch arrays. The batch's inputs and
    outputs live outside the arenas."""
    ctx, size = loop.contexts, max(arena_bytes, 1)
    lines = [
        f"const size_t eq_arena_bytes = {ctx * arena_bytes};",
        f"static uint8_t arenas[{ctx}][{size}] __attribute__((aligned(64)));",
        "static __thread uint8_t *arena;",
    ]
    for buf, ctype in SCRATCH_TYPES.items():
        n = em.scratch.get(buf, 0)
        if n:
            lines += [f"static {ctype} s_{buf}_all[{ctx}][{n}] __attribute__((aligned(64)));",
                      f"static __thread {ctype} *s_{buf};"]
    big = loop.batch_graph
    for prefix, names in (("io_in", big.inputs), ("io_out", big.outputs)):
        for k, name in enumerate(names):
            lines.append(f"static uint8_t {prefix}{k}[{_nbytes(big, name)}] "
                         "__attribute__((aligned(64)));")
    ptrs = {name: f"{p}{k}" for p, names in (("io_in", big.inputs), ("io_out", big.outputs))
            for k, name in enumerate(names)}
    return lines + _io_tables(big, em, ptrs)


def _sample_run(graph: Graph, em: gen._Emitter, loop) -> list[str]:
    """eq_run: each context's thread claims samples until none is left."""
    sets = ["arena = arenas[c];"] + [f"s_{b} = s_{b}_all[c];" for b in SCRATCH_TYPES
                                      if em.scratch.get(b, 0)]
    copy_in = [f"memcpy(arena + {em.offset(n)}, io_in{k} + (size_t)s * {_nbytes(graph, n)}, "
               f"{_nbytes(graph, n)});" for k, n in enumerate(graph.inputs)]
    copy_out = [f"memcpy(io_out{k} + (size_t)s * {_nbytes(graph, n)}, arena + "
                f"{em.offset(n)}, {_nbytes(graph, n)});" for k, n in enumerate(graph.outputs)]
    return [
        f"const int eq_samples = {loop.samples};",
        f"static void use_context(int c) {{ {' '.join(sets)} }}",
        f"static void sample_in(int s) {{ {' '.join(copy_in)} }}",
        f"static void sample_out(int s) {{ {' '.join(copy_out)} }}",
        "static int next_sample;",
        "static void sample_task(void *ctx, int t, int nt) {",
        "    (void)ctx, (void)nt;",
        "    use_context(t);",
        "    for (int s; (s = __atomic_fetch_add(&next_sample, 1, __ATOMIC_RELAXED)) < "
        "eq_samples;) {",
        "        sample_in(s);",
        "        for (int i = 0; i < eq_n_layers; i++) layers[i]();",
        "        sample_out(s);",
        "    }",
        "}",
        "void eq_run(void) {",
        "    next_sample = 0;",
        f"    eq_parallel(sample_task, NULL, {loop.contexts});",
        "}",
        "void eq_sample_begin(int s) { use_context(0); sample_in(s); }",
        "void eq_sample_end(int s) { sample_out(s); }",
    ]


def _nbytes(graph: Graph, name: str) -> int:
    v = graph.values[name]
    return int(np.prod(v.shape, dtype=np.int64)) * np.dtype(v.dtype).itemsize


def weights_c(em: gen._Emitter) -> str:
    return ("/* Generated by edgeq: constant data (weights, biases, requantisation). */\n"
            "#include <math.h>\n#include <stdint.h>\n\n" + "\n".join(em.weights) + "\n")


def makefile(t: Target) -> str:
    srcs = " ".join([*PROGRAM_FILES, *(f for f in KERNEL_FILES if f.endswith(".c"))])
    return f"""# Generated by edgeq. `make` builds run_model with {t.cc} ({t.name}).
CC = {t.cc}
CFLAGS = -std=c99 {t.cflags} -DEQ_THREADS -pthread -Wall -Wextra -Werror
LDFLAGS = {t.ldflags}
SRCS = {srcs}

run_model: $(SRCS) weights.o eq_kernels.h model.h
\t$(CC) $(CFLAGS) -o $@ $(SRCS) weights.o $(LDFLAGS) -lm

# data only: no optimisation needed, and large initialisers compile faster at -O0
weights.o: weights.c
\t$(CC) -std=c99 -O0 -Wall -Wextra -Werror -c -o $@ weights.c

clean:
\trm -f run_model weights.o
"""


def write_sources(graph: Graph, mplan, directory: Path, t: Target, threads: int = 1,
                  post=None, loop=None) -> None:
    """``loop``: a SampleLoop (``graph`` is then the batch-1 graph, each layer runs on one
    thread, the threads take samples), or None."""
    if not 1 <= len(graph.inputs) <= 64 or not 1 <= len(graph.outputs) <= 64:
        raise ConfigError(f"graph '{graph.name}': the C backend takes 1 to 64 inputs and "
                          f"outputs, this graph has {len(graph.inputs)} and {len(graph.outputs)}")
    em = gen.emit(graph, mplan, graph.meta.get("bounds", {}), 1 if loop else threads)
    files = {
        "model.h": MODEL_H,
        "model.c": model_c(graph, em, int(mplan.arena_bytes), loop),
        "weights.c": weights_c(em),
        "post.c": post_c.post_source(graph, post),
        "main.c": harness_source(),
        "Makefile": makefile(t),
    }
    for name in KERNEL_FILES:
        files[name] = kernel_source(name)
    for name, text in files.items():
        (directory / name).write_text(text)


# ---------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------
def _kernel_flags(t: Target) -> list[str]:
    return ["-std=c99", "-Wall", "-Wextra", "-Werror", *t.cflags.split(), "-DEQ_THREADS",
            "-pthread"]


def kernel_objects(t: Target) -> list[Path]:
    """The kernel library's objects for ``t``, compiled once per compiler, flags and
    sources into the cache dir (the kernels are most of a build's compile time; a model
    only adds its call sequence and data)."""
    h = hashlib.sha256(" ".join([t.cc, *_kernel_flags(t)]).encode())
    for name in KERNEL_FILES:
        h.update(name.encode() + kernel_source(name).encode())
    d = cache_dir() / f"kernels-{t.name}-{h.hexdigest()[:20]}"
    objs = [d / (f[:-2] + ".o") for f in KERNEL_FILES if f.endswith(".c")]
    if all(o.exists() for o in objs):
        return objs
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.tmp-", dir=d.parent))
    try:
        for name in KERNEL_FILES:
            (tmp / name).write_text(kernel_source(name))
        _run_cc([t.cc, *_kernel_flags(t), "-c", *(f for f in KERNEL_FILES if f.endswith(".c"))],
                tmp, "the kernel library")
        try:  # another process may have built the same objects meanwhile: keep theirs
            os.rename(tmp, d)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return objs


def build_commands(t: Target) -> list[list[str]]:
    """What the Makefile does, run directly (no dependency on make), with the kernel
    library's cached objects (:func:`kernel_objects`) instead of compiling it again."""
    warn = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
    return [
        [t.cc, *warn, "-O0", "-c", "-o", "weights.o", "weights.c"],
        [t.cc, *_kernel_flags(t), "-o", "run_model", *PROGRAM_FILES,
         *map(str, kernel_objects(t)), "weights.o", *t.ldflags.split(), "-lm"],
    ]


def _run_cc(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"build of {what} failed: {_first_error(proc.stderr + proc.stdout)}")


def build(directory: Path, t: Target) -> Path:
    if shutil.which(t.cc) is None:
        raise BuildError(f"compiler '{t.cc}' for target {t.name} not found on PATH "
                         "(scripts/install-arm-toolchain.sh installs the cross toolchain)")
    for cmd in build_commands(t):
        _run_cc(cmd, directory, directory.name)
    return directory / "run_model"


def shared_commands(t: Target) -> list[list[str]]:
    """``libmodel.so``: the model and its kernels without the harness (position
    independent), for running in the calling process (:meth:`CompiledModel.in_process`)."""
    srcs = ["model.c", "post.c"] + [f for f in KERNEL_FILES if f.endswith(".c")]
    warn = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-fPIC"]
    return [
        [t.cc, *warn, "-O0", "-c", "-o", "weights_pic.o", "weights.c"],
        [t.cc, *warn, *t.cflags.split(), "-DEQ_THREADS", "-pthread", "-shared", "-o",
         "libmodel.so", *srcs, "weights_pic.o", "-lm"],
    ]


def _first_error(text: str) -> str:
    for line in text.splitlines():
        if "error" in line:
            return line.strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[0].strip() if lines else "no compiler output"


@contextlib.contextmanager
def atomic_dir(out: Path):
    """Yield a fresh temporary directory beside ``out``; on success it replaces ``out``,
    on any failure it is removed and ``out`` is left as it was (nothing half-written)."""
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_out_dir(out: Path, force: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise OutputDirError(f"--out '{out}' exists and is not a directory")
        if any(out.iterdir()) and not force:
            raise OutputDirError(f"--out '{out}' is not empty (use --force to replace it)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise OutputDirError(f"--out '{out}': parent directory '{parent}' does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputDirError(f"--out '{out}': directory '{parent}' is not writable")


# ---------------------------------------------------------------------------------
# the compiled model
# ---------------------------------------------------------------------------------
class CompiledModel:
    """A built ``run_model`` plus what it was built from; ``run`` executes it."""

    def __init__(self, graph: Graph, mplan, directory: Path, t: Target, batch: int,
                 loop=None) -> None:
        self.graph = graph  # at the compiled batch: I/O shapes, layer names
        self.plan = mplan  # the memory plan of one context (one sample in a sample loop)
        self.directory = Path(directory)
        self.target = t
        self.batch = batch
        self.loop = loop  # a SampleLoop when the batch runs sample by sample, else None

    @property
    def binary(self) -> Path:
        return self.directory / "run_model"

    @property
    def contexts(self) -> int:
        """Arenas in the program: one per thread in a sample loop, else 1."""
        return self.loop.contexts if self.loop else 1

    @property
    def arena_bytes(self) -> int:
        return self.contexts * int(self.plan.arena_bytes)


    def command(self, *args: str) -> list[str]:
        return [*self.target.runner, str(self.binary), *args]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on ``feeds`` (input name -> array in the input's dtype, or float for a
        quantised input with known ε); returns {output name: array}."""
        with tempfile.TemporaryDirectory(prefix="edgeq-run-") as tmp:
            ins = self._write_inputs(feeds, Path(tmp))
            outs = [str(Path(tmp) / f"out{k}.npy") for k in range(len(self.graph.outputs))]
            proc = subprocess.run(self.command(*ins, *outs), capture_output=True, text=True)
            if proc.returncode != 0:
                detail = proc.stderr.strip() or f"exit status {proc.returncode}"
                raise BuildError(f"{self.binary}: {detail}")
            return {name: np.load(p) for name, p in zip(self.graph.outputs, outs, strict=True)}

    def _write_inputs(self, feeds: dict[str, np.ndarray], tmp: Path) -> list[str]:
        paths = []
        for k, name in enumerate(self.graph.inputs):
            if name not in feeds:
                raise ConfigError(f"input '{name}' was not supplied")
            x = np.ascontiguousarray(feeds[name])
            v = self.graph.values[name]
            if tuple(x.shape) != tuple(v.shape):
                raise ShapeError(f"input '{name}' has shape {list(x.shape)}, the compiled "
                                 f"model expects {list(v.shape)}")
            path = tmp / f"in{k}.npy"
            np.save(path, x)
            paths.append(str(path))
        return paths

    def in_process(self) -> InProcessModel:
        """The model as a shared library loaded into this process (built on first use;
        host target only): same-process timing beside in-process peers such as
        onnxruntime, which a fresh harness process per measurement does not give."""
        if self.target.runner:
            raise ConfigError(f"target {self.target.name} runs under an emulator: no "
                              "in-process library")
        lib = self.directory / "libmodel.so"
        if not lib.exists():
            for cmd in shared_commands(self.target):
                proc = subprocess.run(cmd, cwd=self.directory, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise BuildError(f"shared build of {self.directory.name} failed: "
                                     f"{_first_error(proc.stderr + proc.stdout)}")
        return InProcessModel(self, lib)

    def latency(self, x, repeat: int = 20, per_layer: bool = False):
        """(median ms, [(index, name, op, median_us)]) from ``run_model --repeat``;
        ``x``: the input array, or a feeds dict for several inputs."""
        feeds = x if isinstance(x, dict) else {self.graph.inputs[0]: x}
        with tempfile.TemporaryDirectory(prefix="edgeq-run-") as tmp:
            ins = self._write_inputs(feeds, Path(tmp))
            outs = [str(Path(tmp) / f"out{k}.npy") for k in range(len(self.graph.outputs))]
            args = [*ins, *outs, "--repeat", str(repeat)]
            if per_layer:
                args.append("--per-layer")
            proc = subprocess.run(self.command(*args), capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise BuildError(f"{self.binary}: {proc.stderr.strip()}")
        ms, layers = None, []
        for line in proc.stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == "latency_ms_median":
                ms = float(parts[1])
            elif parts and parts[0] == "layer":
                layers.append((int(parts[1]), parts[2], parts[3], float(parts[4])))
        return ms, layers


class InProcessModel:
    """``libmodel.so`` loaded with ctypes: ``set_input`` copies an input array into the
    arena (the compiled input's shape; values exactly representable in its dtype, no
    quantisation), ``run`` calls ``eq_run``, ``output`` copies an output out."""

    def __init__(self, compiled: CompiledModel, lib: Path) -> None:
        import ctypes

        self.compiled = compiled
        self.lib = ctypes.CDLL(str(lib))
        self.lib.eq_input.restype = ctypes.c_void_p
        self.lib.eq_output.restype = ctypes.c_void_p
        self._memmove = ctypes.memmove
        self.run = self.lib.eq_run  # no arguments, no result: the cheapest ctypes call

    def set_input(self, x: np.ndarray, k: int = 0) -> None:
        v = self.compiled.graph.values[self.compiled.graph.inputs[k]]
        x = np.asarray(x)
        if tuple(x.shape) != tuple(v.shape):
            raise ShapeError(f"input {k}: {x.dtype}{list(x.shape)} given, the compiled model "
                             f"takes {np.dtype(v.dtype)}{list(v.shape)}")
        if x.dtype != np.dtype(v.dtype):
            xc = x.astype(v.dtype)
            if not np.array_equal(xc, x):
                raise ConfigError(f"input {k}: values not representable as {np.dtype(v.dtype)}")
            x = xc
        x = np.ascontiguousarray(x)
        self._memmove(self.lib.eq_input(k), x.ctypes.data, x.nbytes)

    def output(self, k: int = 0) -> np.ndarray:
        v = self.compiled.graph.values[self.compiled.graph.outputs[k]]
        y = np.empty(tuple(v.shape), np.dtype(v.dtype))
        self._memmove(y.ctypes.data, self.lib.eq_output(k), y.nbytes)
        return y


def compile_graph(graph: Graph, out_dir, target_name: str = "host", batch: int = 1,
                  threads: int = 1, force: bool = False, post=None) -> CompiledModel:
    """Prepare, plan, write and build ``graph`` into ``out_dir`` (atomically); ``post``:
    a :class:`~edgeq.engine.backends.c.landmarks.LandmarkPost` or None."""
    if not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"threads must be in [1, {MAX_THREADS}], got {threads}")
    t = target(target_name)
    out = Path(out_dir)
    _check_out_dir(out, force)
    g, one, mplan, loop = prepare_program(graph, batch, threads)
    with atomic_dir(out) as tmp:
        write_sources(one, mplan, tmp, t, threads, post, loop)
        build(tmp, t)
    return CompiledModel(g, mplan, out, t, batch, loop)


def prepare_program(graph: Graph, batch: int, threads: int):
    """(batch-N graph, graph the program runs, its memory plan, SampleLoop or None): the
    batch runs sample by sample when :func:`.samples.sample_loop` allows it."""
    from edgeq.engine.backends.c.samples import sample_loop

    g = prepare_graph(graph, batch)
    loop = None
    if batch > 1:
        one = prepare_graph(graph, 1)
        loop = sample_loop(one, g, batch, threads)
    if loop is None:
        return g, g, plan(g, batch), None
    return g, one, plan(one, 1), loop


def compile_model(model, out_dir, target: str = "host", batch: int = 1, threads: int = 1,
                  force: bool = False, post=None) -> CompiledModel:
    """``model``: an IR Graph, or a path to an ONNX file (imported as ``edgeq.engine.load``)."""
    if not isinstance(model, Graph):
        from edgeq.engine.onnx import import_onnx

        model = import_onnx(model)
    return compile_graph(model, out_dir, target, batch, threads, force, post)


def host_shared_object(src: str, name: str, flags: tuple[str, ...], what: str,
                       key: str = "") -> Path:
    """``src`` compiled by the host gcc with ``flags`` into ``<cache>/<name>-<hash>.so``
    (hash of source, flags and ``key``), once; written atomically, so concurrent builders
    all succeed. ``what`` names the library in errors."""
    digest = hashlib.sha256("\n".join([src, *flags, key]).encode()).hexdigest()[:20]
    out = cache_dir() / f"{name}-{digest}.so"
    if out.exists():
        return out
    if shutil.which("gcc") is None:
        raise BuildError(f"gcc not found: it builds {what}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"edgeq-{name}-", dir=out.parent) as tmp:
        (Path(tmp) / "k.c").write_text(src)
        proc = subprocess.run(["gcc", *flags, "-shared", "-fPIC", "-o", "k.so", "k.c"], cwd=tmp,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"build of {what} failed: {_first_error(proc.stderr + proc.stdout)}")
        os.replace(Path(tmp) / "k.so", out)
    return out


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgeq"


def graph_digest(graph: Graph) -> str:
    """A content hash of a graph: structure, attributes, shapes, dtypes and constants."""
    h = hashlib.sha256()
    h.update(graph.dump().encode())
    for v in sorted(graph.constants(), key=lambda v: v.name):
        h.update(v.name.encode())
        h.update(np.ascontiguousarray(v.data).tobytes())
    return h.hexdigest()


def compile_cached(graph: Graph, target_name: str = "host", batch: int = 1,
                   threads: int = 1, post=None) -> CompiledModel:
    """compile_graph into the user cache dir, keyed by content hash; reuses a built one."""
    post_key = "" if post is None else post.digest()
    key = hashlib.sha256(
        f"{graph_digest(graph)}|{target_name}|{batch}|{threads}|{library_digest()}|{post_key}"
        .encode()).hexdigest()[:24]
    out = cache_dir() / key
    if (out / "run_model").exists():
        g, _, mplan, loop = prepare_program(graph, batch, threads)
        return CompiledModel(g, mplan, out, target(target_name), batch, loop)
    out.parent.mkdir(parents=True, exist_ok=True)
    return compile_graph(graph, out, target_name, batch, threads, force=True, post=post)
