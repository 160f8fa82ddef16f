"""Validation before anything runs (issue 11, item 3): one typed, one-line error each.

Each case breaks one thing in a small valid model and checks that ``load`` refuses it
with the expected error class and a message naming the file and the culprit; the
``never_runs`` fixture proves the refusal happens before shape inference and the trial run.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeq.cli import main
from edgeq.engine import load
from edgeq.engine.onnx import reader
from edgeq.engine.passes import shapes
from edgeq.engine.tensor_io import read_npy, read_text_vector
from edgeq.errors import ConfigError, InputFileError, ModelFileError

DRONET = "DRONETV3_ql_integerized.onnx"


def _conv_model(**conv_attrs) -> onnx.ModelProto:
    """x[1,1,4,4] -> Conv(w[2,1,3,3]) -> Relu -> y."""
    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], **conv_attrs}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", **attrs),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [1, 1, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _save(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def never_runs(monkeypatch):
    """Shape inference and the trial run must not be reached."""
    def boom(*a, **k):
        raise AssertionError("ran before validation refused the model")
    monkeypatch.setattr(reader.onnx.shape_inference, "infer_shapes", boom)
    monkeypatch.setattr(shapes, "complete_shapes", boom)
    import edgeq.engine.onnx.importer as importer
    monkeypatch.setattr(importer, "complete_shapes", boom)


def test_the_valid_model_loads(tmp_path):
    out = load(_save(_conv_model(), tmp_path)).run({"x": np.ones((1, 1, 4, 4), np.float32)})
    assert np.asarray(out["y"]).max() == 9.0  # a full 3x3 window of ones


def _refused(model, tmp_path, match, error=ModelFileError):
    path = _save(model, tmp_path)
    with pytest.raises(error, match=match) as info:
        load(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_dangling_input(tmp_path, never_runs):
    m = _conv_model()
    m.graph.node[1].input[0] = "ghost"
    _refused(m, tmp_path, r"node 'relu' \(Relu\): input 'ghost' is produced by no node")


def test_removed_initializer(tmp_path, never_runs):
    m = _conv_model()
    del m.graph.initializer[0]
    _refused(m, tmp_path, r"node 'conv'.*input 'w'")


def test_cycle_or_wrong_order(tmp_path, never_runs):
    m = _conv_model()
    m.graph.node[0].input[0] = "y"  # conv reads relu's output: a cycle
    _refused(m, tmp_path, r"input 'y' is produced only later, by node 'relu'")


def test_value_produced_twice(tmp_path, never_runs):
    m = _conv_model()
    m.graph.node[1].output[0] = "c"
    _refused(m, tmp_path, r"output 'c' is already produced by 'conv'")


@pytest.mark.parametrize(("edit", "match"), [
    (lambda t: t.dims.__setitem__(0, 2**40), ".* more than the .* allowed per tensor"),
    (lambda t: t.dims.__setitem__(0, -2), "negative dimension"),
    (lambda t: setattr(t, "data_type", TensorProto.UNDEFINED), "unsupported data type UNDEFINED"),
    (lambda t: setattr(t, "data_type", TensorProto.COMPLEX64), "unsupported data type COMPLEX64"),
    (lambda t: setattr(t, "raw_data", t.raw_data[:7]), "7 bytes of raw data, but .* needs 72"),
])
def test_bad_initializer(edit, match, tmp_path, never_runs):
    m = _conv_model()
    edit(m.graph.initializer[0])
    _refused(m, tmp_path, f"initializer 'w': {match}")


def test_external_data_is_refused(tmp_path, never_runs):
    from edgeq.engine.onnx import import_onnx

    m = _conv_model()
    t = m.graph.initializer[0]
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", "w.bin"
    t.ClearField("raw_data")
    with pytest.raises(ModelFileError, match="initializer 'w': external data"):
        import_onnx(m)  # a ModelProto: onnx.load has not tried to fetch the data
    with pytest.raises(ModelFileError, match="not a readable ONNX model"):
        load(_save(m, tmp_path))  # from a file: onnx.load fails on the missing w.bin


@pytest.mark.parametrize("dim", [2**40, -1])
def test_absurd_declared_shape(dim, tmp_path, never_runs):
    m = _conv_model()
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = dim
    _refused(m, tmp_path, "value 'x'")


@pytest.mark.parametrize(("attrs", "match"), [
    ({"kernel_shape": [3]}, "'pads' has 4 values for a rank-1 kernel"),
    ({"kernel_shape": [0, 3]}, "'kernel_shape' = \\[0, 3\\] has a value below 1"),
    ({"strides": [0, 1]}, "'strides'"),
    ({"group": 0}, "'group' = 0"),
    ({"pads": [0, 0, 2**40, 0]}, "'pads' = .* has a value above 65536"),
    ({"group": 1.5}, "has type FLOAT, the Conv schema says INT"),
])
def test_conv_attributes(attrs, match, tmp_path, never_runs):
    _refused(_conv_model(**attrs), tmp_path, match)


def test_gemm_alpha_must_be_finite(tmp_path, never_runs):
    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc",
                                            alpha=float("inf"))], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    _refused(m, tmp_path, r"node 'fc' \(Gemm\): attribute 'alpha' = inf is not finite")


# -- QuantLab/DORY rules, on the real Dronet file -------------------------------------------
def _dronet(dronet_dir):
    return onnx.load(str(dronet_dir / DRONET))


def _node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def _set_attr(node, key, value):
    for a in list(node.attribute):
        if a.name == key:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(key, value))


@pytest.mark.parametrize(("node", "key", "value", "match"), [
    ("Add_29", "in1_shift", -1, "'in1_shift' = -1 is outside \\[0, 62\\]"),
    ("Add_29", "out_n_levels", 1.5, "'out_n_levels' .* must be an integer"),
    ("Clip_6", "out_bits", 0, "'out_bits' = 0 is outside \\[1, 32\\]"),
    ("Clip_6", "out_bits", 64, "'out_bits' = 64 is outside \\[1, 32\\]"),
    ("Clip_6", "min", 0, "'min' has type INT, the Clip schema says FLOAT"),
    ("Conv_0", "weight_bits", 33, "'weight_bits' = 33"),
])
def test_quantlab_annotations(node, key, value, match, dronet_dir, tmp_path, never_runs):
    m = _dronet(dronet_dir)
    _set_attr(_node(m, node), key, value)
    _refused(m, tmp_path, f"node '{node}'.*{match}")


def test_quantlab_requant_divides_by_a_power_of_two(dronet_dir, tmp_path, never_runs):
    m = _dronet(dronet_dir)
    const = _node(m, "Constant_3")
    const.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(3.0, np.float32), "v"))
    _refused(m, tmp_path, r"node 'Div_4' \(Div\): .* power of two, got 3.0")


@pytest.mark.parametrize(("text", "match"), [
    ("5", "must be a JSON object"), ("null", "must be a JSON object"),
    ('{"input_bits": 2e308}', "'input_bits' must be an integer in \\[1, 32\\]"),
    ('{"input_bits": 99999999999999999999}', "'input_bits'"),
    ('{"input_bits": true}', "'input_bits'"),
    ('{"input_bits": 8, "input_signed": "yes"}', "'input_signed'"),
    ("[" * 10000 + "]" * 10000, "nested"),
])
def test_dory_config_contents(text, match, dronet_dir, tmp_path):
    path = _save(_dronet(dronet_dir), tmp_path, "dronet.onnx")
    (tmp_path / "config_dronet.json").write_text(text)
    with pytest.raises(ConfigError, match=match):
        load(path)


def test_edgeq_annotations_nested_too_deep(tmp_path, never_runs):
    m = _conv_model()
    p = m.metadata_props.add()
    p.key, p.value = "edgeq.annotations", "[" * 100_000 + "]" * 100_000
    _refused(m, tmp_path, "nested 100000 levels deep")


def test_edgeq_annotations_of_the_wrong_type(tmp_path):
    m = _conv_model()
    p = m.metadata_props.add()
    p.key = "edgeq.annotations"
    p.value = json.dumps({"format": "edgeq.annotations", "version": 1, "opset": 17,
                          "inputs": {"x": {"range": {"n_levels": [[1]]}}}, "values": {},
                          "ops": []})
    with pytest.raises(ModelFileError):
        load(_save(m, tmp_path))


# -- input files ----------------------------------------------------------------------------
def test_npy_declaring_huge_size_is_refused_from_its_header(tmp_path):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }"
    path = tmp_path / "big.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr.encode())
    with pytest.raises(InputFileError, match="declares 1000000000000 elements"):
        read_npy(path)


@pytest.mark.parametrize("array", [np.zeros(3, np.complex64), np.array(["a"]),
                                   np.zeros(2, dtype=[("a", "<i4")])])
def test_npy_of_a_non_numeric_dtype_is_refused(array, tmp_path):
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(InputFileError, match="not a numeric"):
        read_npy(tmp_path / "a.npy")


def test_text_vector_declaring_huge_size_is_refused(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("# input (shape [1000000, 1000000]),\n1,\n")
    with pytest.raises(InputFileError, match="declares 1000000000000 elements"):
        read_text_vector(path)


# -- the CLI --------------------------------------------------------------------------------
def test_cli_output_under_a_regular_file(tmp_path, capsys):
    path = _save(_conv_model(), tmp_path)
    np.save(tmp_path / "x.npy", np.ones((1, 1, 4, 4), np.float32))
    (tmp_path / "file").write_text("")
    rc = main(["run", str(path), "--input", f"x={tmp_path / 'x.npy'}",
               "--out", str(tmp_path / "file" / "o.npz")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert "o.npz" in err


def test_cli_last_resort_guard_names_command_and_file(tmp_path, capsys, monkeypatch):
    import edgeq.engine

    def broken(*a, **k):
        raise KeyError("internal")
    monkeypatch.setattr(edgeq.engine, "load", broken)
    rc = main(["inspect", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith(f"error: edgeq inspect {tmp_path / 'm.onnx'}: unexpected KeyError")


def test_quantize_output_dir_under_a_regular_file(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"output_dir": str(tmp_path / "file" / "run")}))
    assert main(["quantize", str(cfg), "--quiet"]) == 1
    assert "cannot create it" in capsys.readouterr().err


def test_zero_qat_epochs_is_a_config_error(tmp_path):
    from edgeq.lab.config import PipelineConfig

    with pytest.raises(ConfigError, match="training.qat_epochs"):
        PipelineConfig.from_json({"training": {"qat_epochs": 0}})


def test_corrupt_fq_state_is_a_config_error(tmp_path):
    from edgeq.lab.config import PipelineConfig
    from edgeq.lab.pipeline import rebuild_fq

    state = tmp_path / "fq_state.pt"
    state.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ConfigError, match="fq_state.pt: cannot load the FQ state"):
        rebuild_fq(PipelineConfig(), state)
