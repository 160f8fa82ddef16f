"""Static memory planning: every non-constant tensor gets a byte offset in one arena.

Steps (:func:`plan_memory`):

1. **Sizes.** A tensor takes ``numel * np.dtype(value.dtype).itemsize`` bytes (the C
   backend stores each tensor in its value's NumPy dtype); symbolic dims are ``batch``.
2. **Aliases.** Reshape/Flatten/Squeeze/Unsqueeze/Identity outputs are views of their
   input's bytes; with ``concat_views`` a Concat input is written straight into its slice
   of the Concat output when that slice is contiguous (every dim before the axis is 1)
   and the dtypes agree, so the Concat copies nothing for it.
3. **In place.** A node of :data:`INPLACE_OPS` writes its output over input 0 when that
   input (and everything sharing its bytes) is read by no later node, is not a graph
   input, and the output's element size is not larger -- a forward elementwise loop then
   never overwrites an element it has yet to read.
4. **Groups.** Tensors sharing bytes form a group with one lifetime: from the first
   node defining a member to the last node reading one (graph outputs live to the end).
5. **Placement.** Greedy by size with best fit (as TFLM's GreedyMemoryPlanner, TVM's
   greedy_by_size): groups, largest first, go into the smallest gap between the groups
   already placed whose lifetimes overlap theirs, else on top. Several orders are tried
   (size, size x duration, earliest start) and the smallest arena is kept.

``lower_bound`` is the largest total of bytes of groups live at one step: no plan with
these aliases can use less. :func:`simulate` re-checks a plan tensor by tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq.engine.ir import Graph, Node
from edgeq.errors import EdgeqError

VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
INPLACE_OPS = frozenset({"RequantShift", "Relu", "Clip", "HarmonisedAdd"})


class MemoryPlanError(EdgeqError):
    """A tensor the planner cannot size, or a plan whose live tensors overlap."""


@dataclass(frozen=True)
class Buffer:
    offset: int
    nbytes: int

    @property
    def end(self) -> int:
        return self.offset + self.nbytes


@dataclass(frozen=True)
class MemoryPlan:
    """Byte offsets of every non-constant tensor in one arena."""

    buffers: dict[str, Buffer]
    aliases: dict[str, tuple[str, int]]  # value -> (base value, byte offset in the base)
    inplace: frozenset[str]  # node names whose output overwrites their input 0
    arena_bytes: int
    lower_bound: int
    batch: int = 1

    @property
    def ratio(self) -> float:
        return self.arena_bytes / self.lower_bound if self.lower_bound else 1.0

    def to_json(self) -> dict:
        return {
            "buffers": {k: [b.offset, b.nbytes] for k, b in self.buffers.items()},
            "aliases": {k: list(v) for k, v in self.aliases.items()},
            "inplace": sorted(self.inplace),
            "arena_bytes": self.arena_bytes,
            "lower_bound": self.lower_bound,
            "batch": self.batch,
        }


# -- lifetimes -------------------------------------------------------------------------------


@dataclass
class _Tensor:
    name: str
    nbytes: int
    first: int  # step (node index) that defines it; graph inputs: 0
    last: int  # last step reading it; graph outputs: the final step
    itemsize: int


def _tensors(graph: Graph, batch: int) -> dict[str, _Tensor]:
    final = max(len(graph.nodes) - 1, 0)
    out: dict[str, _Tensor] = {}
    for name in graph.inputs:
        out[name] = _make(graph, name, 0, batch)
    for i, node in enumerate(graph.nodes):
        for name in node.outputs:
            if name:
                out[name] = _make(graph, name, i, batch)
        for name in node.inputs:
            if name in out:
                out[name].last = max(out[name].last, i)
    for name in graph.outputs:
        if name in out:
            out[name].last = final
    return out


def _make(graph: Graph, name: str, step: int, batch: int) -> _Tensor:
    v = graph.values[name]
    if v.shape is None or v.dtype is None:
        raise MemoryPlanError(f"value '{name}': unknown shape or dtype; cannot plan its memory")
    dims = [d if isinstance(d, int) else batch for d in v.shape]
    size = int(np.dtype(v.dtype).itemsize)
    return _Tensor(name, int(np.prod(dims, dtype=np.int64)) * size, step, step, size)


# -- aliases and in-place ----------------------------------------------------------------------


class _Groups:
    """Union of tensors sharing bytes: each member's offset inside its group's root."""

    def __init__(self, tensors: dict[str, _Tensor]) -> None:
        self.t = tensors
        self.parent: dict[str, tuple[str, int]] = {}  # member -> (parent, offset in parent)

    def root(self, name: str) -> tuple[str, int]:
        off = 0
        while name in self.parent:
            name, o = self.parent[name]
            off += o
        return name, off

    def join(self, member: str, base: str, offset: int) -> None:
        self.parent[member] = (base, offset)

    def members(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name in self.t:
            out.setdefault(self.root(name)[0], []).append(name)
        return out

    def span(self, root: str) -> tuple[int, int]:
        ms = [self.t[m] for m in self.members()[root]]
        return min(m.first for m in ms), max(m.last for m in ms)


def _find_views(graph: Graph, t: dict[str, _Tensor], groups: _Groups, aliases: dict) -> None:
    for node in graph.nodes:
        if not (node.op in VIEW_OPS or _order_kept(graph, node)) or not node.outputs or (
                not node.outputs[0]):
            continue
        src, dst = node.inputs[0], node.outputs[0]
        if src in t and dst in t and t[src].nbytes == t[dst].nbytes and (
                t[src].itemsize == t[dst].itemsize):
            groups.join(dst, src, 0)
            aliases[dst] = (src, 0)


def _order_kept(graph: Graph, node: Node) -> bool:
    """A LayoutConvert that keeps the byte order (e.g. NCHW -> NHWC with C == 1) is a view."""
    if node.op != "LayoutConvert":
        return False
    from edgeq.engine.passes.layout import keeps_byte_order

    return keeps_byte_order(graph.values[node.inputs[0]].shape, node.attrs["perm"])


def _find_concat_slices(graph: Graph, t: dict, groups: _Groups, aliases: dict,
                        batch: int) -> None:
    hosted: set[str] = set()
    for node in graph.nodes:
        out = graph.values[node.outputs[0]] if node.op == "Concat" else None
        if out is None or out.name not in t:
            continue
        axis = int(node.attrs.get("axis", 0)) % len(out.shape)
        before = [d if isinstance(d, int) else batch for d in out.shape[:axis]]
        if any(d != 1 for d in before):
            continue  # the slices of the inputs are strided, not contiguous
        offset = 0
        for name in node.inputs:
            v = graph.values[name]
            if _can_host(graph, node, name, t, groups, hosted) and v.dtype == out.dtype:
                groups.join(name, out.name, offset)
                aliases[name] = (out.name, offset)
                hosted.add(name)
            # the slice's place counts the output's elements (an input may be narrower)
            offset += t[out.name].itemsize * _numel(v, batch)


def _numel(v, batch: int) -> int:
    shape = v.data.shape if v.is_const else v.shape
    return int(np.prod([d if isinstance(d, int) else batch for d in shape], dtype=np.int64))


def _can_host(graph: Graph, node: Node, name: str, t, groups: _Groups, hosted) -> bool:
    """Can input ``name`` of this Concat live inside the Concat's output?"""
    if name not in t or name in graph.inputs or name in hosted or name in groups.parent:
        return False
    # an input read twice by the Concat has one place only; a view has its base's place
    return node.inputs.count(name) == 1 and groups.root(name)[0] == name


