import pytest
import torch
from torch import nn

from edgeq.errors import ConfigError
from edgeq.models import DigitsCNN, DigitsConcatNet, DigitsResNet, mobilenet_v1_3ddfa
from edgeq.train.controller import observing
from edgeq.train.f2f import Policy, Rule, f2f, unit_input_spec
from edgeq.train.modules import (
    HarmonisedAdd,
    HarmonisedConcat,
    QuantActivation,
    QuantConv2d,
    QuantLinear,
    quant_modules,
)
from edgeq.train.spec import QuantSpec


def _randomise_bn(model):
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
            m.bias.data.uniform_(-0.2, 0.5)
    return model


def _count(gm, cls):
    return sum(isinstance(m, cls) for m in gm.modules())


DIGITS = [
    # model, #QuantConv2d, #QuantActivation, #HarmonisedAdd, #HarmonisedConcat, first layer
    (DigitsCNN, 2, 2, 0, 0, "conv1"),
    (DigitsResNet, 6, 5, 2, 0, "stem.0"),
    (DigitsConcatNet, 4, 4, 0, 1, "stem.0"),
]


@pytest.fixture(scope="module")
def digits_batch():
    return torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cls, n_conv, n_act, n_add, n_cat, first", DIGITS)
def test_f2f_structure_and_float_equivalence_before_start(digits_batch, cls, n_conv, n_act,
                                                         n_add, n_cat, first):
    torch.manual_seed(0)
    model = _randomise_bn(cls()).eval()
    gm, report = f2f(model, Policy.uniform(8, "pact"), digits_batch[:2])
    kinds = (QuantConv2d, QuantActivation, HarmonisedAdd, HarmonisedConcat)
    counts = [_count(gm, c) for c in kinds]
    assert counts == [n_conv, n_act, n_add, n_cat]
    assert _count(gm, QuantLinear) == 1 and _count(gm, nn.BatchNorm2d) == n_conv
    assert not any(type(m) in (nn.Conv2d, nn.Linear, nn.ReLU) for m in gm.modules())
    # every layer reads a quantiser's output, except the first one: the input is float
    assert report.unquantised_inputs == [first] and report.float_ops == []
    # quantisation not started: the FQ network computes the float network
    torch.testing.assert_close(gm(digits_batch), model(digits_batch), rtol=1e-5, atol=1e-5)
    gm.train(), model.train()
    torch.testing.assert_close(gm(digits_batch), model(digits_batch), rtol=1e-5, atol=1e-5)


def _grid_hooks(gm, records):
    def hook(module, inputs, output):
        records.append((module, output.detach()))

    return [m.register_forward_hook(hook) for m in gm.modules()
            if isinstance(m, QuantActivation | HarmonisedAdd | HarmonisedConcat)]


@pytest.mark.parametrize("bits, algorithm", [(8, "pact"), (4, "tqt"), (2, "ste")])
@pytest.mark.parametrize("cls", [DigitsCNN, DigitsResNet, DigitsConcatNet])
def test_after_start_outputs_lie_on_the_quantiser_grids(digits_batch, cls, bits, algorithm):
    torch.manual_seed(0)
    gm, _ = f2f(_randomise_bn(cls()).eval(), Policy.uniform(bits, algorithm), digits_batch[:2])
    with observing(gm):
        gm(digits_batch)
    for _, m in quant_modules(gm):
        m.start()
    records = []
    hooks = _grid_hooks(gm, records)
    out = gm(digits_batch)
    for h in hooks:
        h.remove()
    assert torch.isfinite(out).all() and len(records) == _count(gm, QuantActivation) + _count(
        gm, HarmonisedAdd) + _count(gm, HarmonisedConcat)
    for module, y in records:
        ints = y / module.eps
        torch.testing.assert_close(ints, torch.round(ints), rtol=0, atol=1e-3)
        assert ints.min() >= module.range.lo - 1e-3 and ints.max() <= module.range.hi + 1e-3
        if isinstance(module, HarmonisedAdd | HarmonisedConcat):
            assert all(torch.equal(e, module.eps) for e in module.input_eps)
    for m in gm.modules():
        if isinstance(m, QuantConv2d | QuantLinear):
            eps = m.weight_eps.reshape(-1, *([1] * (m.weight.dim() - 1)))
            w_ints = m.quantised_weight().detach() / eps
            torch.testing.assert_close(w_ints, m.int_weight().float(), rtol=0, atol=1e-3)
            assert m.int_weight().max() <= m.weight_range.hi


