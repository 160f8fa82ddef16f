"""Phase 1 layer analysis: best candidate per bit width, JSON round trip, configs."""

import numpy as np
import pytest

from edgeq.engine.onnx import import_onnx
from edgeq.engine.ptq import ptq
from edgeq.engine.ptq.analysis import LayerAnalysis, analyse_layers
from edgeq.engine.ptq.calibration import calibrate
from edgeq.engine.ptq.fixedpoint import fake_quantise
from edgeq.engine.ptq.plan import make_plan
from edgeq.errors import ConfigError
from tests.engine.ptq.models import calib_arrays, small_cnn


@pytest.fixture(scope="module")
def setup():
    g = import_onnx(small_cnn())
    arrays = calib_arrays()
    cal = calibrate(g, arrays, 64, progress=False)
    plan = make_plan(g)
    return g, arrays, cal, plan, analyse_layers(g, plan, cal, bits=(8, 6, 4))


def test_keys_and_monotone_error(setup):
    g, _, _, _, an = setup
    assert list(an.variables) == [
        "inputs.x", "conv1.weights", "conv1.activations", "conv2.weights",
        "conv2.activations", "conv3.weights", "conv3.activations", "add.activations",
        "fc.weights", "fc.activations"]
    for key, per in an.variables.items():
        l2 = [per[b].l2 for b in (8, 6, 4)]
        assert l2[0] <= l2[1] <= l2[2], key  # fewer bits never help the best choice


def test_activation_candidate_is_the_best_fl(setup):
    # independent check: brute force over every FL of the input at 4 bits (unsigned)
    _, arrays, cal, _, an = setup
    x = cal.samples["x"].astype(np.float64)

    def l2(fl):
        d = (x - fake_quantise(x, fl, 4, False)).reshape(len(x), -1)
        return np.mean(np.sqrt((d * d).sum(1)))

    best = min(range(-4, 21), key=l2)
    cand = an.variables["inputs.x"][4]
    assert cand.quant.fl == best and cand.quant.signed is False
    assert cand.l2 == pytest.approx(l2(best))


def test_json_round_trip_and_config(setup, tmp_path):
    g, arrays, cal, _, an = setup
    an.save(tmp_path / "a.json")
    back = LayerAnalysis.load(tmp_path / "a.json")
    assert back == an
    cfg = back.config_for({"conv2.weights": 4}, default=8)
    assert cfg.layers["conv2"].weights.bits == 4 and cfg.layers["fc"].weights.bits == 8
    r = ptq(g, arrays, config=cfg, cal=cal)
    # the resolved parameters are the analysed ones, so is the layer error
    assert r.config.layers["conv2"].weights == an.variables["conv2.weights"][4].quant
    assert r.l2["conv2"]["weights"] == pytest.approx(an.variables["conv2.weights"][4].l2)
    with pytest.raises(ConfigError, match="conv1.weights: no candidate at 5 bits"):
        back.config_for({"conv1.weights": 5})


def test_fixed_is_not_a_layer_method(setup):
    g, _, cal, plan, _ = setup
    with pytest.raises(ConfigError, match="'fixed' is network-wide"):
        analyse_layers(g, plan, cal, methods=("fixed",))
