"""report.html opened in headless Chromium: the rendered page holds the design table with
the right numbers (computed here by hand), the per-factor plots and a link per run."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from edgeq.engine.tensor_io import write_json
from edgeq.lab.experiment.design import Design
from edgeq.lab.experiment.register import Register
from edgeq.lab.experiment.report import write_report

T975 = {1: 12.706204736174698, 2: 4.302652729749464}  # printed tables


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing: .ci/run installs it with apt-get")
        pytest.skip("chromium not installed (Debian package 'chromium')")
    return path


def _browser(*args: str) -> subprocess.CompletedProcess:
    chromium = _chromium()
    with tempfile.TemporaryDirectory(prefix="edgeq-chromium-") as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """An experiment directory with constructed results: 2 x 2 cells, 3 seeds."""
    out = tmp_path_factory.mktemp("html")
    design = Design.from_json({
        "name": "html-check",
        "base": {"task": {"name": "digits"}},
        "factors": {"algorithm": {"pact": {"policy": {"uniform": {"algorithm": "pact"}}},
                                  "ste": {"policy": {"uniform": {"algorithm": "ste"}}}},
                    "bits": {"4": {"policy": {"uniform": {"bits": 4}}},
                             "8": {"policy": {"uniform": {"bits": 8}}}}},
        "seeds": [0, 1, 2]})
    write_json(out / "design.json", design.to_json())
    runs = design.runs()
    register = Register(design, runs)
    for r in runs:
        lv = dict(r.levels)
        tq = {"pact": 90.0, "ste": 86.0}[lv["algorithm"]] + {"4": 0.0, "8": 2.5}[
            lv["bits"]] + [0.0, 1.0, 3.0][r.seed]
        if r.run_id == "algorithm-ste_bits-4_seed2":
            register.update(r.run_id, "failed", 0.1, error="RuntimeError: on purpose")
            continue
        register.update(r.run_id, "done", 1.0, metrics={
            "fp_accuracy": 95.0, "fq_accuracy": tq + 0.5, "tq_accuracy": tq,
            "engine_accuracy": tq, "bit_exact": True})
    register.save(out)
    write_report(out)
    return out


def _cell(values):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T975[n - 1] * std / math.sqrt(n)
    return f"{mean:.2f} ± {std:.2f} [{mean - half:.2f}, {mean + half:.2f}]"


class _Tables(HTMLParser):
    """Text of every cell of table#cells, hrefs and images of the rendered DOM."""

    def __init__(self):
        super().__init__()
        self.rows, self.links, self.images, self._in, self._cell = [], [], [], False, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._in = a.get("id") == "cells"
        elif tag == "tr" and self._in:
            self.rows.append([])
        elif tag in ("td", "th") and self._in:
            self._cell = ""
        elif tag == "a":
            self.links.append(a.get("href"))
        elif tag == "img":
            self.images.append(a.get("src", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell.strip())
            self._cell = None
        elif tag == "table":
            self._in = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_chromium_renders_the_design_table_with_the_right_numbers(report_dir):
    dom = _browser("--dump-dom", (report_dir / "report.html").as_uri()).stdout
    page = _Tables()
    page.feed(dom)
    header, *rows = page.rows
    assert header == ["algorithm", "bits", "runs", "fp_accuracy", "fq_accuracy",
                      "tq_accuracy"]
    expected = {("pact", "4"): [90.0, 91.0, 93.0], ("pact", "8"): [92.5, 93.5, 95.5],
                ("ste", "4"): [86.0, 87.0], ("ste", "8"): [88.5, 89.5, 91.5]}
    assert [tuple(r[:2]) for r in rows] == list(expected)
    for row in rows:
        tq = expected[tuple(row[:2])]
        assert row[2] == str(len(tq))
        assert row[3] == "95.00 ± 0.00 [95.00, 95.00]"
        assert row[4] == _cell([v + 0.5 for v in tq])
        assert row[5] == _cell(tq)
    assert rows[0][5] == "91.33 ± 1.53 [87.54, 95.13]"  # worked by hand once more
    # one link per run, to its directory; one embedded PNG per factor
    links = {h for h in page.links if h and h.startswith("runs/")}
    assert len(links) == 12 and "runs/algorithm-ste_bits-4_seed2/" in links
    assert len([s for s in page.images if s.startswith("data:image/png;base64,")]) == 2


def test_chromium_screenshot_shows_a_rendered_page(report_dir, tmp_path):
    shot = tmp_path / "shot.png"
    _browser(f"--screenshot={shot}", "--window-size=1000,1400",
             (report_dir / "report.html").as_uri())
    img = Image.open(shot).convert("L")
    assert img.size == (1000, 1400)
    dark = int((np.asarray(img) < 128).sum())
    assert dark > 2000  # text, table borders and plots, not a blank page
