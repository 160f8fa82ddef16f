"""plan_memory: arena within 1.05x of the live-bytes lower bound on the model families,
views/slices/in-place where (and only where) they are safe, and plans that really work:
each graph is executed with all its tensors inside one byte arena at the planned offsets
and must give the reference outputs; the simulator rejects overlapping plans."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.passes.fusion import fuse_clip, fuse_requant
from edgeq.engine.passes.memory import Buffer, MemoryPlanError, plan_memory, simulate
from edgeq.numerics import IntRange
from tests.engine.passes.graphs import (
    U8,
    const,
    graph,
    node,
    random_feeds,
    run_in_arena,
    tq_graph,
    value,
)

S8 = IntRange.from_bits(8, True)


def _check(g, plan, batch, seeds=(0,)):
    simulate(g, plan)
    for seed in seeds:
        feeds = random_feeds(g, batch=batch, seed=seed)
        want = run_graph(g, feeds)
        got = run_in_arena(g, plan, feeds)
        for name in g.outputs:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _model(name, dronet_dir=None):
    if name == "dronet":
        from edgeq.engine import load

        return load(dronet_dir / "DRONETV3_ql_integerized.onnx").graph
    return tq_graph(name)


@pytest.mark.parametrize("name", ["mobilenet", "resnet", "concat", "dronet"])
def test_arena_within_5_percent_of_the_lower_bound(name, request):
    dronet = request.getfixturevalue("dronet_dir") if name == "dronet" else None
    g = _model(name, dronet)
    for variant in (g, fuse_clip(fuse_requant(g))):
        for batch in (1, 8):
            plan = plan_memory(variant, batch=batch)
            assert plan.arena_bytes <= 1.05 * plan.lower_bound, (name, batch, plan.ratio)
            # the bound is a true lower bound: at least the largest single group
            assert plan.lower_bound >= max(b.nbytes for b in plan.buffers.values())
            simulate(variant, plan)
    fused = fuse_clip(fuse_requant(g))
    _check(fused, plan_memory(fused, batch=1), batch=1)
    if name != "mobilenet":  # (time) the unfused MobileNet would repeat the same check
        _check(g, plan_memory(g, batch=2), batch=2)


def chain_graph():
    """x u8 -> Conv(int64 acc) -> RequantShift(s8) -> Flatten -> y; plus a skip read."""
    rng = np.random.default_rng(0)
    nodes = [node("Conv", "conv", ["x", "w"], ["acc"], kernel_shape=[1, 1]),
             node("RequantShift", "rq", ["acc", "mul", "add"], ["q"], shift=4, lo=-128, hi=127),
             node("Flatten", "flat", ["q"], ["y"], axis=1)]
    vals = [value("x", ("N", 2, 3, 3), np.uint8, U8),
            const("w", rng.integers(-9, 9, (4, 2, 1, 1)).astype(np.int8)),
            value("acc", ("N", 4, 3, 3), np.int64), const("mul", np.int64(3)),
            const("add", np.int64(1)), value("q", ("N", 4, 3, 3), np.int8, S8),
            value("y", ("N", 36), np.int8, S8)]
    return graph(nodes, vals, ["x"], ["y"])


def test_views_and_in_place_on_a_chain():
    g = chain_graph()
    plan = plan_memory(g)
    assert plan.aliases == {"y": ("q", 0)}
    assert plan.buffers["y"] == plan.buffers["q"] == Buffer(plan.buffers["acc"].offset, 36)
    assert plan.inplace == {"rq"}  # int8 over the dying int64 accumulator
    assert plan.buffers["acc"].nbytes == 36 * 8
    # x (18 B) and acc (288 B) are live together; the in-place q shares acc's bytes
    assert plan.lower_bound == 18 + 288
    _check(g, plan, batch=1)
    off = plan_memory(g, inplace=False)
    assert off.inplace == frozenset() and off.lower_bound == 288 + 36
    _check(g, off, batch=1)


def test_no_in_place_when_the_input_is_read_later_or_the_output_is_wider():
    g = chain_graph()
    g.outputs.append("acc")  # acc must survive the requant
    assert plan_memory(g).inplace == frozenset()
    g = chain_graph()
    g.values["q"] = value("q", ("N", 4, 3, 3), np.int16, IntRange.from_bits(16, True))
    g.values["y"] = value("y", ("N", 36), np.int16)
    g.nodes[0] = node("Relu", "conv", ["x"], ["acc"])  # u8 -> u8
    g.values["acc"] = value("acc", ("N", 2, 3, 3), np.uint8, U8)
    g.values["q"].shape = g.values["acc"].shape
    g.values["y"].shape = ("N", 18)
    plan = plan_memory(g, batch=2)
    assert "rq" not in plan.inplace  # int16 output over a uint8 input would run ahead
    _check(g, plan, batch=2)


def concat_graph(axis_dims=("N",)):
    """x -> Relu a, Relu b -> Concat(a, b, axis 1) -> Relu -> y."""
    shape = lambda c: (*axis_dims, c, 2, 2)  # noqa: E731
    nodes = [node("Relu", "ra", ["x"], ["a"]), node("Relu", "rb", ["x"], ["b"]),
             node("Concat", "cat", ["a", "b"], ["c"], axis=len(axis_dims)),
             node("Relu", "out", ["c"], ["y"])]
    vals = [value("x", shape(3), np.int8, S8), value("a", shape(3), np.int8),
            value("b", shape(3), np.int8), value("c", shape(6), np.int8),
            value("y", shape(6), np.int8)]
    return graph(nodes, vals, ["x"], ["y"])


def test_concat_inputs_become_contiguous_slices():
    g = concat_graph()
    plan = plan_memory(g, batch=1)
    assert plan.aliases == {"a": ("c", 0), "b": ("c", 12)}
    assert plan.buffers["a"].offset == plan.buffers["c"].offset
    assert plan.buffers["b"].offset == plan.buffers["c"].offset + 12
    _check(g, plan, batch=1)
    # batch 2: the slices of a and b interleave per sample, so no views
    plan2 = plan_memory(g, batch=2)
    assert plan2.aliases == {}
    _check(g, plan2, batch=2)
    assert plan_memory(g, batch=1, concat_views=False).aliases == {}


def test_concat_of_one_value_twice_or_of_a_graph_input_copies():
    g = concat_graph()
    g.nodes[2].inputs = ["a", "a"]
    g.nodes.pop(1)
    del g.values["b"]
    assert plan_memory(g).aliases == {}
    g = concat_graph()
    g.nodes[2].inputs = ["x", "b"]
    g.nodes.pop(0)
    del g.values["a"]
    assert plan_memory(g).aliases == {"b": ("c", 12)}


def test_simulator_rejects_overlapping_live_tensors():
    g = chain_graph()
    plan = plan_memory(g, inplace=False)
    bad = dict(plan.buffers)
    bad["acc"] = Buffer(plan.buffers["x"].offset, plan.buffers["acc"].nbytes)
    broken = dataclasses.replace(plan, buffers=bad,
                                 arena_bytes=max(b.end for b in bad.values()))
    with pytest.raises(MemoryPlanError, match="step 0 .*'x'.*'acc'|step 0 .*'acc'.*'x'"):
        simulate(g, broken)
    with pytest.raises(MemoryPlanError, match="leaves the arena"):
        simulate(g, dataclasses.replace(plan, arena_bytes=10))
    # claiming in-place for a node whose input is still read later is caught
    g.outputs.append("acc")
    plan = plan_memory(g)
    bad = dict(plan.buffers)
    bad["q"] = Buffer(plan.buffers["acc"].offset, 36)
    bad["y"] = bad["q"]
    with pytest.raises(MemoryPlanError, match="overlap"):
        simulate(g, dataclasses.replace(plan, buffers=bad, inplace=frozenset({"rq"})))


@st.composite
def random_dag(draw):
    """A random DAG of Relu / Add / Concat / Flatten / RequantShift over int8 tensors."""
    n = draw(st.integers(2, 12))
    vals = [value("x", (1, 2, 2, 2), np.int8, S8)]
    avail = {"x": 2}  # name -> channels
    nodes = []
    for i in range(n):
        names = sorted(avail)
        op = draw(st.sampled_from(["Relu", "Add", "Concat", "RequantShift", "Flatten"]))
        a = draw(st.sampled_from(names))
        out = f"v{i}"
        if op == "Add":
            same = [k for k in names if avail[k] == avail[a]]
            b = draw(st.sampled_from(same))
            nodes.append(node("Add", f"n{i}", [a, b], [out]))
            ch = avail[a]
            dt = np.int16
        elif op == "Concat":
            b = draw(st.sampled_from(names))
            nodes.append(node("Concat", f"n{i}", [a, b], [out], axis=1))
            ch = avail[a] + avail[b]
            dt = None
        elif op == "RequantShift":
            nodes.append(node("RequantShift", f"n{i}", [a, "mul", "add"], [out], shift=1,
                              lo=-128, hi=127))
            ch, dt = avail[a], np.int8
        elif op == "Flatten":
            nodes.append(node("Reshape", f"n{i}", [a, "shape"], [out]))
            ch, dt = avail[a], None
        else:
            nodes.append(node("Relu", f"n{i}", [a], [out]))
            ch, dt = avail[a], None
        avail[out] = ch
        vals.append(value(out, (1, ch, 2, 2), dt or np.int8))
    outs = draw(st.lists(st.sampled_from(sorted(avail)[1:] or ["x"]), min_size=1,
                         max_size=3, unique=True))
    vals += [const("mul", np.int8(3)), const("add", np.int8(-1)),
             const("shape", np.array([1, -1, 2, 2], np.int64))]
    return nodes, vals, outs


def _dtypes_from_a_trial_run(nodes, vals, outs):
    """Declare each value's dtype as the widest the reference gives on the inputs the test
    uses (an integer Add's dtype depends on whether its exact result fits)."""
    g = graph(nodes, vals, ["x"], outs)
    widest: dict[str, np.dtype] = {}
    for feeds in (random_feeds(g, batch=1, seed=0), random_feeds(g, batch=1, seed=1),
                  random_feeds(g, extreme="lo"), random_feeds(g, extreme="hi")):
        run_graph(g, feeds, observe=lambda name, a: widest.__setitem__(
            name, np.promote_types(widest.get(name, a.dtype), a.dtype)))
    for name, dtype in widest.items():
        g.values[name].dtype = dtype
    return g


@settings(max_examples=60, deadline=None)
@given(dag=random_dag(), inplace=st.booleans(), views=st.booleans(), align=st.sampled_from(
    [1, 16]))
def test_random_graphs_run_correctly_inside_their_arena(dag, inplace, views, align):
    g = _dtypes_from_a_trial_run(*dag)
    plan = plan_memory(g, batch=1, align=align, inplace=inplace, concat_views=views)
    assert all(plan.buffers[r].offset % align == 0 for r in plan.buffers
               if r not in plan.aliases and not any(
                   n.name in plan.inplace and n.outputs[0] == r for n in g.nodes))
    assert plan.arena_bytes >= plan.lower_bound
    _check(g, plan, batch=1, seeds=(0, 1))


def test_unplannable_graphs_name_the_value():
    g = chain_graph()
    g.values["acc"].shape = None
    with pytest.raises(MemoryPlanError, match="value 'acc': unknown shape"):
        plan_memory(g)
    with pytest.raises(MemoryPlanError, match="batch and align must be >= 1"):
        plan_memory(chain_graph(), batch=0)
