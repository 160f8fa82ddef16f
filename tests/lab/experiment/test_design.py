"""Design expansion, validation before running, and the cross-validation folds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeq.cli import main
from edgeq.errors import ConfigError
from edgeq.lab.config import PipelineConfig
from edgeq.lab.experiment.design import Design, merge
from edgeq.lab.tasks import make_task
from edgeq.lab.tasks.base import fold_indices

TINY = "tests.lab.experiment.tiny:TinyDigits"


def design_json(**over):
    data = {
        "name": "t",
        "base": {"task": {"name": TINY}, "training": {"fp_epochs": 1, "qat_epochs": 1}},
        "factors": {
            "algorithm": {"pact": {"policy": {"uniform": {"algorithm": "pact"}}},
                          "ste": {"policy": {"uniform": {"algorithm": "ste"}}}},
            "bits": {"2": {"policy": {"uniform": {"bits": 2}}},
                     "4": {"policy": {"uniform": {"bits": 4}}},
                     "8": {"policy": {"uniform": {"bits": 8}}}},
        },
        "exclude": [{"algorithm": "ste", "bits": "2"}],
        "seeds": [0, 5],
        "cv": {"folds": 2, "seed": 3},
    }
    data.update(over)
    return data


def test_merge_is_recursive_and_copies():
    base = {"a": {"b": 1, "c": [1]}, "d": 2}
    out = merge(base, {"a": {"b": 5}, "e": {"f": 1}})
    assert out == {"a": {"b": 5, "c": [1]}, "d": 2, "e": {"f": 1}}
    out["a"]["c"].append(2)
    assert base == {"a": {"b": 1, "c": [1]}, "d": 2}


def test_full_factorial_minus_exclusions_times_seeds_and_folds():
    runs = Design.from_json(design_json()).runs()
    cells = {r.cell for r in runs}
    assert len(cells) == 2 * 3 - 1 and "algorithm=ste,bits=2" not in cells
    assert len(runs) == 5 * 2 * 2
    assert len({r.run_id for r in runs}) == len(runs)
    run = next(r for r in runs if r.run_id == "algorithm-ste_bits-4_seed5_fold1")
    cfg = PipelineConfig.from_json(run.config)
    assert cfg.policy == {"uniform": {"algorithm": "ste", "bits": 4}}
    assert cfg.seeds == (5,) and (run.seed, run.fold) == (5, 1)
    assert cfg.training.fp_epochs == 1  # base keys survive the patches


def test_design_round_trips_through_json():
    d = Design.from_json(design_json())
    assert Design.from_json(json.loads(json.dumps(d.to_json()))) == d


@pytest.mark.parametrize("change, words", [
    # an unknown key in a factor's patch: the run, the key path and the level that set it
    (lambda d: d["factors"]["bits"]["4"].update(training={"fp_epoch": 3}),
     ["run algorithm-pact_bits-4_seed0_fold0", "training.fp_epoch", "factors.bits.4"]),
    # a patch that makes an invalid value
    (lambda d: d["factors"]["bits"]["2"]["policy"]["uniform"].update(bits=40),
     ["run algorithm-pact_bits-2_seed0_fold0", "policy.uniform", "factors.bits.2"]),
    (lambda d: d["exclude"].append({"algorthm": "ste"}), ["exclude[1]", "'algorthm'"]),
    (lambda d: d["exclude"].append({"bits": "16"}), ["exclude[1].bits", "'16'"]),
    (lambda d: d.update(cv={"folds": 1}), ["cv.folds"]),
    (lambda d: d.update(seeds=[0, 0]), ["seeds must be distinct"]),
    (lambda d: d.update(factor={}), ["unknown key factor"]),
    (lambda d: d["base"].update(seeds=[1]), ["base.seeds"]),
    (lambda d: d["factors"].update({"a b": {"x": {}}}), ["factors.a b"]),
    (lambda d: d["base"].update(model={"import": "no_such_module_xyz:make"}),
     ["run algorithm-pact_bits-2_seed0_fold0", "model.import", "no_such_module_xyz"]),
])
def test_bad_designs_name_the_run_and_key(change, words):
    data = design_json()
    change(data)
    with pytest.raises(ConfigError) as info:
        Design.from_json(data).runs()
    msg = str(info.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg, (word, msg)


def test_cli_validates_every_run_before_running_any(tmp_path, capsys):
    data = design_json()
    data["factors"]["bits"]["8"]["training"] = {"qat_epochs": 0}  # only the last cells
    path = tmp_path / "design.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "exp"
    assert main(["experiment", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "training.qat_epochs" in err and "bits-8" in err
    assert not out.exists()  # nothing ran, nothing was written


def test_folds_partition_the_training_split_reproducibly():
    for n, k in ((10, 2), (11, 3), (1077, 5)):
        parts = fold_indices(n, k, seed=7)
        allidx = np.concatenate(parts)
        assert sorted(allidx.tolist()) == list(range(n))  # disjoint and complete
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        again = fold_indices(n, k, seed=7)
        assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = fold_indices(1077, 5, seed=8)
    assert not np.array_equal(other[0], fold_indices(1077, 5, seed=7)[0])
    with pytest.raises(ConfigError, match="cv.folds"):
        fold_indices(3, 4, seed=0)


def test_use_fold_trains_without_the_held_out_fold_and_keeps_test():
    cfg = PipelineConfig.from_json({"task": {"name": "digits"}})
    full = make_task(cfg)
    full.load(progress=False)
    train = full.split("train")
    task = make_task(cfg)
    task.use_fold(1, 3, seed=0)
    held = fold_indices(len(train), 3, seed=0)[1]
    assert torch.equal(task.split("val").raw, train.raw[torch.from_numpy(held)])
    assert len(task.split("train")) + len(task.split("val")) == len(train)
    # no held-out image in the training part (images compared as rows)
    kept = {tuple(r.flatten().tolist()) + (int(t),) for r, t in
            zip(task.split("train").raw, task.split("train").targets, strict=True)}
    for r, t in zip(task.split("val").raw, task.split("val").targets, strict=True):
        assert tuple(r.flatten().tolist()) + (int(t),) not in kept or \
            (train.raw == r).all(dim=(1, 2, 3)).sum() > 1  # a duplicate image elsewhere
    assert torch.equal(task.split("test").raw, full.split("test").raw)
    assert torch.equal(task.split("test").targets, full.split("test").targets)


def test_dry_run_lists_every_valid_run_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "design.json"
    path.write_text(json.dumps(design_json()))
    out = tmp_path / "exp"
    assert main(["experiment", str(path), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 21 and lines[-1].startswith("20 runs in 5 cells, all valid")
    assert lines[0] == "algorithm-pact_bits-2_seed0_fold0  (algorithm=pact,bits=2, seed 0, fold 0)"
    assert not out.exists()
