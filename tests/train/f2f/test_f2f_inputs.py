"""f2f(..., input_spec=...): an identity quantiser right after the network input."""

from __future__ import annotations

import pytest
import torch

from edgeq.errors import ConfigError
from edgeq.models import DigitsCNN, DigitsResNet
from edgeq.train.f2f import Policy, f2f, insert_input_quantisers, trace, unit_input_spec
from edgeq.train.f2f.trace import propagate_shapes
from edgeq.train.modules import QuantActivation

X = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_unit_input_spec():
    spec = unit_input_spec()
    assert (spec.algorithm, spec.n_levels, spec.signed) == ("ste", 256, False)
    assert (spec.init.method, spec.init.lo, spec.init.hi) == ("const", 0.0, 1.0)
    assert unit_input_spec(4).n_levels == 16


def test_f2f_inserts_the_input_quantiser_first():
    gm, report = f2f(DigitsCNN(), Policy.uniform(8), X[:2], input_spec=unit_input_spec())
    assert report.input_quantisers == ["x_quant"]
    q = gm.x_quant
    assert isinstance(q, QuantActivation) and q.kind == "identity"
    x, quant, conv = list(gm.graph.nodes)[:3]
    assert (x.op, quant.target, conv.target) == ("placeholder", "x_quant", "conv1")
    assert list(x.users) == [quant] and conv.args[0] is quant
    q.start()
    assert float(q.eps) == pytest.approx(1 / 255) and str(q.range) == "[0,255]"
    with torch.no_grad():
        y = q(torch.tensor([0.0, 0.5, 1.0, 1.5]))
    torch.testing.assert_close(y * 255, torch.tensor([0.0, 127.0, 255.0, 255.0]))


def test_without_input_spec_nothing_is_inserted():
    gm, report = f2f(DigitsCNN(), Policy.uniform(8), X[:2])
    assert report.input_quantisers == [] and not hasattr(gm, "x_quant")


def test_every_reader_of_the_input_is_redirected():
    gm, _ = f2f(DigitsResNet(), Policy.uniform(8), X[:2], input_spec=unit_input_spec())
    x = next(n for n in gm.graph.nodes if n.op == "placeholder")
    assert [u.target for u in x.users] == ["x_quant"]


def test_the_pass_alone_and_a_bad_spec():
    gm = trace(DigitsCNN())
    propagate_shapes(gm, X[:1])
    assert insert_input_quantisers(gm, unit_input_spec()) == ["x_quant"]
    assert insert_input_quantisers(gm, unit_input_spec()) == ["x_quant_1"]  # unique names
    with pytest.raises(ConfigError, match="QuantSpec"):
        f2f(DigitsCNN(), Policy.uniform(8), X[:2], input_spec="u8")
