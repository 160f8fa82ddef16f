"""The kernel library is compiled once per compiler, flags and sources (project.kernel_objects)."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from edgeq.engine.backends.c import project


def test_kernel_objects_are_built_once_and_keyed_by_flags(build_cache):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    host = project.target("host")
    objs = project.kernel_objects(host)
    assert {o.name for o in objs} == {f[:-2] + ".o" for f in project.KERNEL_FILES
                                      if f.endswith(".c")}
    stamps = [o.stat().st_mtime_ns for o in objs]
    assert project.kernel_objects(host) == objs  # cached: not compiled again
    assert [o.stat().st_mtime_ns for o in objs] == stamps
    other = dataclasses.replace(host, cflags=host.cflags + " -DEQ_TEST_FLAG")
    assert project.kernel_objects(other)[0].parent != objs[0].parent
