"""The Task interface: digits and landmarks through the same calls, and config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeq.errors import ConfigError
from edgeq.lab.config import PipelineConfig
from edgeq.lab.tasks import TASKS, make_task, task_class

TINY_LANDMARKS = {
    "task": {"name": "landmarks_3ddfa", "n_train": 48, "n_val": 4, "n_test": 24,
             "batch_size": 16},
    "model": {"name": "mobilenet_v1_3ddfa", "width": 0.25, "input_size": 32},
}


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """Every task, data loaded, built through the same config path."""
    from tests.data.image_fixtures import write_image_folder

    folder = tmp_path_factory.mktemp("images")
    write_image_folder(folder, {"a": 6, "b": 6}, channels=1)
    classification = {"task": {"name": "classification", "dataset": {
        "import": "imagefolder", "kwargs": {"root": str(folder), "channels": 1}}},
        "model": {"import": "tests.lab.experiment.tiny:tiny_image_cnn",
                  "kwargs": {"in_channels": 1, "side": 8, "classes": 2}}}
    out = {}
    for name, data in (("digits", {}), ("landmarks_3ddfa", TINY_LANDMARKS),
                       ("classification", classification)):
        task = make_task(PipelineConfig.from_json(data))
        task.load(progress=False)
        out[name] = task
    return out


@pytest.mark.parametrize("name", TASKS)
def test_every_task_goes_through_the_same_interface(tasks, name):
    task = tasks[name]
    x = task.inputs("test")
    batch = next(iter(task.batches("train", 8, seed=0)))
    assert batch[0].dtype == torch.float32 and len(batch[0]) == 8
    model = task.build_model()
    out = model(batch[0])
    loss = task.loss(out, batch[1])
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()  # differentiable
    metrics = task.evaluate(model.eval()(x).detach(), "test")
    assert task.metric.name in metrics
    assert set(task.columns()) <= set(metrics)
    assert task.example_input().shape == (1, *x.shape[1:])


def test_digits_accuracy_of_perfect_and_wrong_logits(tasks):
    task = tasks["digits"]
    labels = task.split("test").targets
    perfect = torch.nn.functional.one_hot(labels, 10).float()
    assert task.evaluate(perfect)["accuracy"] == 100.0
    assert task.evaluate(torch.roll(perfect, 1, dims=1))["accuracy"] == 0.0
    assert task.metric.higher_is_better and not task_class("landmarks_3ddfa").metric \
        .higher_is_better


def test_landmarks_true_parameters_give_zero_nme_and_mean_gives_the_baseline(tasks):
    task = tasks["landmarks_3ddfa"]
    targets = task.split("test").targets  # whitened true parameters
    assert task.evaluate(targets)["nme"] < 1e-3
    zeros = task.evaluate(torch.zeros_like(targets))  # whitened 0 = training mean
    base = task.baselines()["mean"]
    for key in ("nme", "nme_yaw_0_30", "nme_yaw_30_60", "nme_yaw_60_90", "nme_bins_mean"):
        assert zeros[key] == pytest.approx(base[key], rel=1e-4), key


def test_landmarks_projection_is_3ddfa_reconstruction(tasks):
    """project() against 3DDFA's own recipe, written out here with NumPy."""
    task = tasks["landmarks_3ddfa"]
    mm = task.mm
    p = task.faces["test"].params[:5].astype(np.float64)
    ref = []
    for q in p:
        shape = (mm.u[:, 0] + mm.w_shp @ q[12:52] + mm.w_exp @ q[52:]).reshape(3, -1,
                                                                                order="F")
        ref.append((q[:12].reshape(3, 4)[:, :3] @ shape + q[:12].reshape(3, 4)[:, 3:])[:2])
    got = task.project(torch.from_numpy(p).float()).double().numpy()
    np.testing.assert_allclose(got, np.stack(ref), rtol=1e-4, atol=1e-2)
    # and the crop-pixel landmarks: 3DDFA-V2's x = v0 - 1, y = 120 - v1, scaled to S
    size = task.size
    crop = np.stack([np.stack(ref)[:, 0] - 1, 120 - np.stack(ref)[:, 1]], 1) * size / 120
    np.testing.assert_allclose(task.faces["test"].landmarks[:5], crop, atol=1e-2)


