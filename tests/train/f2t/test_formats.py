"""F2T's arithmetic formats: the fp8 emulation against hand-computed rounding, and the
errors F2T gives when a conversion quantity over- or underflows in the format."""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgeq.errors import ConfigError, EdgeqError
from edgeq.train.f2f import Policy, f2f, unit_input_spec
from edgeq.train.f2t import f2t
from edgeq.train.f2t.formats import Arith, FormatError, parse_format, round_to_format
from edgeq.train.modules import quant_modules

# (exponent bias, mantissa bits, largest finite value, overflow value) per format
_SPECS = {
    torch.float8_e4m3fn: (7, 3, 448.0, math.nan),  # OCP E4M3: no inf, overflow is NaN
    torch.float8_e5m2: (15, 2, 57344.0, math.inf),
    torch.bfloat16: (127, 7, float(torch.finfo(torch.bfloat16).max), math.inf),
    torch.float16: (15, 10, 65504.0, math.inf),
}


def reference_round(x: float, dtype: torch.dtype) -> float:
    """Round to nearest, ties to even, by hand: Fractions, one binade at a time."""
    bias, man, largest, overflow = _SPECS[dtype]
    if x == 0 or not math.isfinite(x):
        return x
    a = Fraction(abs(x))
    e = max(math.floor(math.log2(a)), 1 - bias)  # subnormals share the lowest binade
    while Fraction(2) ** e > a:  # log2 of a Fraction may be off by one ulp
        e -= 1
    while Fraction(2) ** (e + 1) <= a and e + 1 >= 1 - bias:
        e += 1
    e = max(e, 1 - bias)
    spacing = Fraction(2) ** (e - man)
    v = round(a / spacing) * spacing  # round() of a Fraction: ties to even
    if v > largest:
        return math.copysign(overflow, x) if not math.isnan(overflow) else math.nan
    return math.copysign(float(v), x)


finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("dtype", list(_SPECS))
@settings(max_examples=300, deadline=None)
@given(x=finite32)
def test_rounding_matches_hand_computed(dtype, x):
    got = float(round_to_format(torch.tensor([x], dtype=torch.float32), dtype)[0])
    want = reference_round(x, dtype)
    assert (math.isnan(got) and math.isnan(want)) or got == want


@pytest.mark.parametrize("dtype,x,want", [
    (torch.float8_e4m3fn, 3.14159, 3.25),  # 3 mantissa bits: 3.0, 3.25, 3.5
    (torch.float8_e4m3fn, 464.0, 448.0),  # tie between 448 and 480 (NaN): to even, 448
    (torch.float8_e4m3fn, 2.0 ** -10, 0.0),  # half the smallest subnormal 2^-9: tie to 0
    (torch.float8_e5m2, 2.0 ** -16, 2.0 ** -16),  # the smallest subnormal
    (torch.float8_e5m2, 61440.0, math.inf),  # tie between 57344 and 65536 (inf): even
    (torch.float16, 1e-6, 2.0 ** -24 * 17),  # subnormal: multiples of 2^-24
])
def test_rounding_by_hand(dtype, x, want):
    assert float(round_to_format(torch.tensor([x]), dtype)[0]) == want


