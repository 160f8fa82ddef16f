"""``edgeq ptq``: a real run, and one-line errors that leave nothing behind."""

import json

import numpy as np
import onnx
import pytest

from edgeq.cli import main
from edgeq.engine import load
from tests.engine.ptq.models import calib_arrays, small_cnn, with_softmax


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ptq_cli")
    onnx.save(small_cnn(), d / "m.onnx")
    onnx.save(with_softmax(small_cnn()), d / "soft.onnx")
    np.savez(d / "calib.npz", **calib_arrays(32))
    ev = calib_arrays(40, seed=3)
    ev["labels"] = np.arange(40) % 10
    np.savez(d / "eval.npz", **ev)
    np.savez(d / "wrong.npz", input=calib_arrays(4)["x"])
    np.savez(d / "empty.npz", x=np.zeros((0, 1, 8, 8), np.float32))
    (d / "cfg.json").write_text(json.dumps({"layers": {"conv7": {}}}))
    return d


def test_ptq_writes_model_and_config(files, tmp_path, capsys):
    out = tmp_path / "q.onnx"
    rc = main(["ptq", str(files / "m.onnx"), "--calib", str(files / "calib.npz"), "--method",
               "kmeans-linear", "--bits", "6", "--eval", str(files / "eval.npz"), "--out",
               str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "conv1" in text and "accuracy %" in text and f"wrote {out}" in text
    model = load(out)
    assert model.graph.values["w1"].quant.codebook is not None
    cfg = json.loads(out.with_suffix(".json").read_text())
    assert cfg["layers"]["conv1"]["weights"]["method"] == "kmeans-linear"
    # the printed float and integer accuracies come from the same eval set
    line = next(x for x in text.splitlines() if x.startswith("accuracy %"))
    assert line.count(".") == 3


@pytest.mark.parametrize(("extra", "match"), [
    (["--method", "int8"], "unknown method 'int8'"),
    (["--bits", "17"], "bit width 17 is outside 2–16"),
    (["--calib", "{d}/wrong.npz"], "wrong.npz: arrays \\['input'\\] do not match"),
    (["--calib", "{d}/empty.npz"], "empty.npz: the calibration set is empty"),
    (["--calib", "{d}/none.npz"], "none.npz: cannot read"),
    (["--config", "{d}/cfg.json"], "layer 'conv7' is not a quantised layer"),
    (["--model", "{d}/soft.onnx"], "node 'softmax'.*--keep-float Softmax"),
    (["--eval", "{d}/calib.npz"], "calib.npz: an eval file needs 'labels' or 'targets'"),
])
def test_errors_are_one_line_and_write_nothing(files, tmp_path, capsys, extra, match):
    import re

    args = {"--calib": str(files / "calib.npz"), "--model": str(files / "m.onnx")}
    rest = []
    for i in range(0, len(extra), 2):
        args[extra[i]] = extra[i + 1].format(d=files)
    for k, v in args.items():
        if k != "--model":
            rest += [k, v]
    out = tmp_path / "q.onnx"
    rc = main(["ptq", args["--model"], *rest, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: ")
    assert re.search(match, err[0]), err[0]
    assert list(tmp_path.iterdir()) == []


def test_keep_float_on_the_command_line(files, tmp_path):
    out = tmp_path / "q.onnx"
    assert main(["ptq", str(files / "soft.onnx"), "--calib", str(files / "calib.npz"),
                 "--keep-float", "Softmax", "--out", str(out), "--quiet"]) == 0
    probs = load(out).run(calib_arrays(3))["probs"]
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_ptq_clustered_activations_from_a_config(files, tmp_path, capsys):
    """``--config`` clusters an activation; the written file and its resolved config say
    so, and re-running from that resolved config gives the same integers."""
    cfg = tmp_path / "cluster.json"
    cfg.write_text(json.dumps({"layers": {"conv2": {"activations": {"method": "kmeans",
                                                                    "bits": 2}}}}))
    out = tmp_path / "c.onnx"
    assert main(["ptq", str(files / "m.onnx"), "--calib", str(files / "calib.npz"),
                 "--method", "dynamic", "--bits", "8", "--config", str(cfg), "--out", str(out),
                 "--quiet"]) == 0
    assert "kmeans 2b codebook[" in capsys.readouterr().out
    model = load(out)
    book = model.graph.values["r2"].quant.codebook
    assert book is not None and len(book) <= 4 and model.graph.values["r2"].quant.storage_bits <= 2
    resolved = json.loads(out.with_suffix(".json").read_text())["layers"]["conv2"]["activations"]
    assert tuple(sorted(resolved["codebook"])) == book
    again = tmp_path / "again.onnx"
    assert main(["ptq", str(files / "m.onnx"), "--calib", str(files / "calib.npz"),
                 "--method", "dynamic", "--bits", "8", "--config", str(out.with_suffix(".json")),
                 "--out", str(again), "--quiet"]) == 0
    x = {"x": calib_arrays(5, seed=7)["x"]}
    assert np.array_equal(load(again).run(x)["logits"], model.run(x)["logits"])
