"""Registry and the grid property of every algorithm's hard forward."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeq.errors import ConfigError
from edgeq.train.algorithms import QUANTISERS, make_quantiser, register_quantiser
from edgeq.train.algorithms.base import Quantiser
from edgeq.train.quantiser import expand_eps
from edgeq.train.spec import AnaParams, InqParams, QuantSpec


def test_registry_holds_the_five_algorithms_and_refuses_duplicates():
    assert sorted(QUANTISERS) == ["ana", "inq", "pact", "ste", "tqt"]
    with pytest.raises(ValueError, match="twice"):
        register_quantiser("pact")(Quantiser)


def test_per_channel_needs_channels():
    with pytest.raises(ConfigError, match="per_channel"):
        make_quantiser(QuantSpec("ste", granularity="per_channel"))


def spec_for(algorithm, bits, signed, per_channel, ana_strategy):
    n_levels = 2**bits
    params = None
    if algorithm == "ana":
        params = AnaParams(noise="normal", strategy=ana_strategy)
    if algorithm == "inq":
        # pow2 needs signed and 4..64 levels; otherwise the uniform grid
        pow2 = signed and 4 <= n_levels <= 64
        params = InqParams(levels="pow2" if pow2 else "uniform")
    gran = "per_channel" if per_channel else "per_tensor"
    return QuantSpec(algorithm, n_levels, signed, gran, params=params)


@settings(max_examples=150, deadline=None)
@given(
    algorithm=st.sampled_from(sorted(QUANTISERS)),
    bits=st.integers(1, 16),
    signed=st.booleans(),
    ternary=st.booleans(),
    per_channel=st.booleans(),
    ana_strategy=st.sampled_from(["mode", "random"]),
    train=st.booleans(),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**31 - 1),
)
def test_forward_is_on_the_grid_and_in_range(
    algorithm, bits, signed, ternary, per_channel, ana_strategy, train, scale, seed
):
    spec = spec_for(algorithm, bits, signed, per_channel, ana_strategy)
    if ternary and algorithm != "inq":
        spec = QuantSpec(algorithm, 3, True, spec.granularity, params=spec.params)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 7, generator=g, dtype=torch.float64) * scale
    q = make_quantiser(spec, n_channels=3, channel_dim=0, weight_shape=tuple(w.shape)).double()
    dim = 0 if per_channel else None
    rows = w if dim == 0 else w.reshape(1, -1)
    q.initialise(rows.amin(1).squeeze(), rows.amax(1).squeeze())
    if algorithm == "inq":
        q.freeze_fraction(w, 1.0)  # fully frozen: the forward is the quantised weight
    q.train(train)
    if algorithm == "ana":
        q.set_epoch(0)  # σ = 1 level in training: mode/random stay on the grid
    x = w * 1.5  # some values beyond the clip range
    y = q(x if algorithm != "inq" else w).detach()
    ints = y / expand_eps(q.eps.detach(), y, 0)
    assert torch.allclose(ints, torch.round(ints), atol=1e-6)
    assert q.int_range.contains(torch.round(ints).numpy())
    if algorithm == "inq" and q.levels() is not None:
        assert set(torch.round(ints).flatten().tolist()) <= set(q.levels().tolist())
