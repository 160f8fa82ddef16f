"""Fixed point [IL.FL]: hand-computed quantisation, IL/FL rules and the FL search."""

import numpy as np
import pytest

from edgeq.engine.ptq import fixedpoint as fp
from edgeq.errors import ConfigError


def test_quantise_rounds_half_up_and_saturates():
    v = np.array([0.3, -0.3, 1.0, 0.126, 0.0625, -0.0625, -2.0])
    # x8: 2.4 -> 2, -2.4 -> -2, 8 -> clip 7, 1.008 -> 1, 0.5 -> 1 (half up), -0.5 -> 0, -16 -> -8
    assert fp.quantise(v, 3, 4, signed=True).tolist() == [2, -2, 7, 1, 1, 0, -8]
    assert fp.quantise(v, 3, 4, signed=False).tolist() == [2, 0, 8, 1, 1, 0, 0]


def test_per_channel_fl_along_an_axis():
    w = np.array([[0.5, 0.25], [0.5, 0.25]])
    q = fp.quantise(w, (2, 3), 8, True, axis=0)  # row 0 at 1/4, row 1 at 1/8
    assert q.tolist() == [[2, 1], [4, 2]]
    assert fp.fake_quantise(w, (2, 3), 8, True, axis=0).tolist() == w.tolist()


@pytest.mark.parametrize(("max_abs", "bits", "signed", "fl"), [
    (0.75, 8, True, 7),   # IL = ceil(log2 0.75) + sign = 0 + 1
    (3.0, 8, False, 6),   # IL = 2
    (3.9, 8, True, 5),    # IL = 2 + 1
    (0.01, 4, True, 9),   # IL = ceil(-6.64) + 1 = -5
])
def test_initial_fl(max_abs, bits, signed, fl):
    assert fp.initial_fl(max_abs, bits, signed) == fl
    # the start never saturates more than rounding does
    assert (2 ** (bits - signed) - 1) * 2.0**-fl >= max_abs - 2.0 ** -(fl + 1)


def test_search_finds_the_exact_grid():
    # values on the 2^-10 grid below 2^-3: FL = 10 is exact at 8 bits, FL 9 is not,
    # FL 11+ saturates 0.12 (> 127/2^11); the search must return 10 with zero error
    rng = np.random.default_rng(0)
    v = rng.integers(-127, 128, 500) / 1024.0
    v[0] = 127 / 1024

    def err(fl):
        return float(np.sum((v - fp.fake_quantise(v, fl, 8, True)) ** 2))

    fl, e = fp.search_fl(err, fp.initial_fl(np.abs(v).max(), 8, True))
    assert (fl, e) == (10, 0.0)


def test_search_trades_clipping_for_resolution():
    # one outlier at 1.0 and 9999 values at 0.0155 (4 bits signed): keeping the outlier
    # (FL <= 3) rounds every 0.0155 to 0 (error 2.4); FL 5 still does (0.496 -> 0); FL 6
    # clips the outlier to 7/64 (error 0.79) and holds 0.0155 as 1/64; FL 7+ clips harder
    v = np.full(10000, 0.0155)
    v[0] = 1.0

    def brute(fl):  # independent: Python floats, the definition written out
        tot = 0.0
        for x in v:
            q = min(max(int(np.floor(x * 2**fl + 0.5)), -8), 7)
            tot += (x - q * 2.0**-fl) ** 2
        return tot

    want = min(range(2, 21), key=brute)  # the candidates: FL0 - 1 = 2 ... 20
    fl, _ = fp.search_fl(lambda f: np.sum((v - fp.fake_quantise(v, f, 4, True)) ** 2),
                         fp.initial_fl(1.0, 4, True))
    assert fl == want == 6


@pytest.mark.parametrize("bits", [1, 17, 0, 2.5, "8", True])
def test_bad_bit_width(bits):
    with pytest.raises(ConfigError, match="bit width"):
        fp.check_bits(bits, "--bits")
