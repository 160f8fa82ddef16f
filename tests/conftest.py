"""Shared test fixtures: locating ../shared/fixtures relative to the project root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


def shared_fixture(*parts: str) -> Path:
    """Path of a third-party fixture; skip when absent, but fail under CI=true."""
    path = SHARED.joinpath("fixtures", *parts)
    if not path.exists():
        reason = f"fixture {path} is absent (expected beside the project root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory) -> Path:
    """One C build cache (XDG_CACHE_HOME) for the test session: each compiled program is
    built once per session and never taken from an earlier run."""
    path = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(path))
        yield path


@pytest.fixture
def dronet_dir() -> Path:
    return shared_fixture("quantlab", "dronet")


# the tiny landmark demo run, shared across test modules (one per session)
from tests.landmarks_demo import landmark_demo  # noqa: E402,F401
