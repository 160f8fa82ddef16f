"""IntRange: the levels of R(z, K) (DESIGN §2), membership, clipping, JSON."""

import json

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edgeq.errors import RangeError
from edgeq.numerics import IntRange, narrowest_dtype

bits_st = st.integers(1, 16)


# -- constructors: levels written out by hand ---------------------------------------------


def test_8bit_levels():
    assert (IntRange.from_bits(8, signed=True).lo, IntRange.from_bits(8, signed=True).hi) == (
        -128,
        127,
    )
    assert (IntRange.from_bits(8, signed=False).lo, IntRange.from_bits(8, signed=False).hi) == (
        0,
        255,
    )


def test_binary_is_bipolar():
    assert IntRange.binary().levels().tolist() == [-1, 1]
    assert IntRange.from_bits(1, signed=True) == IntRange.binary()
    assert IntRange.from_bits(1, signed=False).levels().tolist() == [0, 1]


def test_ternary_levels_and_bits():
    r = IntRange.ternary()
    assert r.levels().tolist() == [-1, 0, 1]
    assert r.bits == 2  # 3 levels need a 2-bit index
    assert r.dtype == np.int8


@given(bits_st)
def test_from_bits_unsigned(bits):
    r = IntRange.from_bits(bits, signed=False)
    assert (r.lo, r.hi, r.n_levels) == (0, 2**bits - 1, 2**bits)
    assert r.bits == bits and not r.is_signed


@given(st.integers(2, 16))
def test_from_bits_signed_twos_complement(bits):
    r = IntRange.from_bits(bits, signed=True)
    assert (r.lo, r.hi) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert r.bits == bits and r.is_signed
    # the narrowest dtype is the one a C programmer would pick
    assert r.dtype == (np.int8 if bits <= 8 else np.int16)


@given(st.integers(2, 2**62))
@example(2**60 + 1)  # log2 in floating point rounds this down to exactly 60
def test_bits_is_ceil_log2_levels(k):
    r = IntRange(k, 0)
    assert 2 ** (r.bits - 1) < k <= 2**r.bits


@given(st.integers(3, 1000))
def test_signed_offset_is_minus_floor_half(k):
    r = IntRange.signed(k)
    assert r.lo == -(k // 2) and r.hi == k - 1 - k // 2
    assert len(set(r.levels().tolist())) == k


def test_from_bounds():
    r = IntRange.from_bounds(-3, 4)
    assert r.levels().tolist() == [-3, -2, -1, 0, 1, 2, 3, 4]


# -- invalid ranges -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        (1, 0),  # a single level
        (0, 0),
        (-4, 0),
        (3, -1, 2),  # only {-1,+1} may have step 2
        (2, 0, 2),
        (4, 0, 0),
        (2**62 + 1, 0),  # hi = 2^62 leaves the 63-bit budget
    ],
)
def test_invalid_ranges_raise(args):
    with pytest.raises(RangeError):
        IntRange(*args)


@pytest.mark.parametrize("bad", [2.0, "4", True, None])
def test_non_integer_fields_raise(bad):
    with pytest.raises(RangeError):
        IntRange(bad, 0)


@pytest.mark.parametrize("bits", [0, 33, -1, 2.5])
def test_from_bits_out_of_range(bits):
    with pytest.raises(RangeError):
        IntRange.from_bits(bits, signed=True)


def test_from_bounds_empty():
    with pytest.raises(RangeError):
        IntRange.from_bounds(3, 3)


# -- membership and clipping -----------------------------------------------------------------

ranges_st = st.one_of(
    st.builds(IntRange.from_bits, bits_st, st.booleans()),
    st.just(IntRange.ternary()),
    st.just(IntRange.binary()),
)


@given(ranges_st, st.lists(st.integers(-70000, 70000), min_size=1, max_size=20))
def test_contains_matches_level_set(r, xs):
    levels = set(r.levels().tolist())
    assert r.contains(np.array(xs)) == all(x in levels for x in xs)


@given(ranges_st)
def test_contains_rejects_fractions_and_nan(r):
    assert r.contains(r.levels())
    assert not r.contains(np.array([0.5]))
    assert not r.contains(np.array([np.nan]))


@given(ranges_st, st.lists(st.integers(-70000, 70000), min_size=1, max_size=20))
def test_clip_lands_on_a_level(r, xs):
    y = r.clip(np.array(xs, dtype=np.int64))
    assert r.contains(y)
    if r.step == 1:
        # contiguous range: clip is the nearest level
        assert y.tolist() == [min(max(x, r.lo), r.hi) for x in xs]
    else:
        assert y.tolist() == [1 if x >= 0 else -1 for x in xs]


# -- JSON --------------------------------------------------------------------------------------


@given(ranges_st)
def test_json_round_trip(r):
    text = json.dumps(r.to_json())
    assert IntRange.from_json(json.loads(text)) == r


def test_json_unknown_or_missing_keys():
    with pytest.raises(RangeError):
        IntRange.from_json({"n_levels": 4, "zero": 0})
    with pytest.raises(RangeError):
        IntRange.from_json({"offset": 0})


# -- narrowest dtype -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lo, hi, dtype",
    [
        (-128, 127, np.int8),
        (0, 255, np.uint8),
        (-129, 0, np.int16),
        (0, 65535, np.uint16),
        (-1, 65535, np.int32),
        (0, 2**32 - 1, np.uint32),
        (-1, 2**32 - 1, np.int64),
    ],
)
def test_narrowest_dtype(lo, hi, dtype):
    assert narrowest_dtype(lo, hi) == np.dtype(dtype)


def test_narrowest_dtype_beyond_int64():
    with pytest.raises(RangeError):
        narrowest_dtype(0, 2**63)