@pytest.mark.parametrize("width", [0.25, 0.5])
def test_mobilenet_3ddfa_f2f_splits_shared_relus(width):
    torch.manual_seed(0)
    model = _randomise_bn(mobilenet_v1_3ddfa(width)).eval()
    x = torch.randn(2, 3, 120, 120)
    gm, report = f2f(model, Policy.uniform(8, "pact"), x)
    assert _count(gm, QuantConv2d) == 27 and _count(gm, QuantLinear) == 1
    assert _count(gm, QuantActivation) == 27  # conv1 + 2 per block: one per site
    assert isinstance(gm.dw3_1.relu_1, QuantActivation) and gm.dw3_1.relu is not gm.dw3_1.relu_1
    assert report.canonicalised["split"]["dw3_1.relu"] == ["dw3_1.relu", "dw3_1.relu_1"]
    assert report.unquantised_inputs == ["conv1"]  # no input_spec: the input stays float
    torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-5)


def test_mobilenet_full_width_traces_and_converts():
    model = mobilenet_v1_3ddfa(1.0).eval()
    x = torch.randn(1, 3, 120, 120)
    gm, report = f2f(model, Policy.uniform(8, "pact"), x)
    assert gm.fc.in_features == 1024 and gm.dw6.conv_sep.out_channels == 1024
    assert len(report.quantised) == 27 + 1 + 27
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-5)


def test_input_spec_quantises_the_network_input(digits_batch):
    gm, report = f2f(DigitsCNN().eval(), Policy.uniform(8), digits_batch[:2],
                     input_spec=unit_input_spec(4))
    assert report.input_quantisers == ["x_quant"] and report.unquantised_inputs == []
    (conv1,) = [n for n in gm.graph.nodes if n.target == "conv1"]
    assert conv1.args[0].target == "x_quant"
    for _, m in quant_modules(gm):
        m.start()
    seen = []
    gm.x_quant.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    gm(digits_batch)
    half_up = torch.floor(digits_batch * 15 + 0.5)  # the quantisers round half up
    torch.testing.assert_close(seen[0] * 15, half_up, rtol=0, atol=1e-5)


def test_mixed_precision_per_layer_in_the_report(digits_batch):
    w8 = QuantSpec.from_bits(8, signed=True, granularity="per_channel")
    policy = Policy.uniform(2, "pact").prepend(Rule(w8, ("Conv2d", "Linear"), name="conv1|fc"))
    gm, report = f2f(DigitsCNN(), policy, digits_batch[:2])
    levels = {a.name: (a.rule, a.spec["n_levels"]) for a in report.quantised}
    assert levels == {"conv1": (0, 256), "relu1": (2, 4), "conv2": (1, 4), "relu2": (2, 4),
                      "fc": (0, 256)}
    assert gm.conv1.spec.n_levels == 256 and gm.conv2.spec.n_levels == 4
    assert "conv2" in report.summary() and "#1" in report.summary()


def test_original_model_is_not_modified(digits_batch):
    model = DigitsCNN()
    bias = model.conv1.bias.detach().clone()
    f2f(model, Policy.uniform(8), digits_batch[:2])
    assert model.conv1.bias is not None and torch.equal(model.conv1.bias, bias)
    assert isinstance(model.relu1, nn.ReLU)


class WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        y = self.conv2(self.bn(self.conv(x)))  # conv2 reads a BN output: no quantiser
        return self.gate(y) * torch.tanh(y)


def test_unmatched_modules_raise_unless_allowed_float(digits_batch):
    with pytest.raises(ConfigError, match=r"no policy rule matches 'gate' \(Sigmoid\)"):
        f2f(WithSigmoid(), Policy.uniform(8), digits_batch[:2])
    policy = Policy(Policy.uniform(8).rules, allow_float=("Sigmoid",))
    gm, report = f2f(WithSigmoid(), policy, digits_batch[:2])
    assert isinstance(gm.gate, nn.Sigmoid) and report.kept_float == ["gate"]
    assert report.unquantised_inputs == ["conv", "conv2"]
    assert [op.split(" ")[1] for op in report.float_ops] == ["(tanh)", "(mul)"]


def test_per_channel_activation_spec_names_module_and_rule(digits_batch):
    bad = QuantSpec.from_bits(8, granularity="per_channel")
    policy = Policy.uniform(8).prepend(Rule(bad, ("ReLU",), name="relu2"))
    message = r"module 'relu2' .*ReLU\) with policy rule #0: .*per_tensor"
    with pytest.raises(ConfigError, match=message):
        f2f(DigitsCNN(), policy, digits_batch[:2])


def test_subclass_named_like_a_quantisable_type_is_refused(digits_batch):
    class ReLU(nn.Module):  # not torch.nn.ReLU: must not be quantised as one
        def forward(self, x):
            return x.clamp(min=0.5)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = ReLU()

        def forward(self, x):
            return self.act(x)

    with pytest.raises(ConfigError, match=r"rule #1 selects module 'act' .*no quantised"):
        f2f(Net(), Policy.uniform(8), digits_batch[:2], leaf_modules=(ReLU,))


def test_untraceable_model_is_a_config_error(digits_batch):
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ConfigError, match="torch.fx cannot trace Branchy"):
        f2f(Branchy(), Policy.uniform(8), digits_batch[:2])
