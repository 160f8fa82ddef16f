"""Per-layer cost of each backend on the target, and the ``auto`` backend choice.

The cost of a layer is the number of guest instructions it retires on cortex-a72,
counted under qemu-user by our TCG plugin ``tools/eq_insn_plugin.c`` (qemu wall time
says nothing about a real Cortex-A72; DESIGN §7). Debian's qemu-user 7.2 loads plugins
but ships none, so the plugin is compiled here with the host's gcc (cached). The plugin
counts between the entry of ``eq_run_layer`` and the next ``clock_gettime``, which the
harness calls right after each layer of ``run_model --per-layer``: one count per layer,
after a first full run (ACL's one-off set-up is not counted).

:func:`measure` builds the model twice, all-C and all-ARMCL-where-possible, and returns
a :class:`CostTable` (JSON round trip); :func:`auto_spec` picks per layer the cheaper
exact backend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgeq.engine.backends.c import project as cproj
from edgeq.engine.backends.spec import DEFAULT, BackendSpec
from edgeq.engine.ir import Graph
from edgeq.errors import BuildError, ConfigError

METRIC = "guest instructions retired under qemu-aarch64 -cpu cortex-a72 (TCG plugin)"
NM = "aarch64-linux-gnu-nm"
BACKENDS = ("c", "armcl")


@dataclass(frozen=True)
class CostRow:
    """One layer: its node (as in the prepared graph), op, and instructions per backend
    (None where the backend cannot run it exactly)."""

    node: str
    op: str
    c: int | None
    armcl: int | None

    @property
    def best(self) -> str:
        if self.armcl is not None and (self.c is None or self.armcl < self.c):
            return "armcl"
        return "c"


@dataclass(frozen=True)
class CostTable:
    model: str
    target: str
    batch: int
    rows: tuple[CostRow, ...]
    metric: str = METRIC

    def total(self, backend: str) -> int:
        """Summed cost with ``backend`` where it can run, else C."""
        return sum((getattr(r, backend) if getattr(r, backend) is not None else r.c) or 0
                   for r in self.rows)

    def total_auto(self) -> int:
        return sum(getattr(r, r.best) or 0 for r in self.rows)

    def to_json(self) -> dict:
        return {"model": self.model, "target": self.target, "batch": self.batch,
                "metric": self.metric,
                "layers": [{"node": r.node, "op": r.op, "c": r.c, "armcl": r.armcl,
                            "best": r.best} for r in self.rows],
                "total": {"c": self.total("c"), "armcl": self.total("armcl"),
                          "auto": self.total_auto()}}

    @classmethod
    def from_json(cls, data: dict, where: str = "cost table") -> CostTable:
        try:
            rows = tuple(CostRow(str(r["node"]), str(r["op"]), _opt_int(r["c"]),
                                 _opt_int(r["armcl"])) for r in data["layers"])
            return cls(str(data["model"]), str(data["target"]), int(data["batch"]), rows,
                       str(data.get("metric", METRIC)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: not a cost table ({type(exc).__name__}: {exc})") from None

    def save(self, path) -> None:
        """Write the JSON atomically (temp file, rename)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_json(), f, indent=1)
            f.write("\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path) -> CostTable:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cost table '{path}': {exc}") from None
        return cls.from_json(data, where=f"cost table '{path}'")


def _opt_int(v) -> int | None:
    return None if v is None else int(v)


def auto_spec(table: CostTable) -> BackendSpec:
    """Per layer the cheaper exact backend: ``NODE=armcl`` where ACL wins, else C."""
    rules = [(r.node, "armcl") for r in table.rows if r.best == "armcl"]
    return BackendSpec(tuple(rules) + ((DEFAULT, "c"),))


# ---------------------------------------------------------------------------------
# counting
# ---------------------------------------------------------------------------------
def plugin_path() -> Path:
    """The instruction-count plugin, built with the host gcc once per source."""
    src = resources.files("edgeq.engine.backends.armcl").joinpath(
        "tools", "eq_insn_plugin.c").read_text()
    return cproj.host_shared_object(src, "eq_insn_plugin", ("-O2", "-Wall", "-Wextra", "-Werror"),
                                    "the qemu instruction-count plugin")


