"""Pipeline configuration: JSON round trip and errors that name the bad key."""

from __future__ import annotations

import json

import pytest

from edgeq.errors import ConfigError
from edgeq.lab.config import PipelineConfig, demo_config


def test_round_trip_through_json():
    cfg = PipelineConfig.from_json({
        "model": {"name": "digits_resnet"},
        "dataset": {"seed": 3, "batch_size": 32},
        "policy": {"uniform": {"bits": 4, "algorithm": "tqt"}},
        "training": {"fp_epochs": 2, "qat_epochs": 1},
        "seeds": [1, 2],
        "output_dir": "out",
    })
    again = PipelineConfig.from_json(json.loads(json.dumps(cfg.to_json())))
    assert again == cfg
    assert again.seeds == (1, 2) and again.model.name == "digits_resnet"
    assert demo_config().output_dir == "edgeq-demo"


@pytest.mark.parametrize("data,key", [
    ({"training": {"qat_epochs": -1}}, "training.qat_epochs"),
    ({"training": {"lr": "fast"}}, "training.lr"),
    ({"model": {"name": "vgg"}}, "model.name"),
    ({"dataset": {"batch": 3}}, "dataset.batch"),
    ({"colour": "red"}, "config.colour"),
    ({"seeds": []}, "seeds"),
    ({"seeds": [1, "x"]}, "seeds[1]"),
    ({"input": {"lo": 1.0, "hi": 0.0}}, "input.lo"),
    ({"policy": {"uniform": {"bits": 8, "algorithm": "magic"}}}, "policy.uniform.algorithm"),
    ({"policy": {"uniform": {"bitz": 8}}}, "policy.uniform.bitz"),
])
def test_bad_values_name_their_key(data, key):
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_json(data)
    assert key in str(info.value)


def test_bad_policy_rule_is_named(tmp_path):
    bad = {"policy": {"rules": [{"spec": {"algorithm": "pact", "n_levels": 0}}]}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError) as info:
        PipelineConfig.load(path)
    assert "c.json" in str(info.value) and "rule" in str(info.value)


def test_unreadable_config_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json"):
        PipelineConfig.load(path)
    with pytest.raises(ConfigError, match="no such config file"):
        PipelineConfig.load(tmp_path / "absent.json")