def test_native_formats_agree_with_numpy_and_ml_dtypes():
    x = np.random.default_rng(0).standard_normal(10_000).astype(np.float32) * 1e3
    t = torch.from_numpy(x)
    assert np.array_equal(round_to_format(t, torch.float16).numpy(), x.astype(np.float16))
    bf = round_to_format(t, torch.bfloat16).float().numpy()
    assert np.array_equal(bf, x.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_arith_errors_name_the_node_and_quantity():
    a = Arith(torch.float8_e4m3fn)
    with pytest.raises(FormatError, match=r"node 'c': ε_w underflows to 0 in float8_e4m3fn"):
        a.cast(torch.tensor([1e-4, 0.5]), "node 'c'", "ε_w", nonzero=True)
    with pytest.raises(FormatError, match=r"node 'c': bias overflows in float8_e4m3fn"):
        a.cast(torch.tensor([500.0]), "node 'c'", "bias")
    with pytest.raises(FormatError, match="underflows"):
        a.rnd(torch.tensor(0.01) * torch.tensor(0.01), "n", "ε_x·ε_w",
              factors=(torch.tensor(0.01), torch.tensor(0.01)))
    zero = a.cast(torch.tensor([0.0, 1e-4]), "n", "μ")  # not a scale: zero is a value
    assert zero.tolist() == [0.0, 0.0]
    with pytest.raises(ConfigError, match="unknown F2T arithmetic format 'float7'"):
        parse_format("float7")
    with pytest.raises(ConfigError, match="not supported"):
        Arith(torch.int8)


def _tiny_fq(bias: float) -> tuple[nn.Module, torch.Tensor]:
    """input quantiser (ε = 1/255) -> linear (8-bit weights of magnitude ~1) -> ReLU."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -0.5, 0.25, 0.0]] * 3))
        net[0].bias.fill_(bias)
    x = torch.rand(8, 4)
    gm, _ = f2f(net, Policy.uniform(8, "pact"), x[:2], input_spec=unit_input_spec(8))
    for _, m in quant_modules(gm):
        m.start()
    gm.eval()
    with torch.no_grad():
        gm(x)
    return gm, x


def test_f2t_refuses_an_overflowing_bias_in_float16():
    # ε_x·ε_w = (1/255)·(1/127) ≈ 3.1e-5; the bias 10 is then 3.2e5 units > 65504
    gm, x = _tiny_fq(bias=10.0)
    eps_acc = (1 / 255) * (1 / 127)
    assert 10.0 / eps_acc > 65504
    with pytest.raises(EdgeqError, match=r"node '.*': bias / \(ε_x·ε_w\) overflows in float16"):
        f2t(gm, x[:1], dtype=torch.float16, allow_subnormal=True)
    f2t(gm, x[:1], dtype=torch.float32)  # fine in a wider format


def test_f2t_refuses_a_subnormal_scale_unless_allowed():
    # ε_x·ε_w ≈ 3.1e-5 is below float16's smallest normal 2^-14 ≈ 6.1e-5
    gm, x = _tiny_fq(bias=0.1)
    assert (1 / 255) * (1 / 127) < 2.0 ** -14
    with pytest.raises(FormatError, match=r"ε_x·ε_w = 3\.\d+e-05 is subnormal in float16"):
        f2t(gm, x[:1], dtype=torch.float16)
    tq = f2t(gm, x[:1], dtype=torch.float16, allow_subnormal=True)
    assert tq.values[tq.output_name].eps.dtype == torch.float16


def test_f2t_in_fp8_refuses_the_accumulator_scale():
    gm, x = _tiny_fq(bias=0.1)
    eps_x = 1 / 255
    eps_w = float(next(m for _, m in quant_modules(gm) if hasattr(m, "weight_eps"))
                  .weight_eps.max())
    # E4M3's smallest subnormal is 2^-9; anything below half of it rounds to 0
    assert eps_x * eps_w < 2.0 ** -10
    with pytest.raises(FormatError, match=r"ε_x·ε_w underflows to 0 in float8_e4m3fn"):
        f2t(gm, x[:1], dtype=torch.float8_e4m3fn, allow_subnormal=True)
    # by default already the input ε = 1/255 is refused: E4M3 is normal from 2^-6 only
    with pytest.raises(FormatError, match=r"_quant': ε_out = 0.00391 is subnormal in float8"):
        f2t(gm, x[:1], dtype=torch.float8_e4m3fn)


def test_f2t_in_float64_is_unchanged_by_the_format_layer():
    """Native float64 conversion: the same integers as computing the folds by hand."""
    gm, x = _tiny_fq(bias=0.1)
    tq = f2t(gm, x[:1])
    lin = next(m for _, m in quant_modules(gm) if hasattr(m, "weight_eps"))
    eps_acc = (torch.tensor(1 / 255, dtype=torch.float32).double()
               * lin.weight_eps.double())
    want = torch.floor(lin.bias.double() / eps_acc + 0.5).to(torch.int64)
    got = next(op for op in tq.ops if getattr(op, "bias", None) is not None).bias
    assert torch.equal(got, want)
