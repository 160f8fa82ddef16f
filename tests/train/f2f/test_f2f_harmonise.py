import copy
import operator

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgeq.models import DigitsConcatNet, DigitsResNet
from edgeq.train.f2f import propagate_shapes, trace
from edgeq.train.f2f.canonicalise import canonicalise
from edgeq.train.f2f.harmonise import (
    find_add_trees,
    find_concats,
    harmonise_adds,
    harmonise_concats,
)
from edgeq.train.modules import HarmonisedAdd, HarmonisedConcat
from edgeq.train.spec import QuantSpec

SPEC = QuantSpec.from_bits(8, signed=True)


def _traced(model, x):
    gm = trace(copy.deepcopy(model))
    propagate_shapes(gm, x)
    return gm


class Adds(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 2, 1)
        self.b = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        tree = torch.add(a + b, x).add(a)  # inner adds of the final tree
        shared = a * 2 + b  # two readers: a tree of its own, and a leaf of the final tree
        n = x.size(0) + 1  # ints, not tensors
        scaled = torch.add(a, b, alpha=2)  # not a plain add
        return tree + shared, shared - 1, scaled * n


def test_add_trees_are_maximal_and_skip_non_tensor_adds():
    gm = _traced(Adds(), torch.randn(3, 2, 2, 2))
    trees = find_add_trees(gm)
    assert [(len(t.leaves), len(t.inner)) for t in trees] == [(2, 0), (5, 3)]
    shared, root = trees
    assert [leaf.name for leaf in root.leaves] == ["a", "b", "x", "a", shared.root.name]
    assert [t.name for t in trees] == ["add", "add_1"]


def test_residual_adds_and_concat_are_found_with_scoped_names():
    gm = _traced(DigitsResNet(), torch.rand(2, 1, 8, 8))
    canonicalise(gm)
    assert [(t.name, len(t.leaves)) for t in find_add_trees(gm)] == [
        ("layer1.add", 2), ("layer2.add", 2)]
    gm = _traced(DigitsConcatNet(), torch.rand(2, 1, 8, 8))
    cats = find_concats(gm)
    assert [(c.name, len(c.inputs), c.dim) for c in cats] == [("cat", 2, 1)]


def test_harmonise_replaces_each_tree_by_one_module_call():
    x = torch.randn(3, 2, 2, 2)
    model = Adds().eval()
    gm = _traced(model, x)
    expected = model(x)
    done = harmonise_adds(gm, SPEC)
    assert done == [("add", 2), ("add_1", 5)]
    for name, n in done:
        module = gm.get_submodule(name)
        assert isinstance(module, HarmonisedAdd)
        (site,) = [node for node in gm.graph.nodes if node.target == name]
        assert len(site.args) == n
    left = [n for n in gm.graph.nodes
            if n.op != "call_module" and n.target in (torch.add, operator.add, "add")]
    assert [n.kwargs.get("alpha") for n in left] == [None, 2]  # the int add and the scaled one
    # quantisation is off: same outputs
    for got, want in zip(gm(x), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_harmonise_concat_keeps_dim_and_inputs():
    gm = _traced(DigitsConcatNet(), torch.rand(2, 1, 8, 8))
    assert harmonise_concats(gm, SPEC) == [("cat", 2)]
    assert isinstance(gm.cat, HarmonisedConcat)
    (site,) = [n for n in gm.graph.nodes if n.target == "cat"]
    assert [a.target for a in site.args] == ["branch1.2", "branch3.2"]
    assert not any(n.target is torch.cat for n in gm.graph.nodes)


def _program(draw_pairs, n_inputs=3):
    """A GraphModule adding earlier values pairwise; returns it and the reader counts."""
    graph = torch.fx.Graph()
    values = [graph.placeholder(f"x{i}") for i in range(n_inputs)]
    readers = [set() for _ in range(n_inputs)]  # distinct reading adds, as fx counts users
    for j, k in draw_pairs:
        j, k = j % len(values), k % len(values)
        readers[j].add(len(values))
        readers[k].add(len(values))
        values.append(graph.call_function(operator.add, (values[j], values[k])))
        readers.append(set())
    outputs = [v for v, r in zip(values[n_inputs:], readers[n_inputs:], strict=True) if not r]
    graph.output(tuple(outputs))
    return torch.fx.GraphModule(nn.Module(), graph), values, readers, outputs


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=8))
def test_random_add_dags_harmonise_into_the_right_trees(pairs):
    gm, values, readers, outputs = _program(pairs)
    n_in = 3
    is_add = [False] * n_in + [True] * (len(values) - n_in)
    # Oracle: an add is absorbed iff it has exactly one reader and that reader is an add
    # (every reader is an add here, except the graph output).
    absorbed = [is_add[i] and len(readers[i]) == 1 and values[i] not in outputs
                for i in range(len(values))]
    n_roots = sum(a and not b for a, b in zip(is_add, absorbed, strict=True))
    xs = [torch.randn(2, 3) for _ in range(n_in)]
    expected = gm(*xs)
    propagate_shapes(gm, tuple(xs))
    done = harmonise_adds(gm, SPEC)
    assert len(done) == n_roots
    operands = [None] * n_in + [(j % (n_in + i), k % (n_in + i)) for i, (j, k) in enumerate(pairs)]

    def leaves(i):  # x + x reaches an absorbed subtree twice: its leaves count twice
        return sum(leaves(o) if absorbed[o] else 1 for o in operands[i])

    roots = [i for i in range(n_in, len(values)) if not absorbed[i]]
    assert [n for _, n in done] == [leaves(i) for i in roots]
    assert sum(isinstance(m, HarmonisedAdd) for m in gm.modules()) == n_roots
    for got, want in zip(gm(*xs), expected, strict=True):
        torch.testing.assert_close(got, want)
