"""Mixed ``c``/``armcl`` programs: one static aarch64 binary per BackendSpec.

``compile_mixed(graph, out_dir, backend=SPEC)`` prepares the graph exactly as the C
backend does (concrete shapes, fusion, range proof), assigns every node with
:func:`assign_mixed`, plans one arena, emits the C backend's layers and the armcl
layers into one call sequence, writes the project into a temporary directory next to
``out_dir`` and renames it into place once it has built (nothing half-written).

Build: the C files with ``aarch64-linux-gnu-gcc``, the ACL glue ``eqa_acl.cpp`` with
``aarch64-linux-gnu-g++`` (its object is cached by content hash: ACL's headers are slow
to compile), linked with g++ ``-static`` against ``libarm_compute-static.a`` and
``libarm_compute_core-static.a``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgeq.engine.backends.armcl import generator as agen
from edgeq.engine.backends.c import generator as cgen
from edgeq.engine.backends.c import project as cproj
from edgeq.engine.backends.spec import DEFAULT, BackendSpec, assign
from edgeq.engine.ir import Graph
from edgeq.errors import BackendError, BuildError

ARMCL_TARGET = "cortex-a72"
CXX = "aarch64-linux-gnu-g++"
ACL_INCLUDE = Path("/usr/include/aarch64-linux-gnu")
ACL_LIBDIR = Path("/usr/lib/aarch64-linux-gnu")
ACL_LIBS = ("arm_compute-static", "arm_compute_core-static")
INSTALL_HINT = ("install it with scripts/install-arm-toolchain.sh (apt-get install "
                "libarm-compute-dev:arm64 g++-aarch64-linux-gnu qemu-user)")
ARMCL_FILES = ("eqa_acl.h", "eqa_acl.cpp", "eqa_kernels.h", "eqa_kernels.c")
ACL_GLUE = ("eqa_acl.h", "eqa_acl.cpp")
# rules written for the ONNX ops also match the nodes fusion makes of them
FUSED = {"Conv": "ConvRequant", "Gemm": "GemmRequant", "MatMul": "MatMulRequant"}
SUPPORTS = {"c": cgen.supports, "armcl": agen.supports}


def missing_acl() -> list[str]:
    """What the armcl backend needs and this machine lacks."""
    missing = [t for t in (CXX, "aarch64-linux-gnu-gcc") if shutil.which(t) is None]
    if not (ACL_INCLUDE / "arm_compute" / "runtime" / "NEON" / "NEFunctions.h").exists():
        missing.append(f"ACL headers ({ACL_INCLUDE}/arm_compute)")
    missing += [f"{ACL_LIBDIR}/lib{lib}.a" for lib in ACL_LIBS
                if not (ACL_LIBDIR / f"lib{lib}.a").exists()]
    return missing


def require_acl() -> None:
    missing = missing_acl()
    if missing:
        raise BuildError(f"ARM Compute Library toolchain not found ({', '.join(missing)}); "
                         f"{INSTALL_HINT}")


def armcl_source(name: str) -> str:
    return resources.files("edgeq.engine.backends.armcl").joinpath("kernels", name).read_text()


# ---------------------------------------------------------------------------------
# assignment
# ---------------------------------------------------------------------------------
def fused_spec(raw: Graph, prepared: Graph, spec: BackendSpec) -> BackendSpec:
    """``spec`` with its keys carried through fusion: an op key also names the fused op
    (Conv -> ConvRequant), a linear node's name also names the fused node (which takes
    its RequantShift's name)."""
    names = {n.name for n in prepared.nodes}
    producer = {o: n for n in raw.nodes for o in n.outputs if o}
    renamed = {}
    for node in raw.nodes:
        if node.op == "RequantShift" and node.name in names:
            linear = producer.get(node.inputs[0])
            if linear is not None and linear.op in FUSED:
                renamed[linear.name] = node.name
    rules: list[tuple[str, str]] = []
    for key, backend in spec.rules:
        keys = [renamed.get(key, key)] + ([FUSED[key]] if key in FUSED else [])
        rules += [(k, backend) for k in keys if k not in {r[0] for r in rules}]
    return BackendSpec(tuple(rules))