def _symbols(binary: Path, names: tuple[str, ...]) -> dict[str, int]:
    if shutil.which(NM) is None:
        raise BuildError(f"{NM} not found (scripts/install-arm-toolchain.sh installs binutils)")
    proc = subprocess.run([NM, str(binary)], capture_output=True, text=True, check=False)
    found = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in names:
            found[parts[2]] = int(parts[0], 16)
    missing = [n for n in names if n not in found]
    if missing:
        raise BuildError(f"{binary}: symbol '{missing[0]}' not found (needed to count per layer)")
    return found


def layer_instructions(cm, feeds) -> list[tuple[str, str, int]]:
    """``(node, op, instructions)`` per emitted layer of a built cortex-a72 program."""
    if cm.target.name != "cortex-a72":
        raise ConfigError("instruction counts are taken on --target cortex-a72 (under qemu)")
    sym = _symbols(cm.binary, ("eq_run_layer", "clock_gettime"))
    plugin = f"{plugin_path()},start={sym['eq_run_layer']:#x},stop={sym['clock_gettime']:#x}"
    with tempfile.TemporaryDirectory(prefix="edgeq-cost-") as tmp:
        ins = cm._write_inputs(feeds, Path(tmp))
        outs = [str(Path(tmp) / f"out{k}.npy") for k in range(len(cm.graph.outputs))]
        cmd = [*cm.target.runner, "-d", "plugin", "-plugin", plugin, str(cm.binary), *ins, *outs,
               "--repeat", "1", "--per-layer"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{cm.binary} under the count plugin: {proc.stderr.strip()[-300:]}")
    layers = [ln.split() for ln in proc.stdout.splitlines() if ln.startswith("layer ")]
    counts = [int(ln.split()[1]) for ln in proc.stderr.splitlines() if ln.startswith("insns ")]
    if len(counts) != len(layers):
        raise BuildError(f"{cm.binary}: {len(counts)} instruction counts for {len(layers)} layers")
    return [(p[2], p[3], n) for p, n in zip(layers, counts, strict=True)]


def measure(graph: Graph, feeds, model: str = "model", batch: int = 1) -> CostTable:
    """Build all-C and all-ARMCL-where-possible programs and count each layer's
    instructions in both (the cost table of ``--backend auto``)."""
    from edgeq.engine.backends.armcl.project import mixed_cached

    per = {}
    for backend, spec in (("c", "c"), ("armcl", "default=armcl")):
        cm = mixed_cached(graph, spec, "cortex-a72", batch)
        counts = {node: (op, n) for node, op, n in layer_instructions(cm, feeds)}
        per[backend] = (cm.assignment, counts)
    c_counts, (armcl_assign, armcl_counts) = per["c"][1], per["armcl"]
    rows = []
    for node, (op, n) in c_counts.items():
        a = armcl_counts.get(node)
        exact = armcl_assign.get(node) == "armcl"
        rows.append(CostRow(node, op, n, a[1] if a is not None and exact else None))
    return CostTable(model, "cortex-a72", batch, tuple(rows))


def format_table(table: CostTable) -> str:
    """c and armcl side by side, per layer and in total (instructions, thousands)."""
    w = max([4] + [len(r.node) for r in table.rows])
    ow = max([2] + [len(r.op) for r in table.rows])
    lines = [f"cost on {table.target}: {table.metric}, batch {table.batch}",
             f"{'node':{w}}  {'op':{ow}}  {'c kinsn':>12}  {'armcl kinsn':>12}  {'armcl/c':>7}"
             "  best"]
    for r in table.rows:
        a = f"{r.armcl / 1e3:12.1f}" if r.armcl is not None else f"{'-':>12}"
        ratio = f"{r.armcl / r.c:7.2f}" if r.armcl is not None and r.c else f"{'':>7}"
        lines.append(f"{r.node:{w}}  {r.op:{ow}}  {(r.c or 0) / 1e3:12.1f}  {a}  {ratio}  {r.best}")
    lines.append(f"{'total':{w}}  {'':{ow}}  {table.total('c') / 1e3:12.1f}  "
                 f"{table.total('armcl') / 1e3:12.1f}  "
                 f"{table.total('armcl') / max(table.total('c'), 1):7.2f}")
    lines.append(f"auto (per layer the cheaper): {table.total_auto() / 1e3:.1f} kinsn, "
                 f"{sum(r.best == 'armcl' for r in table.rows)} layers on armcl")
    return "\n".join(lines)