def _find_inplace(graph: Graph, t: dict, groups: _Groups) -> set[str]:
    chosen: set[str] = set()
    for i, node in enumerate(graph.nodes):
        if node.op not in INPLACE_OPS or not node.inputs or not node.outputs[0]:
            continue
        src, dst = node.inputs[0], node.outputs[0]
        if src not in t or dst not in t or dst in groups.parent:
            continue
        if t[dst].itemsize > t[src].itemsize or t[dst].nbytes > t[src].nbytes:
            continue
        root, off = groups.root(src)
        members = groups.members()[root]
        if any(groups.root(n)[0] == root for n in (*graph.inputs, *graph.outputs)):
            continue  # caller-visible bytes: a graph input, or an output still to be read
        if any(t[m].last > i for m in members) or any(
                groups.root(n)[0] == root for n in node.inputs[1:] if n in t):
            continue  # some byte of the input is read later, or by this node elsewhere
        groups.join(dst, src, 0)
        chosen.add(node.name)
    return chosen


# -- placement ---------------------------------------------------------------------------------


@dataclass
class _Group:
    root: str
    nbytes: int
    first: int
    last: int


def _lower_bound(groups: list[_Group], steps: int) -> int:
    live = [0] * (steps + 1)
    for g in groups:
        for s in range(g.first, g.last + 1):
            live[s] += g.nbytes
    return max(live, default=0)


def _place(order: list[_Group], align: int) -> tuple[dict[str, int], int]:
    placed: list[tuple[_Group, int]] = []
    offsets: dict[str, int] = {}
    for g in order:
        busy = sorted(
            (off, off + _round(p.nbytes, align)) for p, off in placed
            if p.first <= g.last and g.first <= p.last)
        offsets[g.root] = _best_fit(busy, _round(g.nbytes, align), align)
        placed.append((g, offsets[g.root]))
    top = max((off + _round(g.nbytes, align) for g, off in placed), default=0)
    return offsets, top


def _best_fit(busy: list[tuple[int, int]], size: int, align: int) -> int:
    best, best_gap, cursor = None, None, 0
    for start, end in busy:
        if start - cursor >= size and (best_gap is None or start - cursor < best_gap):
            best, best_gap = cursor, start - cursor
        cursor = max(cursor, _round(end, align))
    return cursor if best is None else best