def assign_mixed(raw: Graph, prepared: Graph, spec: BackendSpec, target: str) -> dict[str, str]:
    """Node name (of ``prepared``) -> ``c``/``armcl``; explicit rules ACL cannot honour,
    and armcl on a target other than cortex-a72, are errors naming the node."""
    spec2 = fused_spec(raw, prepared, spec)
    if "armcl" in spec2.backends and target != ARMCL_TARGET:
        node = next((n.name for n in prepared.nodes
                     if (r := spec2.match(n)) and r[1] == "armcl"), "?")
        raise BackendError(f"node '{node}': the armcl backend runs only on --target "
                           f"{ARMCL_TARGET}, not '{target}' (backend spec '{spec}')")
    for node in prepared.nodes:
        rule = spec2.match(node)
        if rule and rule[0] != DEFAULT and rule[1] == "armcl":
            reason = agen.why_not(prepared, node)
            if reason:
                raise BackendError(f"node '{node.name}' ({node.op}): rule {rule[0]}=armcl "
                                   f"cannot be honoured: ACL cannot run it exactly ({reason})")
    supports = {b: SUPPORTS[b] for b in ("armcl", "c") if b in spec2.backends}
    supports.setdefault("c", cgen.supports)
    unknown = [b for b in spec2.backends if b not in SUPPORTS]
    if unknown:
        raise BackendError(f"backend spec '{spec}': backend '{unknown[0]}' cannot be compiled "
                           "(a program mixes c and armcl)")
    return assign(prepared, spec2, supports)


@dataclass(frozen=True)
class Prepared:
    graph: Graph
    assignment: dict
    conversions: int  # LayoutConvert nodes the layout pass inserted


def prepare_mixed(graph: Graph, spec: BackendSpec, target: str, batch: int = 1) -> Prepared:
    """The C backend's passes (concrete shapes, fusion, range proof), the assignment,
    then the layout pass: armcl convolutions want NHWC, C nodes what the C kernels
    want; ``LayoutConvert`` nodes (run by the C backend) go only where neighbours
    disagree, and are counted."""
    from edgeq.engine.backends.reference import supported_ops
    from edgeq.engine.passes import run_passes
    from edgeq.engine.passes.fusion import fuse_clip, fuse_requant
    from edgeq.engine.passes.layout import CONVERT_OP, NHWC, assign_layouts, c_wanted
    from edgeq.engine.passes.ranges import prove_ranges

    raw = cproj.concretise(graph, batch)
    g = run_passes(raw, [fuse_requant, fuse_clip, prove_ranges], known_ops=supported_ops())
    assignment = assign_mixed(raw, g, spec, target)
    wanted = {k: v for k, v in c_wanted(g).items() if assignment[k] == "c"}
    wanted.update({n.name: NHWC for n in g.nodes
                   if assignment[n.name] == "armcl" and n.op in agen.CONV_OPS})
    out, converts = assign_layouts(g, wanted)
    out.validate()
    for node in out.nodes:
        if node.op == CONVERT_OP:
            assignment[node.name] = "c"
    return Prepared(out, assignment, converts)


# ---------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Emitted:
    model_c: str
    weights_c: str
    armcl_layers: int


def emit_mixed(graph: Graph, mplan, assignment: dict[str, str]) -> Emitted:
    em = cgen._Emitter(graph, mplan, graph.meta.get("bounds", {}), threads=1)
    acl = agen.ArmclLayers()
    for node in graph.nodes:
        if assignment[node.name] == "armcl":
            agen.emit_layer(em, acl, node)
            continue
        if not cgen.supports(graph, node):
            cgen._check_node(graph, node)
            raise cgen._unsupported(node, "op or dtype not implemented")
        cgen._EMIT.get(node.op, cgen._emit_unknown)(em, node)
    text = cproj.model_c(graph, em, int(mplan.arena_bytes))
    if acl.creates:
        # eqa_init() uses arena addresses: it goes after the arena, before the layers
        marker = "static void layer_0(void) {"
        head, sep, tail = text.partition(marker)
        if not sep:
            raise BuildError("model.c has no layer_0: cannot place the ACL handles")
        text = head + "\n".join(acl.prelude()) + "\n" + sep + tail
    return Emitted(text, cproj.weights_c(em), len(acl.creates))


def _c_files() -> list[str]:
    """Every C source of a mixed program: harness, call sequence, post.c, kernels."""
    kernels = [f for f in cproj.KERNEL_FILES if f.endswith(".c")]
    return [*cproj.PROGRAM_FILES, *kernels, "eqa_kernels.c"]


