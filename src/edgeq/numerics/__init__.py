"""Integer ranges, rounding and requantisation maths. Pure NumPy: imports no torch."""

from edgeq.numerics.intrange import IntRange, narrowest_dtype
from edgeq.numerics.requant import (
    RequantParams,
    check_fits,
    choose_shift,
    make_requant,
    requant_shift,
    round_significant,
)
from edgeq.numerics.rounding import floor_div_pow2, round_div_pow2, round_half_up, to_integers

__all__ = [
    "IntRange",
    "RequantParams",
    "check_fits",
    "choose_shift",
    "floor_div_pow2",
    "make_requant",
    "narrowest_dtype",
    "requant_shift",
    "round_div_pow2",
    "round_half_up",
    "round_significant",
    "to_integers",
]
