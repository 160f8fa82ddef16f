import json

import pytest

from edgeq.errors import ConfigError
from edgeq.models import DigitsCNN
from edgeq.train.f2f import Policy, Rule, Target
from edgeq.train.f2f.pipeline import _module_targets
from edgeq.train.f2f.trace import trace
from edgeq.train.spec import InitSpec, QuantSpec

W8 = QuantSpec.from_bits(8, signed=True, granularity="per_channel")
W4 = QuantSpec.from_bits(4, signed=True)
A8 = QuantSpec.from_bits(8)
A2 = QuantSpec.from_bits(2, algorithm="ste")

TARGETS = [
    Target("conv1", "Conv2d"),
    Target("bn1", "BatchNorm2d"),
    Target("relu1", "ReLU"),
    Target("conv2", "Conv2d"),
    Target("relu2", "ReLU"),
    Target("flatten", "Flatten"),
    Target("fc", "Linear"),
]


def _base_rules():
    return [Rule(W8, ("Conv2d", "Linear")), Rule(A8, ("ReLU",))]


def test_first_match_wins_and_mixed_precision():
    policy = Policy((Rule(W4, ("Conv2d",), name="conv2"), *_base_rules()))
    got = policy.resolve(TARGETS).assigned
    assert got["conv2"] == (0, W4)
    assert got["conv1"] == (1, W8) and got["fc"] == (1, W8) and got["relu2"] == (2, A8)
    assert "bn1" not in got and "flatten" not in got  # they stay float by design


def test_name_regex_is_a_full_match():
    policy = Policy((Rule(W4, name="conv"), *_base_rules()), ())
    with pytest.raises(ConfigError, match=r"rule #0 .*name='conv'.* matches no module"):
        policy.resolve(TARGETS)
    policy = Policy((Rule(W4, name=r"conv\d"), *_base_rules()))
    got = policy.resolve(TARGETS).assigned
    assert got["conv1"][0] == 0 and got["conv2"][0] == 0


def test_name_only_rule_skips_float_modules():
    # 'conv1|bn1|relu1' also names the BN, which stays float: no error
    policy = Policy((Rule(A2, name="relu1|bn1"), *_base_rules()))
    got = policy.resolve(TARGETS).assigned
    assert got["relu1"] == (0, A2) and "bn1" not in got


def test_rule_matching_nothing_names_index_and_content():
    policy = Policy((*_base_rules(), Rule(A8, ("LeakyReLU",))))
    with pytest.raises(ConfigError, match=r"policy rule #2 \{types=\['LeakyReLU'\].* no module"):
        policy.resolve(TARGETS)
    optional = Policy((*_base_rules(), Rule(A8, ("LeakyReLU",), optional=True)))
    assert len(optional.resolve(TARGETS).assigned) == 5


def test_shadowed_rule_is_an_error():
    policy = Policy((*_base_rules(), Rule(W4, ("Linear",), name="fc")))
    with pytest.raises(ConfigError, match=r"rule #2 .* is shadowed.*'fc' \(Linear\)"):
        policy.resolve(TARGETS)


def test_unmatched_modules_are_listed_never_silently_float():
    targets = [*TARGETS, Target("head.sigmoid", "Sigmoid"), Target("layer.add", "add")]
    with pytest.raises(ConfigError) as info:
        Policy(tuple(_base_rules())).resolve(targets)
    assert "'head.sigmoid' (Sigmoid)" in str(info.value) and "'layer.add' (add)" in str(info.value)
    assert "allow_float" in str(info.value)
    res = Policy(tuple(_base_rules()), allow_float=("Sigmoid", r"layer\..*")).resolve(targets)
    assert res.allowed_float == ("head.sigmoid", "layer.add")
    res = Policy(tuple(_base_rules())).resolve(targets, strict=False)
    assert [t.name for t in res.unmatched] == ["head.sigmoid", "layer.add"]


def test_allow_float_entry_that_excuses_nothing_is_an_error():
    with pytest.raises(ConfigError, match="allow_float entry 'fc' excuses no"):
        Policy(tuple(_base_rules()), allow_float=("fc",)).resolve(TARGETS)


def test_rule_selecting_unquantisable_module_names_module_and_rule():
    targets = [*TARGETS, Target("head.sigmoid", "Sigmoid")]
    policy = Policy((*_base_rules(), Rule(A8, name=r"head\..*")))
    with pytest.raises(ConfigError, match=r"rule #2 .*'head.sigmoid' \(Sigmoid\).*no quantised"):
        policy.resolve(targets)


@pytest.mark.parametrize("rule, message", [
    ({"types": ["BatchNorm2d"], "spec": {}}, "type 'BatchNorm2d' cannot be quantised"),
    ({"types": ["Conv3d"], "spec": {}}, "unknown type 'Conv3d'"),
    ({"name": "conv[", "spec": {}}, "invalid name regex"),
    ({"types": ["ReLU"], "spec": {"n_levels": 1}}, "QuantSpec.n_levels"),
    ({"types": ["ReLU"], "spec": {}, "bits": 4}, "unknown rule key"),
    ({"types": "ReLU", "spec": {}}, "'types' must be a list"),
    ({"types": ["ReLU"]}, "no 'spec'"),
])
def test_json_validation_errors_name_the_rule(rule, message):
    data = {"rules": [Policy.uniform().rules[0].to_json(), rule]}
    pattern = r"policy rule #1 \{.*\}: .*" + message.replace("[", r"\[")
    with pytest.raises(ConfigError, match=pattern):
        Policy.from_json(data)


def test_policy_json_round_trip():
    policy = Policy.uniform(4, "tqt", act_init=InitSpec("percentile", percentile=99.9)).prepend(
        Rule(W8, ("Conv2d", "Linear"), name="conv1|fc"))
    policy = Policy(policy.rules, allow_float=("Sigmoid",))
    data = json.loads(json.dumps(policy.to_json()))
    assert Policy.from_json(data) == policy
    with pytest.raises(ConfigError, match="unknown policy key"):
        Policy.from_json({**data, "default": 8})


def test_uniform_policy_signedness_and_inq_activations():
    policy = Policy.uniform(bits=4, algorithm="inq")
    weights, relus, signed_acts, harmonised = policy.rules
    assert weights.spec.algorithm == "inq" and weights.spec.signed and weights.spec.n_levels == 16
    assert relus.spec.algorithm == "ste" and not relus.spec.signed
    assert signed_acts.spec.signed and harmonised.types == ("add", "cat")
    assert all(r.optional for r in policy.rules)


def test_resolve_on_a_traced_model_with_first_last_8bit():
    gm = trace(DigitsCNN())
    policy = Policy.uniform(2).prepend(Rule(W8, ("Conv2d", "Linear"), name="conv1|fc"))
    got = policy.resolve(_module_targets(gm)).assigned
    assert {n: s.n_levels for n, (_, s) in got.items()} == {
        "conv1": 256, "relu1": 4, "conv2": 4, "relu2": 4, "fc": 256}
