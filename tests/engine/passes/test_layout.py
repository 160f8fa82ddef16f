"""assign_layouts: conversions only where producer and consumer disagree (counted by
hand), physical shapes, and the same integers as the graph before the pass (reference
backend on both graphs, and in one planned arena)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.engine.backends.reference import supported_ops
from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.passes.layout import (
    NCHW,
    NHWC,
    assign_layouts,
    c_layout,
    layout_convert,
    layout_of,
)
from edgeq.engine.passes.memory import plan_memory
from edgeq.errors import ConfigError
from edgeq.numerics import IntRange
from tests.engine.passes.graphs import (
    S8,
    U8,
    const,
    graph,
    node,
    random_feeds,
    run_in_arena,
    tq_graph,
    value,
)


def _chain(seed: int = 0):
    """x -> Conv a -> RequantShift rq (per channel) -> Relu r -> Conv b (1x1) -> y."""
    rng = np.random.default_rng(seed)
    wa = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    wb = rng.integers(-128, 128, (5, 4, 1, 1)).astype(np.int8)
    mul = rng.integers(1, 2**10, (4, 1, 1)).astype(np.int64)
    add = rng.integers(-2**14, 2**14, (4, 1, 1)).astype(np.int64)
    nodes = [node("Conv", "a", ["x", "wa"], ["acc"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             node("RequantShift", "rq", ["acc", "mul", "add"], ["q"], shift=12, lo=-128, hi=127),
             node("Relu", "r", ["q"], ["p"]),
             node("Conv", "b", ["p", "wb"], ["y"], kernel_shape=[1, 1])]
    vals = [value("x", ("N", 3, 6, 7), np.uint8, U8), const("wa", wa, S8), const("wb", wb, S8),
            value("acc", ("N", 4, 6, 7), np.int64), const("mul", mul), const("add", add),
            value("q", ("N", 4, 6, 7), np.int8, S8), value("p", ("N", 4, 6, 7), np.int8, S8),
            value("y", ("N", 5, 6, 7), np.int64)]
    return graph(nodes, vals, ["x"], ["y"])


def _same(g1, g2, seeds=(0, 1)):
    for seed in seeds:
        feeds = random_feeds(g1, seed=seed)
        a, b = run_graph(g1, feeds), run_graph(g2, feeds)
        for name in g1.outputs:
            assert a[name].shape == b[name].shape
            np.testing.assert_array_equal(a[name], b[name])


def _ops(g):
    return [(n.op, layout_of(n)) for n in g.nodes]


def test_no_wanted_layout_changes_nothing():
    g = _chain()
    out, n = assign_layouts(g, {})
    assert n == 0
    assert [x.name for x in out.nodes] == ["a", "rq", "r", "b"]
    assert all(layout_of(x) == NCHW for x in out.nodes)


def test_nhwc_region_converts_at_its_two_borders_only():
    g = _chain()
    out, n = assign_layouts(g, {"a": NHWC, "b": NHWC})
    out.validate(supported_ops())
    # input x -> NHWC before a; RequantShift and Relu follow a; y back to NCHW after b
    assert n == 2
    assert _ops(out) == [("LayoutConvert", NCHW), ("Conv", NHWC), ("RequantShift", NHWC),
                         ("Relu", NHWC), ("Conv", NHWC), ("LayoutConvert", NCHW)]
    assert out.nodes[0].attrs["perm"] == [0, 2, 3, 1]
    assert out.nodes[-1].attrs["perm"] == [0, 3, 1, 2]
    assert out.values["q"].shape == ("N", 6, 7, 4)  # physical NHWC shape
    assert out.values["y"].shape == ("N", 5, 6, 7)  # graph output stays NCHW
    assert out.inputs == ["x"] and out.outputs == ["y"]
    _same(g, out)


def test_disagreeing_consumer_gets_one_conversion():
    g = _chain()
    out, n = assign_layouts(g, {"a": NHWC})
    assert n == 2  # x -> NHWC, and p -> NCHW before b
    assert _ops(out)[-2:] == [("LayoutConvert", NCHW), ("Conv", NCHW)]
    _same(g, out)


def test_layout_convert_is_a_transpose():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)
    y = layout_convert(x, perm=[0, 2, 3, 1])
    assert y.shape == (2, 4, 5, 3) and y[1, 2, 3, 0] == x[1, 0, 2, 3]
    with pytest.raises(ValueError):
        layout_convert(x, perm=[0, 1, 2])


def test_bad_wanted_names_the_node():
    g = _chain()
    with pytest.raises(ConfigError, match="'nope'"):
        assign_layouts(g, {"nope": NHWC})
    with pytest.raises(ConfigError, match="node 'a'.*'CHWN'"):
        assign_layouts(g, {"a": "CHWN"})


def test_c_layout_prefers_nhwc_for_convolutions_only():
    g = _chain()
    assert c_layout(g.nodes[0]) == NHWC
    assert c_layout(g.nodes[1]) == NCHW


def _consistent(g):
    """Every 4-D activation input is read in its reader's layout (no missing conversion)
    and no LayoutConvert converts a tensor into the layout it already has."""
    lay = {name: NCHW for name in g.inputs}
    for n in g.nodes:
        for i in n.inputs:
            if i in lay and n.op != "LayoutConvert":
                assert lay[i] == layout_of(n), (n.name, i)
        for o in n.outputs:
            if g.values[o].shape is not None and len(g.values[o].shape) == 4:
                if n.op == "LayoutConvert":
                    lay[o] = NHWC if n.attrs["perm"] == [0, 2, 3, 1] else NCHW
                    assert lay[o] != lay[n.inputs[0]]
                else:
                    lay[o] = layout_of(n)


@settings(max_examples=12, deadline=None)
@given(st.lists(st.sampled_from([NCHW, NHWC, None]), min_size=4, max_size=4))
def test_random_assignment_on_the_chain_is_exact_and_minimal(choice):
    g = _chain(1)
    wanted = {n.name: c for n, c in zip(g.nodes, choice, strict=True) if c is not None}
    out, n = assign_layouts(g, wanted)
    out.validate(supported_ops())
    assert n == sum(x.op == "LayoutConvert" for x in out.nodes)
    _consistent(out)
    _same(g, out, seeds=(0,))


@pytest.mark.parametrize("seed", [0, 1])
def test_random_assignment_on_the_residual_family_runs_in_one_arena(seed):
    g = tq_graph("resnet")
    rng = np.random.default_rng(seed)
    wanted = {n.name: str(rng.choice([NCHW, NHWC])) for n in g.nodes}
    out, n = assign_layouts(g, wanted)
    out.validate(supported_ops())
    _consistent(out)
    assert n == sum(x.op == "LayoutConvert" for x in out.nodes) > 0
    _same(g, out, seeds=(seed,))
    feeds = random_feeds(out, batch=2, seed=seed)
    plan = plan_memory(out, batch=2)
    got = run_in_arena(out, plan, feeds)
    want = run_graph(g, feeds)
    for name in g.outputs:
        np.testing.assert_array_equal(got[name], want[name])


def test_per_channel_eps_axis_moves_with_the_channels():
    from edgeq.engine.ir import QuantInfo

    g = _chain()
    g.values["q"].quant = QuantInfo(IntRange.from_bits(8, True), (0.1, 0.2, 0.3, 0.4), 1)
    out, _ = assign_layouts(g, {"a": NHWC})
    assert out.values["q"].quant.axis == 3