def makefile(t: cproj.Target) -> str:
    srcs = " ".join(_c_files())
    libs = " ".join(f"-l{lib}" for lib in ACL_LIBS)
    return f"""# Generated by edgeq: run_model for {t.name}, C layers plus ACL (armcl) layers.
CC = {t.cc}
CXX = {CXX}
CFLAGS = -std=c99 {t.cflags} -DEQ_THREADS -pthread -Wall -Wextra -Werror
CXXFLAGS = -std=c++14 {t.cflags} -I{ACL_INCLUDE} -Wall -Wextra -Werror
LDLIBS = -L{ACL_LIBDIR} {libs} -pthread -lm
SRCS = {srcs}

run_model: $(SRCS) weights.o eqa_acl.o
\t$(CC) $(CFLAGS) -c $(SRCS)
\t$(CXX) -static -o $@ $(SRCS:.c=.o) weights.o eqa_acl.o $(LDLIBS)

eqa_acl.o: eqa_acl.cpp eqa_acl.h
\t$(CXX) $(CXXFLAGS) -c -o $@ eqa_acl.cpp

weights.o: weights.c
\t$(CC) -std=c99 -O0 -Wall -Wextra -Werror -c -o $@ weights.c

clean:
\trm -f run_model *.o
"""


def write_sources(graph: Graph, mplan, assignment, directory: Path, t: cproj.Target) -> Emitted:
    out = emit_mixed(graph, mplan, assignment)
    files = {"model.h": cproj.MODEL_H, "model.c": out.model_c, "weights.c": out.weights_c,
             "main.c": cproj.harness_source(), "Makefile": makefile(t),
             "post.c": cproj.post_c.post_source(graph, None)}
    for name in cproj.KERNEL_FILES:
        files[name] = cproj.kernel_source(name)
    for name in ARMCL_FILES:
        files[name] = armcl_source(name)
    for name, text in files.items():
        (directory / name).write_text(text)
    return out


# ---------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------
def _run(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"build of {what} failed: {cproj._first_error(proc.stderr + proc.stdout)}")


def acl_object(t: cproj.Target) -> Path:
    """eqa_acl.o, compiled once per content (glue, header, flags) into the cache dir."""
    cxxflags = ["-std=c++14", *t.cflags.split(), f"-I{ACL_INCLUDE}", "-Wall", "-Wextra", "-Werror"]
    h = hashlib.sha256(" ".join(cxxflags).encode())
    for name in ACL_GLUE:
        h.update(armcl_source(name).encode())
    obj = cproj.cache_dir() / f"eqa_acl-{h.hexdigest()[:20]}.o"
    if obj.exists():
        return obj
    obj.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeq-acl-", dir=obj.parent) as tmp:
        for name in ACL_GLUE:
            (Path(tmp) / name).write_text(armcl_source(name))
        _run([CXX, *cxxflags, "-c", "-o", "eqa_acl.o", "eqa_acl.cpp"], Path(tmp), "eqa_acl.cpp")
        os.replace(Path(tmp) / "eqa_acl.o", obj)
    return obj


def build(directory: Path, t: cproj.Target) -> Path:
    require_acl()
    shutil.copyfile(acl_object(t), directory / "eqa_acl.o")
    warn = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
    _run([t.cc, *warn, "-O0", "-c", "-o", "weights.o", "weights.c"], directory, directory.name)
    _run([t.cc, *warn, *t.cflags.split(), "-DEQ_THREADS", "-pthread", "-c",
          *_c_files()], directory, directory.name)
    objs = [Path(f).with_suffix(".o").name for f in _c_files()]
    _run([CXX, "-static", "-o", "run_model", *objs, "weights.o", "eqa_acl.o", f"-L{ACL_LIBDIR}",
          *[f"-l{lib}" for lib in ACL_LIBS], "-pthread", "-lm"], directory, directory.name)
    return directory / "run_model"


