"""The dory dialect is what DORY's Quantlab frontend parses (issue 11, item 1).

``dory_rules`` re-states DORY's parsing rules from its public code; they are checked
first on QuantLab's own Dronet file (so the re-statement accepts what DORY accepts), then
on our export of Dronet and of the built-in digits networks, and the exported files are
read back by our importer bit for bit. The DORY side file ``config_<name>.json`` is
checked against the input range and the requant constants.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from edgeq.engine import Model, load
from edgeq.engine.onnx.exporter import export_onnx
from tests.engine.onnx.dory_rules import DoryRuleError, dangling, dory_parse

DRONET = "DRONETV3_ql_integerized.onnx"
DRONET_CONFIG = {"BNRelu_bits": 32, "input_bits": 8, "input_signed": False}


def _vector(path):
    lines = [ln.strip().rstrip(",") for ln in open(path) if ln.strip()]
    return np.array([int(v) for v in lines[1:]], dtype=np.int64)


def _digits_tq(name: str, bits: int):
    """An (untrained, calibrated) TQ network for DORY's int32 requantisation."""
    from edgeq.data import load_digits_splits
    from edgeq.lab.config import PipelineConfig
    from edgeq.lab.pipeline import build_model, input_spec
    from edgeq.lab.training import predict
    from edgeq.train.controller import observing
    from edgeq.train.f2f import f2f
    from edgeq.train.f2t import f2t
    from edgeq.train.modules import quant_modules

    torch.manual_seed(0)
    config = PipelineConfig.from_json(
        {"model": {"name": name}, "policy": {"uniform": {"bits": bits, "algorithm": "pact"}}})
    x = load_digits_splits(0).x_test[:64]
    fq, _ = f2f(build_model(config), config.build_policy(), x[:1], input_spec=input_spec(config))
    with observing(fq):
        predict(fq, x)
    for _, m in quant_modules(fq):
        m.start()
    predict(fq, x)
    tq = f2t(fq.eval(), x[:1], acc_bits=32, significant_bits=24)
    return tq, x


@pytest.fixture(scope="module")
def digits_exports(tmp_path_factory):
    """model name -> (dory file, TQ torch module, float input), built once."""
    out = {}
    for name, bits in (("digits_cnn", 8), ("digits_resnet", 4), ("digits_concat", 8)):
        tq, x = _digits_tq(name, bits)
        path = tmp_path_factory.mktemp(name) / f"{name}_dory.onnx"
        export_onnx(tq.to_ir(), path, dialect="dory")
        out[name] = (path, tq, x)
    return out


def test_the_rules_accept_quantlabs_own_file(dronet_dir):
    graph = dory_parse(onnx.load(str(dronet_dir / DRONET)), DRONET_CONFIG)
    names = [n["name"] for n in graph]
    assert names.count("BNRelu") == 10 and names.count("Addition") == 3
    assert not dangling(graph, onnx.load(str(dronet_dir / DRONET)))


def test_the_rules_refuse_readable_tensor_names(dronet_dir, tmp_path):
    """What issue 11 measured: names such as 'relu1.floor' -> int() fails in DORY."""
    model = onnx.load(str(dronet_dir / DRONET))
    old = model.graph.node[5].output[0]  # Floor_5
    for n in model.graph.node:
        n.input[:] = ["relu1.floor" if i == old else i for i in n.input]
    model.graph.node[5].output[0] = "relu1.floor"
    with pytest.raises(DoryRuleError, match="decimal integer"):
        dory_parse(model, DRONET_CONFIG)


def test_dronet_export_parses_like_the_original(dronet_dir, tmp_path):
    path = tmp_path / "dronet_dory.onnx"
    export_onnx(load(dronet_dir / DRONET).graph, path, dialect="dory")
    ours = dory_parse(onnx.load(str(path)), json.loads((tmp_path /
                                                         "config_dronet_dory.json").read_text()))
    theirs = dory_parse(onnx.load(str(dronet_dir / DRONET)), DRONET_CONFIG)
    keys = ("name", "outshift", "min", "max", "output_activation_bits", "output_activation_type")
    assert [{k: n.get(k) for k in keys} for n in ours] == [
        {k: n.get(k) for k in keys} for n in theirs]
    for a, b in zip(ours, theirs, strict=True):
        for k in ("k", "l", "outmul", "outadd"):
            assert (k in a) == (k in b)
            if k in a:
                np.testing.assert_array_equal(a[k], b[k])


def test_dory_names_are_ordered_integers_and_nodes_name_their_op(digits_exports):
    path, _, _ = digits_exports["digits_resnet"]
    model = onnx.load(str(path))
    produced = [int(o) for n in model.graph.node for o in n.output]
    assert produced == sorted(produced) and len(set(produced)) == len(produced)
    assert all(n.name == f"{n.op_type}_{i}" for i, n in enumerate(model.graph.node))
    assert [o.name for o in model.graph.output] == [str(produced[-1])]


@pytest.mark.parametrize("name", ["digits_cnn", "digits_resnet"])
def test_digits_exports_parse_as_dory_networks(name, digits_exports):
    path, tq, _ = digits_exports[name]
    config = json.loads(path.with_name(f"config_{path.stem}.json").read_text())
    graph = dory_parse(onnx.load(str(path)), config)
    assert {n["name"] for n in graph} <= {"Convolution", "BNRelu", "Requant", "Pooling",
                                          "FullyConnected", "Addition"}
    assert graph[0]["input_activation_bits"] == tq.input_quant.range.bits
    assert ("Addition" in {n["name"] for n in graph}) == (name == "digits_resnet")
    assert not dangling(graph, onnx.load(str(path)))


def test_concat_is_outside_what_dory_parses(digits_exports):
    """DORY neglects Concat (a pass-through): the concat network loses a branch in DORY."""
    path, _, _ = digits_exports["digits_concat"]
    config = json.loads(path.with_name(f"config_{path.stem}.json").read_text())
    model = onnx.load(str(path))
    assert dangling(dory_parse(model, config), model)


@pytest.mark.parametrize("name", ["digits_cnn", "digits_resnet", "digits_concat"])
def test_our_importer_reads_the_dory_files_bit_exactly(name, digits_exports):
    path, tq, x = digits_exports[name]
    x_int = tq.quantise_input(x)
    model = load(path)  # the input range comes from the config file beside it
    (out,) = model.run({model.inputs[0].name: x_int.numpy()}).values()
    np.testing.assert_array_equal(np.asarray(out).astype(np.int64), tq(x_int).numpy())


def test_config_file_states_input_precision_and_requant_width(digits_exports):
    path, tq, _ = digits_exports["digits_cnn"]
    config = json.loads(path.with_name(f"config_{path.stem}.json").read_text())
    rng = tq.input_quant.range
    assert config["onnx_file"] == path.name
    assert (config["input_bits"], config["input_signed"]) == (rng.bits, rng.is_signed)
    ir = tq.to_ir()
    widest = max(int(np.abs(ir.values[c].data.astype(np.int64)).max())
                 for n in ir.nodes if n.op == "RequantShift" for c in n.inputs[1:])
    assert config["BNRelu_bits"] == (32 if widest < 2**31 else 64)
    assert config["n_inputs"] == 1 and config["code reserved space"] > 0


def test_model_without_config_runs_with_explicit_range(digits_exports, tmp_path):
    path, tq, x = digits_exports["digits_cnn"]
    alone = tmp_path / "alone.onnx"
    alone.write_bytes(path.read_bytes())
    model = Model(load(alone, input_range=tq.input_quant.range).graph)
    assert model.inputs[0].quant.range == tq.input_quant.range
