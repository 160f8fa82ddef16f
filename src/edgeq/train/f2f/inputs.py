"""Input quantisation: the network input becomes an integer tensor inside the FQ model.

An integer-only program starts from integers, so the FQ network must quantise its own
input: :func:`insert_input_quantisers` puts a ``QuantActivation("identity", spec)``
right after every tensor placeholder and makes every former reader of the placeholder
read the quantiser instead. F2T reads that quantiser's ``range`` and ``eps`` as the TQ
network's input rule ``x̂ = clip(floor(x/ε + 1/2), lo, hi)``.

How a user asks for it: ``f2f(model, policy, example, input_spec=QuantSpec(...))``. An
explicit argument, not a policy rule, because the input is not a module the policy could
match, and a pseudo-type in the ready-made policies would silently give the input a
signed min/max quantiser. :func:`unit_input_spec` is the usual choice for inputs in
[0, 1] (images scaled to unit range, like the digits): unsigned, ε = 1/(2^B − 1), fixed
(STE, constant bounds) so QAT does not move the input grid.
"""

from __future__ import annotations

import torch.fx as fx

from edgeq.train.f2f.trace import finish, is_tensor, unique_name
from edgeq.train.spec import InitSpec, QuantSpec


def unit_input_spec(bits: int = 8) -> QuantSpec:
    """Unsigned ``bits``-bit input on [0, 1] with a fixed grid: ε = 1/(2^bits − 1)."""
    return QuantSpec.from_bits(bits, signed=False, algorithm="ste",
                               init=InitSpec("const", lo=0.0, hi=1.0))


def insert_input_quantisers(gm: fx.GraphModule, spec: QuantSpec) -> list[str]:
    """Insert an identity quantiser after every tensor placeholder; returns their names.

    The quantiser of placeholder ``x`` is named ``x_quant`` (made unique if taken). Needs
    shape metadata (:func:`~edgeq.train.f2f.trace.propagate_shapes`) to tell tensors
    from other inputs.
    """
    from edgeq.train.modules import QuantActivation

    names = []
    for node in [n for n in gm.graph.nodes if n.op == "placeholder" and is_tensor(n)]:
        name = unique_name(gm, f"{node.name}_quant")
        quantiser = QuantActivation("identity", spec)
        quantiser.train(gm.training)
        gm.add_submodule(name, quantiser)
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (node,))
        new.meta = dict(node.meta)
        # every reader but the quantiser itself now reads the quantised input
        node.replace_all_uses_with(new, delete_user_cb=lambda user, new=new: user is not new)
        names.append(name)
    finish(gm)
    return names