def test_landmarks_losses(tasks):
    task = tasks["landmarks_3ddfa"]
    y = task.split("train").targets[:6]
    assert float(task.loss(y, y)) == 0.0
    noisy = y + 0.1 * torch.randn_like(y)
    pdc = float(((noisy - y) ** 2).mean())
    assert float(task.loss(noisy, y)) > pdc  # VDC term added
    w = task._wpdc_weights(noisy, y)
    assert w.shape == y.shape and (w >= 0).all() and (w <= 1).all()
    assert torch.allclose(w.max(dim=1).values, torch.ones(6))
    assert (w[:, 11] == 0).all()  # the z offset does not move 2D points


def test_landmarks_input_rule_makes_pixel_minus_127(tasks):
    task = tasks["landmarks_3ddfa"]
    cfg = task.config
    assert (cfg.input.bits, cfg.input.signed, cfg.input.lo, cfg.input.hi) == (8, True, -1, 1)
    pixels = torch.arange(256, dtype=torch.uint8)
    x = task.to_input(pixels)
    # ε = 1/128: x/ε = pixel - 127.5 exactly, rounded half up, clipped to [-128, 127]
    q = torch.clamp(torch.floor(x.double() * 128 + 0.5), -128, 127)
    expected = torch.clamp(pixels.long() - 127, max=127)
    assert torch.equal(q.long(), expected)


@pytest.mark.parametrize("data,key", [
    ({"task": {"name": "faces"}}, "task.name"),
    ({"task": {"name": "landmarks_3ddfa", "n_train": 0}}, "task.n_train"),
    ({"task": {"name": "landmarks_3ddfa", "loss": "l1"}}, "task.loss"),
    ({"task": {"name": "landmarks_3ddfa", "colour": 1}}, "task.colour"),
    ({"task": {"name": "digits", "n_train": 5}}, "task.n_train"),
    ({"task": {"name": "landmarks_3ddfa"}, "model": {"name": "digits_cnn"}}, "model.name"),
    ({"model": {"name": "mobilenet_v1_3ddfa"}}, "model.name"),  # cannot do digits
    ({"model": {"name": "resnet50"}}, "model.name"),
    ({"model": {"name": "digits_cnn", "width": 0.5}}, "model.width"),
    ({"model": {"name": "digits_cnn", "input_size": 64}}, "model.input_size"),
    ({"task": {"name": "landmarks_3ddfa"}, "model": {"width": 0.01}}, "model.width"),
    ({"task": {"name": "landmarks_3ddfa"}, "model": {"width": "half"}}, "model.width"),
    ({"task": {"name": "landmarks_3ddfa"}, "model": {"input_size": 16}}, "model.input_size"),
    ({"task": {"name": "landmarks_3ddfa"}, "model": {"input_size": 64.5}}, "model.input_size"),
    ({"dataset": {"name": "digits"}, "task": {"name": "digits"}}, "dataset"),
    ({"dataset": {"name": "landmarks_3ddfa", "sead": 1}}, "dataset.sead"),
    ({"training": {"schedule": "cosine"}}, "training.schedule"),
])
def test_bad_task_and_model_keys_are_named(data, key):
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_json(data)
    message = str(info.value)
    assert key in message and "\n" not in message


def test_old_dataset_configs_still_read_as_the_task():
    cfg = PipelineConfig.from_json({"dataset": {"name": "digits", "seed": 3, "batch_size": 32},
                                    "model": {"name": "digits_resnet"}})
    assert (cfg.task.name, cfg.task.seed, cfg.task.batch_size) == ("digits", 3, 32)
    again = PipelineConfig.from_json(cfg.to_json())
    assert again == cfg and "task" in cfg.to_json() and "dataset" not in cfg.to_json()


def test_landmarks_config_round_trips_with_defaults_filled():
    cfg = PipelineConfig.from_json({"task": {"name": "landmarks_3ddfa", "n_train": 100},
                                    "input": {"bits": 6}})
    assert cfg.model.name == "mobilenet_v1_3ddfa" and cfg.model.resolved() == (0.5, 64)
    assert cfg.input.signed is True and cfg.input.bits == 6  # task's range, given bits
    data = cfg.to_json()
    assert data["task"]["n_train"] == 100 and data["task"]["loss"] == "pdc"
    assert PipelineConfig.from_json(data) == cfg


class EchoTask(task_class("digits")):
    """A user task defined outside edgeq: digits under another name."""

    name = "echo"


def test_user_task_by_import_path():
    cfg = PipelineConfig.from_json({"task": {"name": f"{__name__}:EchoTask"}})
    assert isinstance(make_task(cfg), EchoTask)
    for bad in ("no.such.module:Task", f"{__name__}:Missing", f"{__name__}:TINY_LANDMARKS"):
        with pytest.raises(ConfigError, match="task.name"):
            PipelineConfig.from_json({"task": {"name": bad}})
