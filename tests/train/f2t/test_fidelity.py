"""The fidelity report: per-layer rows, the metric, JSON and the table."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from edgeq.errors import ConfigError
from edgeq.train.f2t import f2t, fidelity_report
from tests.train.f2t.families import family


@pytest.fixture(scope="module")
def cnn():
    gm, example, (x, y) = family("digits_cnn")
    return gm, f2t(gm, example), x[:100], y[:100]


def test_report_rows_and_metric(cnn):
    gm, tq, x, y = cnn
    report = fidelity_report(gm, tq, (x, y))
    assert [r.name for r in report.layers] == ["relu1", "relu2"]
    assert report.input.name == "input" and report.input.value == "x"
    assert report.samples == 100 and report.labelled
    assert report.layers[0].elements == 100 * 16 * 8 * 8
    with torch.no_grad():
        fq_acc = float((gm(x).argmax(1) == y).float().mean())
    assert report.fq_metric == pytest.approx(fq_acc)
    data = json.loads(report.dumps())
    assert set(data) >= {"metric", "fq_metric", "tq_metric", "agreement", "max_lsb", "layers",
                         "input", "samples", "output_max_abs_diff"}
    assert data["layers"][1]["name"] == "relu2" and "frac_differ" in data["layers"][1]
    table = report.format()
    assert "relu2" in table and "top1: FQ" in table and "agreement" in table


def test_data_forms_agree(cnn):
    gm, tq, x, y = cnn
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    a, b = fidelity_report(gm, tq, loader), fidelity_report(gm, tq, (x, y))
    assert a.to_json() == b.to_json()
    unlabelled = fidelity_report(gm, tq, x)
    assert unlabelled.fq_metric is None and unlabelled.agreement == b.agreement
    assert "top1: FQ" not in unlabelled.format()


def test_fq_mode_is_restored_and_metric_checked(cnn):
    gm, tq, x, _ = cnn
    gm.train()
    try:
        fidelity_report(gm, tq, x[:4])
        assert gm.training and gm.relu1.training
    finally:
        gm.eval()
    with pytest.raises(ConfigError, match="metric"):
        fidelity_report(gm, tq, x[:4], metric="mse")
