"""User code in a design: a model by import path, image-folder and CIFAR-10 datasets as
classification tasks, and the bad-input errors that must come before any run."""

from __future__ import annotations

import csv
import json

import pytest

from edgeq.cli import main
from edgeq.errors import ConfigError
from edgeq.lab.config import PipelineConfig
from tests.data.image_fixtures import write_cifar10, write_image_folder

MODEL = "tests.lab.experiment.tiny:tiny_image_cnn"


def _design(folder, cifar):
    return {
        "name": "user-code",
        "base": {"task": {"name": "classification", "val_fraction": 0.2},
                 "model": {"import": MODEL},
                 "policy": {"uniform": {"bits": 8, "algorithm": "ste"}},
                 "training": {"fp_epochs": 1, "qat_epochs": 1}},
        "factors": {"data": {
            "folder": {"task": {"dataset": {"import": "imagefolder", "kwargs": {
                "root": str(folder), "channels": 1}}},
                "model": {"kwargs": {"in_channels": 1, "side": 8, "classes": 2}}},
            "cifar": {"task": {"dataset": {"import": "cifar10", "kwargs": {"root": str(cifar)}}},
                      "model": {"kwargs": {"in_channels": 3, "side": 32, "classes": 10}}}}},
        "seeds": [0]}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("user")
    write_image_folder(tmp / "folder", {"circle": 14, "square": 14}, channels=1)
    write_cifar10(tmp / "cifar", per_batch=6, test=8)
    return tmp


def test_both_datasets_run_as_classification_tasks_with_a_user_model(datasets, capsys):
    path = datasets / "design.json"
    path.write_text(json.dumps(_design(datasets / "folder", datasets / "cifar")))
    out = datasets / "exp"
    assert main(["experiment", str(path), "--out", str(out), "--quiet"]) == 0
    with open(out / "runs.csv", newline="") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert {r["status"] for r in rows.values()} == {"done"}
    for run in ("data-folder_seed0", "data-cifar_seed0"):
        result = json.loads((out / "runs" / run / "result.json").read_text())
        assert result["bit_exact"] is True  # the integer network matches, user model too
        assert 0 <= result["metrics"]["tq_accuracy"] <= 100
    # the folder has 28 images and no test root: 20 % test, then 20 % of the rest val
    cifar = json.loads((out / "runs" / "data-cifar_seed0" / "config.json").read_text())
    assert cifar["model"] == {"import": MODEL, "kwargs": {"in_channels": 3, "side": 32,
                                                          "classes": 10}}
    config = PipelineConfig.from_json(cifar)
    assert PipelineConfig.from_json(config.to_json()) == config  # round trip with import


def test_image_folder_task_splits_off_test_and_val(datasets):
    from edgeq.lab.tasks import make_task

    design = _design(datasets / "folder", datasets / "cifar")
    cfg = {**design["base"], "task": {**design["base"]["task"],
                                      **design["factors"]["data"]["folder"]["task"]},
           "model": {"import": MODEL, "kwargs": {"in_channels": 1, "side": 8, "classes": 2}}}
    task = make_task(PipelineConfig.from_json(cfg))
    task.load(progress=False)
    sizes = {k: len(task.split(k)) for k in ("train", "val", "test")}
    assert sizes == {"test": 6, "val": 4, "train": 18}  # round(0.2*28), round(0.2*22)
    assert task.inputs("train").max() <= 1.0 and task.inputs("train").dtype.is_floating_point


@pytest.mark.parametrize("change, words", [
    (lambda d, tmp: (tmp / "nothing" / "a").mkdir(parents=True) or d["factors"]["data"][
        "folder"]["task"]["dataset"]["kwargs"].update(root=str(tmp / "nothing")),
     ["run data-folder_seed0", "task.dataset", "nothing/a: no images"]),
    (lambda d, tmp: d["base"]["model"].update({"import": "tests.lab.experiment.nope:f"}),
     ["run data-folder_seed0", "model.import", "tests.lab.experiment.nope"]),
    (lambda d, tmp: d["factors"]["data"]["cifar"]["task"]["dataset"].update(
        {"import": "no.such:loader"}), ["run data-cifar_seed0", "task.dataset.import"]),
    (lambda d, tmp: d["base"].pop("model"), ["model.kwargs needs model.import"]),
    (lambda d, tmp: [d["base"].pop("model")] + [lv.pop("model") for lv in d["factors"][
        "data"].values()], ["model.import", "no built-in model"]),
])
def test_bad_user_code_fails_before_any_run(datasets, tmp_path, capsys, change, words):
    data = _design(datasets / "folder", datasets / "cifar")
    change(data, tmp_path)
    path = tmp_path / "design.json"
    path.write_text(json.dumps(data))
    assert main(["experiment", str(path), "--out", str(tmp_path / "exp")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "exp").exists()


def test_model_import_resolves_registered_names_first():
    cfg = PipelineConfig.from_json({"model": {"import": "digits_cnn"}})
    from edgeq.lab.tasks import make_task

    model = make_task(cfg).build_model()
    assert type(model).__name__ == "DigitsCNN"
    with pytest.raises(ConfigError, match="model.name: give either"):
        PipelineConfig.from_json({"model": {"import": "digits_cnn", "name": "digits_cnn"}})
