"""Runs every command of the README's armcl example: the QuantLab Dronet (cost table,
auto program, its golden output) and our own export of an F2T network (all-ARMCL,
bit-exact with the reference backend)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from edgeq.engine import load
from edgeq.engine.backends.reference.executor import run_graph
from edgeq.engine.onnx.exporter import export_onnx
from edgeq.engine.tensor_io import read_text_vector
from tests.engine.passes.graphs import random_feeds, tq_graph
from tests.readme import readme_commands, run_commands

ROOT = Path(__file__).resolve().parents[4]
DRONET = ROOT / "../shared/fixtures/quantlab/dronet"


def test_readme_armcl_example(tmp_path, acl):
    for name in ("DRONETV3_ql_integerized.onnx", "input.txt"):
        shutil.copy(DRONET / name, tmp_path / name)
    _, x = read_text_vector(DRONET / "input.txt")
    np.save(tmp_path / "input.npy", x.astype(np.uint8))
    # our own export (as `edgeq quantize` writes it: multipliers within float32's 24 bits)
    graph = tq_graph("resnet", significant_bits=24)
    export_onnx(graph, tmp_path / "model_tq.onnx", dialect="edgeq")
    xi = random_feeds(graph, batch=1, seed=7)[graph.inputs[0]]
    np.save(tmp_path / "tq_input.npy", xi)
    commands = readme_commands("readme-armcl")
    assert len(commands) == 5
    outputs = run_commands(commands, tmp_path)
    assert "armcl kinsn" in outputs[0] and (tmp_path / "cost.json").exists()
    # auto follows the measured table: as many armcl layers as it says ACL wins
    rows = json.loads((tmp_path / "cost.json").read_text())["layers"]
    assert f"{sum(r['best'] == 'armcl' for r in rows)} layers on armcl" in outputs[1]
    assert np.load(tmp_path / "output.npy").tolist() == [[435, 0]]
    assert re.search(r"[1-9]\d* layers on armcl", outputs[3])
    mine = load(tmp_path / "model_tq.onnx").graph
    (want,) = run_graph(mine, {mine.inputs[0]: xi}).values()
    np.testing.assert_array_equal(np.load(tmp_path / "tq_output.npy"), want)
