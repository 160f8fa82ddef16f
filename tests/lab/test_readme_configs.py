"""Every JSON config shown in the README is a valid pipeline config."""

import json
import re

from edgeq.lab.config import PipelineConfig
from tests.conftest import PROJECT_ROOT


def test_readme_configs_parse():
    text = (PROJECT_ROOT / "README.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    tasks = set()
    for block in blocks:
        cfg = PipelineConfig.from_json(json.loads(block))
        assert PipelineConfig.from_json(cfg.to_json()) == cfg
        tasks.add(cfg.task.name)
    assert tasks == {"digits", "landmarks_3ddfa"}
