"""ε-harmonisation: additions and concatenations become modules with one ε for all inputs.

An integer add (or concat) is exact only if its operands share one ε, so F2F replaces

* every maximal *add tree* — operator.add / torch.add / Tensor.add nodes on tensors, where
  each inner add has exactly one user, the next add of the tree — by one call of a
  ``HarmonisedAdd(n_leaves, spec)`` with the leaves as inputs;
* every ``torch.cat`` / ``torch.concat`` of tensors by one ``HarmonisedConcat``.

Finding (``find_add_trees``, ``find_concats``) and rewriting (``harmonise_adds``,
``harmonise_concats``) are separate so that F2F can resolve the precision policy on the
harmonised names before anything is rewritten. The passes need shape metadata
(:func:`~edgeq.train.f2f.trace.propagate_shapes`): that is how they tell an add of float
tensors from an add of Python ints such as ``x.size(0) + 1`` or of integer index tensors.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fx as fx

from edgeq.train.f2f.trace import finish, is_float_tensor, scoped_name
from edgeq.train.spec import QuantSpec

_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_CAT_FUNCTIONS = (torch.cat, torch.concat, torch.concatenate)


@dataclass
class AddTree:
    root: fx.Node
    inner: list[fx.Node]  # add nodes absorbed into the tree (root excluded), parents first
    leaves: list[fx.Node]  # operands, in left-to-right order
    name: str  # qualified name of the HarmonisedAdd that will replace it


@dataclass
class Concat:
    node: fx.Node
    inputs: list[fx.Node]
    dim: int
    name: str


SpecFor = QuantSpec | Callable[[str], QuantSpec]


def _is_tensor_add(node: fx.Node) -> bool:
    is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target == "add")
    if not is_add or len(node.args) != 2 or node.kwargs.get("alpha", 1) != 1:
        return False  # alpha != 1 or out= are not plain adds
    if set(node.kwargs) - {"alpha"}:
        return False
    return is_float_tensor(node) and all(is_float_tensor(a) for a in node.args)


def _collect(node: fx.Node, inner: list[fx.Node], leaves: list[fx.Node]) -> None:
    for operand in node.args:
        if _is_tensor_add(operand) and len(operand.users) == 1:
            inner.append(operand)
            _collect(operand, inner, leaves)
        else:
            leaves.append(operand)


def _current_leaves(node: fx.Node, inner: set[fx.Node]) -> list[fx.Node]:
    # Re-read operands from the graph: an earlier rewrite may have replaced a leaf node.
    leaves = []
    for operand in node.args:
        leaves.extend(_current_leaves(operand, inner) if operand in inner else [operand])
    return leaves


def _unique_names(gm: fx.GraphModule, nodes: list[fx.Node], leaf: str) -> list[str]:
    # Reserve each name as it is chosen, so two trees in one scope get add and add_1.
    taken: set[str] = set()
    names = []
    for node in nodes:
        name = scoped_name(gm, node, leaf, taken)
        taken.add(name)
        names.append(name)
    return names


def find_add_trees(gm: fx.GraphModule) -> list[AddTree]:
    """Maximal add trees, in graph order of their roots."""
    adds = [n for n in gm.graph.nodes if _is_tensor_add(n)]
    absorbed = {n for n in adds if len(n.users) == 1 and _is_tensor_add(next(iter(n.users)))}
    roots = [n for n in adds if n not in absorbed]
    trees = []
    for root, name in zip(roots, _unique_names(gm, roots, "add"), strict=True):
        inner: list[fx.Node] = []
        leaves: list[fx.Node] = []
        _collect(root, inner, leaves)
        # x + x reaches an inner add twice; it is still one node (erased once)
        trees.append(AddTree(root, list(dict.fromkeys(inner)), leaves, name))
    return trees


def _cat_args(node: fx.Node) -> tuple[object, int]:
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return tensors, dim


def find_concats(gm: fx.GraphModule) -> list[Concat]:
    """Concatenations of tensor nodes along a constant dimension."""
    found = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in _CAT_FUNCTIONS:
            continue
        tensors, dim = _cat_args(node)
        if not isinstance(tensors, (list, tuple)) or not isinstance(dim, int):
            continue
        if tensors and all(is_float_tensor(t) for t in tensors):
            found.append((node, list(tensors), dim))
    names = _unique_names(gm, [n for n, _, _ in found], "cat")
    return [Concat(n, t, d, name) for (n, t, d), name in zip(found, names, strict=True)]


def _spec(spec_for: SpecFor, name: str) -> QuantSpec:
    return spec_for if isinstance(spec_for, QuantSpec) else spec_for(name)


def _replace(gm: fx.GraphModule, old: fx.Node, name: str, inputs: list[fx.Node]) -> None:
    with gm.graph.inserting_before(old):
        new = gm.graph.call_module(name, tuple(inputs))
    new.meta = dict(old.meta)
    old.replace_all_uses_with(new)


def harmonise_adds(
    gm: fx.GraphModule, spec_for: SpecFor, trees: list[AddTree] | None = None
) -> list[tuple[str, int]]:
    """Replace add trees by HarmonisedAdd calls; returns (name, number of inputs) pairs."""
    from edgeq.train.modules import HarmonisedAdd

    trees = find_add_trees(gm) if trees is None else trees
    for tree in trees:
        gm.add_submodule(tree.name, HarmonisedAdd(len(tree.leaves), _spec(spec_for, tree.name)))
        _replace(gm, tree.root, tree.name, _current_leaves(tree.root, set(tree.inner)))
        for node in [tree.root, *tree.inner]:  # users first, so each is dead when erased
            gm.graph.erase_node(node)
    finish(gm)
    return [(t.name, len(t.leaves)) for t in trees]


def harmonise_concats(
    gm: fx.GraphModule, spec_for: SpecFor, concats: list[Concat] | None = None
) -> list[tuple[str, int]]:
    """Replace concatenations by HarmonisedConcat calls; returns (name, inputs) pairs."""
    from edgeq.train.modules import HarmonisedConcat

    concats = find_concats(gm) if concats is None else concats
    for cat in concats:
        module = HarmonisedConcat(len(cat.inputs), cat.dim, _spec(spec_for, cat.name))
        gm.add_submodule(cat.name, module)
        _replace(gm, cat.node, cat.name, list(_cat_args(cat.node)[0]))
        gm.graph.erase_node(cat.node)
    finish(gm)
    return [(c.name, len(c.inputs)) for c in concats]
