"""Every armcl layer type, bit-exact against the reference backend under qemu, in one
all-ARMCL binary and one mixed c/armcl binary (the chain of layers.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine.backends.armcl import mixed_cached
from edgeq.engine.backends.reference.executor import run_graph
from tests.engine.backends.armcl.layers import layer_chain
from tests.engine.passes.graphs import random_feeds

FEEDS = [dict(seed=0), dict(seed=1), dict(extreme="lo"), dict(extreme="hi")]


@pytest.fixture(scope="module")
def chain():
    return layer_chain()


def _check_all(cm, g):
    for kw in FEEDS:
        feeds = random_feeds(g, batch=1, **kw)
        want, got = run_graph(g, feeds), cm.run(feeds)
        for name in g.outputs:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} {kw}")


def test_every_layer_type_runs_on_acl_bit_exact(acl, chain):
    g, linear = chain
    cm = mixed_cached(g, "default=armcl")
    assert sorted(cm.armcl_layers) == sorted(linear)
    _check_all(cm, g)
    # a second run of the same process reuses ACL's prepared weights: run twice
    feeds = random_feeds(g, batch=1, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(cm.run(feeds).values(),
                                                    cm.run(feeds).values(), strict=True))


def test_mixed_program_rules_by_conv_name_and_op(acl, chain):
    g, _ = chain
    # rules name the ONNX conv (fused into its RequantShift's node) and an op type
    cm = mixed_cached(g, "default=c,c3s2=armcl,c1s=armcl,MatMul=armcl")
    assert sorted(cm.armcl_layers) == ["c1s_rq", "c3s2_rq", "fc_u_rq"]
    assert cm.assignment["c3s1_rq"] == cm.assignment["c1u_rq"] == "c"
    _check_all(cm, g)


def test_layout_conversions_only_where_neighbours_disagree(acl, chain):
    g, _ = chain
    cm = mixed_cached(g, "default=armcl")
    converts = [n for n in cm.graph.nodes if n.op == "LayoutConvert"]
    assert cm.conversions == len(converts) > 0
    producer = {o: n for n in cm.graph.nodes for o in n.outputs}
    for cv in converts:
        src = producer.get(cv.inputs[0])
        src_layout = src.attrs.get("layout", "NCHW") if src is not None else "NCHW"
        readers = [n.attrs.get("layout", "NCHW") for n in cm.graph.nodes
                   if cv.outputs[0] in n.inputs]
        if cv.outputs[0] in cm.graph.outputs:
            readers.append("NCHW")  # graph outputs stay NCHW
        assert readers and all(lay != src_layout for lay in readers)
