"""Bad input: ACL missing, an explicit armcl rule ACL cannot run exactly, armcl on
--target host; a one-line error naming the node/target and what to install, a non-zero
exit from the CLI, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeq.cli import main
from edgeq.engine.backends.armcl import compile_mixed, project
from edgeq.errors import BackendError, BuildError
from tests.engine.backends.armcl.layers import layer_chain
from tests.engine.passes.graphs import S8, U8, const, graph, node, value

DRONET = "../shared/fixtures/quantlab/dronet/DRONETV3_ql_integerized.onnx"


def _depthwise():
    w = np.ones((3, 1, 3, 3), dtype=np.int8)
    return graph([node("Conv", "dw", ["x", "w"], ["y"], group=3, kernel_shape=[3, 3])],
                 [value("x", ("N", 3, 5, 5), np.uint8, U8), const("w", w, S8),
                  value("y", ("N", 3, 3, 3), np.int32)], ["x"], ["y"])


def test_missing_acl_names_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(project, "ACL_INCLUDE", tmp_path / "nowhere")
    g, _ = layer_chain()
    with pytest.raises(BuildError, match="libarm-compute-dev:arm64.*") as exc:
        compile_mixed(g, tmp_path / "out", "default=armcl")
    assert "install-arm-toolchain.sh" in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_explicit_rule_acl_cannot_run_exactly_names_the_node(tmp_path):
    with pytest.raises(BackendError, match=r"node 'dw' \(Conv\): rule Conv=armcl .*depthwise"):
        compile_mixed(_depthwise(), tmp_path / "out", "default=c,Conv=armcl")
    assert not (tmp_path / "out").exists()


def test_default_armcl_falls_back_to_c_for_depthwise():
    from edgeq.engine.backends.c import project as cproj

    g = _depthwise()
    prep = project.prepare_mixed(g, project.BackendSpec.parse("default=armcl"), "cortex-a72")
    assert set(prep.assignment.values()) == {"c"}
    assert cproj.concretise(g, 1).nodes[0].name == "dw"


def test_host_target_with_armcl_rules_is_an_error(tmp_path):
    g, _ = layer_chain()
    with pytest.raises(BackendError, match=r"node 'c3s1_rq'.*only on --target cortex-a72.*host"):
        compile_mixed(g, tmp_path / "out", "default=c,c3s1=armcl", target="host")


def test_cli_errors_exit_non_zero_without_traceback(tmp_path, capsys):
    out = tmp_path / "prog"
    assert main(["compile", DRONET, "--backend", "default=armcl", "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: node '") and "cortex-a72" in err and "Traceback" not in err
    assert main(["compile", DRONET, "--target", "cortex-a72", "--backend",
                 "default=c,MaxPool_7=armcl", "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "node 'MaxPool_7' (MaxPool)" in err and len(err.strip().splitlines()) == 1
    assert not Path(out).exists()


def test_cost_table_of_another_model_is_refused(tmp_path):
    from edgeq.engine.bench import compile_armcl
    from edgeq.errors import ConfigError

    table = tmp_path / "other.json"
    table.write_text('{"model": "x", "target": "cortex-a72", "batch": 1, "layers": '
                     '[{"node": "zz", "op": "Conv", "c": 1, "armcl": 0}]}')
    with pytest.raises(ConfigError, match="other.json': node 'zz' is not in this model"):
        compile_armcl(DRONET, tmp_path / "out", "auto", cost_table=table)
    assert not (tmp_path / "out").exists()
