"""Fuzzing the CLI (issue 11): no traceback, kill, hang or half-written output.

Runs ``benchmarks/fuzz.py``'s generator on a few hundred seeded cases (mutated ONNX
models of every dialect, input files, DORY configs, output paths, pipeline configs and
run directories), each through the CLI in a worker process under a memory limit. The
longer run (``python benchmarks/fuzz.py``, 1,200 cases) reports counts per class.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N_CASES = 220


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("edgeq_fuzz", ROOT / "benchmarks" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    fuzz = _fuzz_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fuzz, fuzz.fuzz(N_CASES, seed=11, work=tmp_path_factory.mktemp("fuzz"),
                               mem_mb=3072, timeout=60.0)


def test_no_traceback_kill_hang_or_half_written_output(results):
    fuzz, got = results
    bad = [r for r in got if r["outcome"].split(":")[0] in fuzz.BAD_CLASSES]
    assert not bad, bad[:5]
    assert len(got) == N_CASES


def test_the_cases_reach_the_validators(results):
    """The generator is not vacuous: most cases fail, cleanly, with several error types."""
    fuzz, got = results
    counts = fuzz.summary(got)
    errors = {k for k in counts if k.startswith("error:")}
    assert {"error:ModelFileError", "error:InputFileError", "error:ConfigError"} <= errors
    assert counts.get("ok", 0) < N_CASES // 2
