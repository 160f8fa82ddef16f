"""Fixtures of the armcl tests: the compile cache in a session tmp dir (each model is
built once per session), and the ACL/cross toolchain check: skip with the reason, except
under CI=true, where it must be installed (.ci/run runs scripts/install-arm-toolchain.sh)."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session", autouse=True)
def _cache_in_tmp(build_cache):
    """Every test here builds into the session's cache (tests/conftest.py)."""


@pytest.fixture(scope="session")
def acl():
    """Skip (with the reason) without ACL, the aarch64 toolchain or qemu; fail in CI."""
    from edgeq.engine.backends.armcl import missing_acl

    missing = missing_acl() + [t for t in ("qemu-aarch64", "aarch64-linux-gnu-nm")
                               if shutil.which(t) is None]
    if missing:
        reason = (f"ARM Compute Library toolchain missing: {', '.join(missing)} "
                  "(scripts/install-arm-toolchain.sh)")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
