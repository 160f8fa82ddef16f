"""BackendSpec parsing, node assignment and partitioning into runnable segments."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.backends.spec import BackendSpec, Segment, assign, partition
from edgeq.errors import BackendError, ConfigError, EdgeqError
from tests.engine.passes.graphs import random_feeds, tq_graph

ALL = lambda graph, node: True  # noqa: E731
NO_CONV = lambda graph, node: node.op != "Conv"  # noqa: E731


def test_parse_keeps_rule_order_and_puts_default_last():
    spec = BackendSpec.parse(" default=c , Conv=reference,conv1=c")
    assert spec.rules == (("Conv", "reference"), ("conv1", "c"), ("default", "c"))
    assert str(spec) == "Conv=reference,conv1=c,default=c"
    assert BackendSpec.parse(str(spec)) == spec
    assert BackendSpec.parse("c").rules == (("default", "c"),)
    assert BackendSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.rules = ()


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("Conv=c,Relu", "'Relu' is not KEY=BACKEND"),
    ("Conv=", "empty side"),
    ("default=c,default=reference", "'default' given twice"),
    ("Conv=c,Conv=reference", "key 'Conv' has more than one rule"),
    ("Co nv=c", "invalid key 'Co nv'"),
])
def test_malformed_specs_give_one_line_errors(text, match):
    with pytest.raises(ConfigError, match=match) as info:
        BackendSpec.parse(text)
    assert "\n" not in str(info.value) and isinstance(info.value, EdgeqError)


@pytest.fixture(scope="module")
def g():
    return tq_graph("concat")


def test_first_match_wins_by_name_then_op_then_default(g):
    spec = BackendSpec.parse("stem_0=c,Conv=reference,default=c")
    got = assign(g, spec, {"c": ALL, "reference": ALL})
    convs = [n.name for n in g.nodes if n.op == "Conv"]
    assert got["stem_0"] == "c"
    assert all(got[n] == "reference" for n in convs if n != "stem_0")
    assert all(got[n.name] == "c" for n in g.nodes if n.op != "Conv")


def test_explicit_rule_that_cannot_be_honoured_names_the_node(g):
    spec = BackendSpec.parse("branch1_0=c,default=reference")
    with pytest.raises(BackendError, match="node 'branch1_0' \\(Conv\\): rule branch1_0=c"):
        assign(g, spec, {"c": NO_CONV, "reference": ALL})


def test_default_falls_back_to_a_backend_that_can(g):
    got = assign(g, BackendSpec.parse("default=c"), {"c": NO_CONV, "reference": ALL})
    assert {got[n.name] for n in g.nodes if n.op == "Conv"} == {"reference"}
    assert {got[n.name] for n in g.nodes if n.op != "Conv"} == {"c"}


def test_no_backend_or_an_unknown_backend_is_an_error(g):
    with pytest.raises(BackendError, match="node 'stem_0' \\(Conv\\): no backend supports it"):
        assign(g, BackendSpec.parse("default=c"), {"c": NO_CONV})
    with pytest.raises(BackendError, match="unknown backend 'armcl'"):
        assign(g, BackendSpec.parse("Conv=armcl,default=c"), {"c": ALL, "reference": ALL})


def test_partition_into_segments_that_reproduce_the_graph(g):
    got = assign(g, BackendSpec.parse("branch3_0=reference,Gemm=reference,default=c"),
                 {"c": ALL, "reference": ALL})
    segments = partition(g, got)
    assert [s.backend for s in segments] == ["c", "reference", "c", "reference"]
    assert all(isinstance(s, Segment) for s in segments)
    assert [n.name for s in segments for n in s.graph.nodes] == [n.name for n in g.nodes]
    # segment 1 is branch3_0 alone: it reads stem_2, and its accumulator crosses out
    assert segments[1].graph.inputs == ["stem_2"]
    assert segments[1].graph.outputs == ["branch3_0"]
    # segment 0's outputs are exactly what later segments read
    assert set(segments[0].graph.outputs) == {"stem_2", "branch1_2"}
    # running the segments in order, feeding each one from the values so far, gives the
    # whole graph's output
    feeds = random_feeds(g, batch=2)
    env = dict(feeds)
    for s in segments:
        env.update(run_graph(s.graph, {k: env[k] for k in s.graph.inputs}))
    np.testing.assert_array_equal(env[g.outputs[0]], run_graph(g, feeds)[g.outputs[0]])


def test_one_backend_is_one_segment_equal_to_the_graph(g):
    segments = partition(g, {n.name: "c" for n in g.nodes})
    assert len(segments) == 1
    s = segments[0].graph
    assert s.inputs == g.inputs and s.outputs == g.outputs and len(s.nodes) == len(g.nodes)


def test_partition_needs_every_node_assigned(g):
    got = {n.name: "c" for n in g.nodes[1:]}
    with pytest.raises(BackendError, match=f"node '{g.nodes[0].name}' has no backend"):
        partition(g, got)
