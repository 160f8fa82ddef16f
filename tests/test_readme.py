"""The README's examples run (issue 11, item 2): its config, its commands, its Python.

The code blocks are read from README.md itself, so an edited README is tested as it
stands. Placeholders in the command block (``MODEL.onnx``, ``FILE.npy``, ``CONFIG.json``,
``RUN_DIR``...) are replaced by real files; the example config runs with its model, data
and policy but one epoch of each training phase, one seed, on a subset of the digits.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

import edgeq.data
from edgeq.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def _digits_config() -> str:
    """The README's digits pipeline config (the landmark one is run by the landmark tests)."""
    (text,) = [b for b in _blocks("json") if json.loads(b)["task"]["name"] == "digits"]
    return text


def _small_splits(real):
    def load_small(seed=0, fractions=(0.6, 0.2, 0.2)):
        s = real(seed, fractions)
        return type(s)(s.x_train[:128], s.y_train[:128], s.x_val[:64], s.y_val[:64],
                       s.x_test[:64], s.y_test[:64])
    return load_small


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """The README config (one epoch each, one seed), run through `edgeq quantize`."""
    config_text = _digits_config()
    data = json.loads(config_text)
    tmp = tmp_path_factory.mktemp("readme")
    data["training"].update(fp_epochs=1, qat_epochs=1)
    data["seeds"] = data["seeds"][:1]
    data["output_dir"] = str(tmp / "run")
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps(data))
    mp = pytest.MonkeyPatch()
    mp.setattr(edgeq.data, "load_digits_splits", _small_splits(edgeq.data.load_digits_splits))
    try:
        assert main(["quantize", str(cfg), "--quiet"]) == 0
    finally:
        mp.undo()
    return tmp, cfg


def test_the_readme_config_is_valid_as_written():
    from edgeq.lab.config import PipelineConfig

    config_text = _digits_config()
    config = PipelineConfig.from_json(json.loads(config_text))
    config.build_policy()
    assert config.model.name == "digits_resnet"


def test_the_readme_config_runs(example_run):
    tmp, _ = example_run
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    assert summary["bit_exact"] and summary["dory_bit_exact"]
    # the pipeline's DORY file parses under DORY's rules, with its own config
    import onnx

    from tests.engine.onnx.dory_rules import dangling, dory_parse

    model = onnx.load(str(tmp / "run" / "model_tq_dory.onnx"))
    config = json.loads((tmp / "run" / "config_model_tq_dory.json").read_text())
    assert not dangling(dory_parse(model, config), model)


def test_every_readme_command_runs(example_run, capsys):
    tmp, cfg = example_run
    run = tmp / "run"
    x = np.load(run.parent / "x.npy") if (run.parent / "x.npy").exists() else None
    x = edgeq.data.load_digits_splits(0).x_test[:2].numpy() if x is None else x
    np.save(tmp / "x.npy", x)
    dronet = Path(__file__).resolve().parents[1] / "../shared/fixtures/quantlab/dronet"
    subs = {
        "MODEL.onnx --input input.txt": f"{dronet / 'DRONETV3_ql_integerized.onnx'} "
                                        f"--input {dronet / 'input.txt'}",
        "MODEL.onnx": str(run / "model_fq.onnx"),
        "NAME=FILE.npy": f"input={tmp / 'x.npy'}",
        "[--out OUT.npz]": f"--out {tmp / 'out.npz'}",
        "CONFIG.json [--out DIR] [--force]": f"{cfg} --out {tmp / 'again'} --quiet",
        "RUN_DIR [--split test]": f"{run} --split test",
    }
    (block,) = [b for b in _blocks("bash") if "edgeq run" in b and "f2t-report" in b]
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    # the `edgeq bench` lines are run by tests/engine/test_bench.py
    commands = [c for c in commands if c.startswith("edgeq ") and not c.startswith("edgeq bench")]
    assert len(commands) == 5
    mp = pytest.MonkeyPatch()
    mp.setattr(edgeq.data, "load_digits_splits", _small_splits(edgeq.data.load_digits_splits))
    try:
        for command in commands:
            for old, new in subs.items():
                command = command.replace(old, new)
            assert main(shlex.split(command)[1:]) == 0, command
    finally:
        mp.undo()
    out = capsys.readouterr().out
    assert "435, 0" in out  # the Dronet golden output, through the text-vector command
    assert (tmp / "out.npz").is_file() and (tmp / "again" / "summary.json").is_file()


def test_the_readme_python_runs(example_run, monkeypatch):
    tmp, _ = example_run
    (code,) = _blocks("python")
    monkeypatch.chdir(tmp / "run")
    (tmp / "run" / "model.onnx").write_bytes((tmp / "run" / "model_tq.onnx").read_bytes())
    scope = {"x": edgeq.data.load_digits_splits(0).x_test[:3].numpy()}
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - the README's own code
    (logits,) = scope["outputs"].values()
    assert np.asarray(logits).shape[0] == 3
    assert scope["model"].inputs[0].quant is not None  # the TQ file: an integer input
