"""Sample-by-sample batches (samples.py): when the compiler takes them, and that the program
gives the reference's integers, at one and two threads, whole and per layer."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.engine.backends.c import compile_model
from edgeq.engine.backends.c.project import prepare_graph
from edgeq.engine.backends.c.samples import conv_heavy, sample_loop, separable
from edgeq.engine.backends.reference.executor import run_graph
from tests.engine.backends.c.models import tq
from tests.engine.passes.graphs import S8, U8, conv_rq_graph, graph, node, value


def _reference(g, x):
    return run_graph(g, {g.inputs[0]: x})[g.outputs[0]]


def _conv_graph():
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (4, 2, 3, 3)).astype(np.int8)
    return conv_rq_graph(w, None, rng.integers(1, 300, 4), rng.integers(-500, 500, 4), 10, 0, 255)


def _mlp_graph():
    """a [N, 64] u8 -> Gemm (64 -> 32) -> RequantShift: all work in one GEMM row a sample."""
    from tests.engine.passes.graphs import const

    rng = np.random.default_rng(1)
    nodes = [node("Gemm", "fc", ["a", "w"], ["acc"], transB=1),
             node("RequantShift", "rq", ["acc", "mul", "add"], ["q"], shift=12, lo=0, hi=255)]
    vals = [value("a", ("N", 64), np.uint8, U8),
            const("w", rng.integers(-128, 128, (32, 64)).astype(np.int8), S8),
            value("acc", ("N", 32), np.int64), const("mul", rng.integers(1, 300, 32)),
            const("add", rng.integers(-500, 500, 32)), value("q", ("N", 32), np.uint8, U8)]
    return graph(nodes, vals, ["a"], ["q"])


def _concat_batch_graph():
    """x, z [N, 2, 6, 6] u8 -> Concat on axis 0: the output mixes the two inputs' samples."""
    nodes = [node("Concat", "cat", ["x", "z"], ["y"], axis=0)]
    vals = [value("x", (2, 2, 6, 6), np.uint8, U8), value("z", (2, 2, 6, 6), np.uint8, U8),
            value("y", (4, 2, 6, 6), np.uint8, U8)]
    return graph(nodes, vals, ["x", "z"], ["y"])


def test_a_convolution_runs_sample_by_sample():
    g = _conv_graph()
    one, many = prepare_graph(g, 1), prepare_graph(g, 3)
    assert separable(one, many, 3) and conv_heavy(one)
    loop = sample_loop(one, many, 3, threads=2)
    assert (loop.samples, loop.contexts) == (3, 2)
    assert sample_loop(one, many, 3, threads=8).contexts == 3  # never more arenas than samples
    assert sample_loop(one, prepare_graph(g, 1), 1, threads=2) is None  # batch 1: nothing to loop


def test_an_mlp_keeps_the_batch_whole(tmp_path):
    g = _mlp_graph()
    one = prepare_graph(g, 1)
    assert separable(one, prepare_graph(g, 4), 4) and not conv_heavy(one)
    x = np.random.default_rng(2).integers(0, 256, (4, 64)).astype(np.uint8)
    cm = compile_model(g, tmp_path / "m", batch=4, threads=2)
    assert cm.loop is None and cm.contexts == 1
    np.testing.assert_array_equal(cm.run({"a": x})["q"], _reference(g, x))


def test_work_along_the_batch_axis_is_not_separable():
    g = _concat_batch_graph()
    assert not separable(g, g, 2)  # Concat on axis 0 (and the shapes do not scale)


@pytest.mark.parametrize("batch,threads", [(3, 1), (3, 2), (4, 2)])
def test_sample_loop_is_bit_exact(tmp_path, batch, threads):
    graph_, _ = tq("resnet")  # residual adds: a HarmonisedAdd reads two arena places
    x = np.random.default_rng(batch).integers(0, 256, (batch, 1, 8, 8)).astype(np.uint8)
    cm = compile_model(graph_, tmp_path / "m", batch=batch, threads=threads)
    assert cm.loop is not None and cm.contexts == min(batch, threads)
    assert cm.arena_bytes == cm.contexts * cm.plan.arena_bytes  # one sample's plan each
    want = _reference(graph_, x)
    np.testing.assert_array_equal(cm.run({graph_.inputs[0]: x})[graph_.outputs[0]], want)
    model = cm.in_process()
    model.set_input(x)
    for _ in range(3):  # samples are claimed afresh on every run
        model.run()
        np.testing.assert_array_equal(model.output(), want)


def test_per_layer_times_cover_every_sample(tmp_path):
    """The harness times each layer over all samples of a sample loop, on the first arena,
    and the outputs it writes are the batch's (each sample stored after its last layer)."""
    graph_, _ = tq("digits_cnn")
    x = np.random.default_rng(7).integers(0, 256, (5, 1, 8, 8)).astype(np.uint8)
    cm = compile_model(graph_, tmp_path / "m", batch=5, threads=2)
    assert cm.loop is not None
    ms, layers = cm.latency(x, repeat=3, per_layer=True)
    assert ms > 0 and layers and all(us > 0 for *_, us in layers)
    names = [name for _, name, _, _ in layers]
    nodes = [n.name for n in cm.graph.nodes]
    assert names == [n for n in nodes if n in set(names)]  # the graph's order
    assert {n.name for n in cm.graph.nodes if n.op in ("ConvRequant", "GemmRequant")} <= set(names)
    np.testing.assert_array_equal(cm.run({graph_.inputs[0]: x})[graph_.outputs[0]],
                                  _reference(graph_, x))