# ---------------------------------------------------------------------------------
# the compiled program
# ---------------------------------------------------------------------------------
class MixedModel(cproj.CompiledModel):
    """A built mixed program: the C backend's CompiledModel plus the assignment, the
    count of layout conversions (LayoutConvert nodes, plus the transposes of any NCHW
    armcl conv) and ACL's workspace."""

    def __init__(self, graph, mplan, directory, t, batch, assignment, conversions, spec):
        super().__init__(graph, mplan, directory, t, batch)
        self.assignment = dict(assignment)
        self.conversions = conversions
        self.spec = spec

    @property
    def armcl_layers(self) -> list[str]:
        return [n for n, b in self.assignment.items() if b == "armcl"]

    @property
    def binary_bytes(self) -> int:
        return self.binary.stat().st_size

    def workspace_bytes(self, feeds) -> int:
        """Bytes ACL and its glue keep allocated after one run (0 without armcl layers)."""
        return self.acl_report(feeds)["workspace_bytes"] if self.armcl_layers else 0

    def acl_report(self, feeds) -> dict:
        """One run's ACL figures: workspace bytes, GEMMs, GEMMs reading A in place."""
        with tempfile.TemporaryDirectory(prefix="edgeq-run-") as tmp:
            ins = self._write_inputs(feeds, Path(tmp))
            outs = [str(Path(tmp) / f"out{k}.npy") for k in range(len(self.graph.outputs))]
            proc = subprocess.run(self.command(*ins, *outs), capture_output=True, text=True,
                                  env={**os.environ, "EQ_ACL_REPORT": "1"})
        out = {}
        for line in proc.stderr.splitlines():
            parts = line.split()
            if parts and parts[0] == "acl_workspace_bytes":
                out["workspace_bytes"] = int(parts[1])
            elif parts and parts[0] == "acl_gemms":
                out["gemms"], out["a_in_place"] = int(parts[1]), int(parts[3])
        if len(out) != 3:
            raise BuildError(f"{self.binary}: no ACL report ({proc.stderr.strip()[-200:]})")
        return out


def _fused_conversions(prep: Prepared) -> int:
    """Transposes inside armcl layers: an NCHW armcl conv converts in and out itself."""
    return sum(2 for n in prep.graph.nodes if prep.assignment[n.name] == "armcl"
               and n.op in agen.CONV_OPS and n.attrs.get("layout") != "NHWC")


def _cache_key(prep: Prepared, target: str, batch: int) -> str:
    """Content of a program: the prepared graph, the assignment, target, batch and every
    source (two specs that assign alike share one build)."""
    h = hashlib.sha256(f"{cproj.graph_digest(prep.graph)}|{target}|{batch}|"
                       f"{sorted(prep.assignment.items())}|{cproj.library_digest()}".encode())
    for name in ARMCL_FILES:
        h.update(armcl_source(name).encode())
    for path in (agen.__file__, __file__):
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:24]


def _built(prep: Prepared, target: str, batch: int) -> tuple[Path, object]:
    """The program's build directory in the cache (built there first if missing)."""
    t = cproj.target(target)
    mplan = cproj.plan(prep.graph, batch)
    out = cproj.cache_dir() / f"mixed-{_cache_key(prep, target, batch)}"
    if (out / "run_model").exists():
        return out, mplan
    if "armcl" in prep.assignment.values():
        require_acl()
    with cproj.atomic_dir(out) as tmp:
        write_sources(prep.graph, mplan, prep.assignment, tmp, t)
        if "armcl" in prep.assignment.values():
            build(tmp, t)
        else:
            cproj.build(tmp, t)
    return out, mplan


def _model(prep: Prepared, directory: Path, mplan, target: str, batch: int, spec) -> MixedModel:
    return MixedModel(prep.graph, mplan, directory, cproj.target(target), batch, prep.assignment,
                      prep.conversions + _fused_conversions(prep), spec)


def compile_mixed(graph: Graph, out_dir, backend: str | BackendSpec = "default=armcl",
                  target: str = ARMCL_TARGET, batch: int = 1, force: bool = False) -> MixedModel:
    """Prepare, assign, plan, write and build ``graph`` into ``out_dir`` (atomically: a
    temporary directory renamed into place). Builds are cached by content."""
    spec = backend if isinstance(backend, BackendSpec) else BackendSpec.parse(backend)
    out = Path(out_dir)
    cproj._check_out_dir(out, force)
    prep = prepare_mixed(graph, spec, target, batch)
    if "armcl" in prep.assignment.values():
        require_acl()
    built, mplan = _built(prep, target, batch)
    with cproj.atomic_dir(out) as tmp:
        shutil.copytree(built, tmp, dirs_exist_ok=True)
        for obj in tmp.glob("*.o"):
            obj.unlink()
    return _model(prep, out, mplan, target, batch, spec)


def mixed_cached(graph: Graph, backend: str | BackendSpec = "default=armcl",
                 target: str = ARMCL_TARGET, batch: int = 1) -> MixedModel:
    """The program built in the cache dir, keyed by content (no copy)."""
    spec = backend if isinstance(backend, BackendSpec) else BackendSpec.parse(backend)
    prep = prepare_mixed(graph, spec, target, batch)
    built, mplan = _built(prep, target, batch)
    return _model(prep, built, mplan, target, batch, spec)
