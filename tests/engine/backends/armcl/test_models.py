"""Whole models under qemu, bit-exact against the reference backend: MobileNetV1 3DDFA
(8-bit PACT, F2T), the ResNet with harmonised adds and the QuantLab Dronet fixture (its
golden output), each all-ARMCL-where-possible and as one mixed c/armcl program."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine import load
from edgeq.engine.backends.armcl import mixed_cached, supports
from edgeq.engine.backends.c import project as cproj
from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.tensor_io import read_text_vector
from tests.engine.backends.c.models import tq

DRONET = "../shared/fixtures/quantlab/dronet/"


def _alternate_spec(graph) -> str:
    """Every other node ACL can run goes to armcl, the rest to c."""
    g = cproj.prepare_graph(graph)
    able = [n.name for n in g.nodes if supports(g, n)]
    return ",".join([f"{name}=armcl" for name in able[::2]] + ["default=c"])


def _check(graph, x, spec):
    cm = mixed_cached(graph, spec)
    feeds = {graph.inputs[0]: x}
    want, got = run_graph(graph, feeds), cm.run(feeds)
    for name in graph.outputs:
        np.testing.assert_array_equal(got[name], want[name])
    return cm


@pytest.mark.parametrize("name", ["mobilenet", "resnet"])
def test_f2t_models_bit_exact_all_armcl_and_mixed(acl, name):
    graph, x = tq(name)
    x = x[:1]
    full = _check(graph, x, "default=armcl")
    assert len(full.armcl_layers) >= (14 if name == "mobilenet" else 3)
    mixed = _check(graph, x, _alternate_spec(graph))
    assert 0 < len(mixed.armcl_layers) < len(full.armcl_layers)
    report = full.acl_report({graph.inputs[0]: x})
    assert report["gemms"] == len(full.armcl_layers) and report["workspace_bytes"] > 0
    if name == "mobilenet":  # depthwise convolutions stay on C: no exact ACL path
        # pointwise layers over NHWC u8 activations: ACL reads the arena in place
        assert report["a_in_place"] > 0
        dw = [n.name for n in full.graph.nodes
              if n.op == "ConvRequant" and int(n.attrs.get("group", 1)) > 1]
        assert dw and all(full.assignment[n] == "c" for n in dw)


def test_dronet_fixture_golden_output_all_armcl_and_mixed(acl):
    model = load(DRONET + "DRONETV3_ql_integerized.onnx")
    _, x = read_text_vector(DRONET + "input.txt")
    for spec in ("default=armcl", _alternate_spec(model.graph)):
        cm = mixed_cached(model.graph, spec)
        (y,) = cm.run({model.graph.inputs[0]: x.astype(np.uint8)}).values()
        assert y.tolist() == [[435, 0]], spec
    assert len(mixed_cached(model.graph, "default=armcl").armcl_layers) == 11