def _round(n: int, align: int) -> int:
    return -(-n // align) * align


def plan_memory(graph: Graph, batch: int = 1, align: int = 16, inplace: bool = True,
                concat_views: bool = True) -> MemoryPlan:
    """Plan one arena for ``graph`` (module docstring); offsets are ``align``-aligned."""
    if batch < 1 or align < 1:
        raise MemoryPlanError(f"batch and align must be >= 1, got {batch} and {align}")
    t = _tensors(graph, batch)
    groups, aliases = _Groups(t), {}
    _find_views(graph, t, groups, aliases)
    if concat_views:
        _find_concat_slices(graph, t, groups, aliases, batch)
    chosen = _find_inplace(graph, t, groups) if inplace else set()
    gs = []
    for root, members in groups.members().items():
        size = max(groups.root(m)[1] + t[m].nbytes for m in members)
        first, last = min(t[m].first for m in members), max(t[m].last for m in members)
        gs.append(_Group(root, size, first, last))
    orders = (
        sorted(gs, key=lambda g: (-g.nbytes, g.first)),
        sorted(gs, key=lambda g: (-g.nbytes * (g.last - g.first + 1), g.first)),
        sorted(gs, key=lambda g: (g.first, -g.nbytes)),
    )
    offsets, arena = min((_place(o, align) for o in orders), key=lambda r: r[1])
    buffers = {}
    for name, tensor in t.items():
        root, off = groups.root(name)
        buffers[name] = Buffer(offsets[root] + off, tensor.nbytes)
    return MemoryPlan(buffers, aliases, frozenset(chosen), arena,
                      _lower_bound(gs, len(graph.nodes)), batch)


# -- checking ----------------------------------------------------------------------------------


def simulate(graph: Graph, plan: MemoryPlan) -> None:
    """Re-check ``plan`` step by step; raise MemoryPlanError on any conflict.

    At every step, every two live tensors (defined at or before it, read at or after it)
    must use disjoint bytes unless they are views of the same data (alias chains) or they
    are the input 0 and output of an in-place node at that very step. Every buffer lies
    inside the arena, and an in-place node's output element is never wider.
    """
    t = _tensors(graph, plan.batch)
    missing = set(t) - set(plan.buffers)
    if missing:
        raise MemoryPlanError(f"no buffer for tensor(s) {sorted(missing)}")
    for name, b in plan.buffers.items():
        if b.offset < 0 or b.end > plan.arena_bytes:
            raise MemoryPlanError(f"tensor '{name}' [{b.offset}, {b.end}) leaves the arena")
    inplace_at = _inplace_pairs(graph, plan, t)
    for step in range(len(graph.nodes)):
        live = sorted((n for n, x in t.items() if x.first <= step <= x.last),
                      key=lambda n: plan.buffers[n].offset)
        for i, a in enumerate(live):
            ba = plan.buffers[a]
            for b in live[i + 1:]:
                bb = plan.buffers[b]
                if bb.offset >= ba.end:
                    break
                if bb.nbytes == 0 or ba.nbytes == 0 or _related(plan, a, b):
                    continue
                if inplace_at.get(step) in ((a, b), (b, a)):
                    continue
                raise MemoryPlanError(
                    f"step {step} (node '{graph.nodes[step].name}'): live tensors '{a}' "
                    f"[{ba.offset}, {ba.end}) and '{b}' [{bb.offset}, {bb.end}) overlap")


def _inplace_pairs(graph: Graph, plan: MemoryPlan, t) -> dict[int, tuple[str, str]]:
    pairs = {}
    for i, node in enumerate(graph.nodes):
        if node.name not in plan.inplace:
            continue
        src, dst = node.inputs[0], node.outputs[0]
        if node.op not in INPLACE_OPS or t[dst].itemsize > t[src].itemsize:
            raise MemoryPlanError(f"node '{node.name}' ({node.op}) cannot run in place")
        if plan.buffers[src].offset != plan.buffers[dst].offset:
            raise MemoryPlanError(f"in-place node '{node.name}': output not at its input")
        pairs[i] = (src, dst)
    return pairs


def _related(plan: MemoryPlan, a: str, b: str) -> bool:
    """``a`` and ``b`` are views of one tensor (alias chains meeting at a common base, at
    the offsets the chains give) and one's bytes contain the other's: the same data."""
    chain_a, chain_b = _chain(plan, a), _chain(plan, b)
    common = set(chain_a) & set(chain_b)
    if not common:
        return False
    base = next(iter(common))
    ba, bb = plan.buffers[a], plan.buffers[b]
    origin = plan.buffers[base].offset
    if ba.offset != origin + chain_a[base] or bb.offset != origin + chain_b[base]:
        return False
    inside = (ba.offset <= bb.offset and bb.end <= ba.end) or (
        bb.offset <= ba.offset and ba.end <= bb.end)
    return inside


def _chain(plan: MemoryPlan, name: str) -> dict[str, int]:
    """``name`` and every base it is a view of -> its byte offset inside that base."""
    out, off = {name: 0}, 0
    while name in plan.aliases:
        name, o = plan.aliases[name]
        off += o
        out[name] = off
    return out
