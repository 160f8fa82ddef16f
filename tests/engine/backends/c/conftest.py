"""Fixtures of the C backend tests: the compile cache in a session tmp dir, the cross
toolchain check (skip with the reason, except under CI=true where it must be there)."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session", autouse=True)
def _cache_in_tmp(build_cache):
    """Every test here builds into the session's cache (tests/conftest.py)."""


def _missing_cross_tools() -> list[str]:
    return [t for t in ("aarch64-linux-gnu-gcc", "qemu-aarch64") if shutil.which(t) is None]


@pytest.fixture(scope="session")
def cross_toolchain():
    """Skip (with the reason) when the aarch64 toolchain is absent; fail under CI=true."""
    missing = _missing_cross_tools()
    if missing:
        reason = f"cross toolchain missing: {', '.join(missing)} (scripts/install-arm-toolchain.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
