"""Integer ranges R(z, K): the one type for "which integers may this tensor hold".

``IntRange(n_levels=K, offset=z, step=s)`` is the set ``{z, z+s, ..., z+(K-1)s}``.
``step`` is 1 except for the bipolar binary range ``{-1, +1}`` (step 2). Signed ranges
use the two's-complement-like offset ``z = -floor(K/2)`` (DESIGN §2), so an 8-bit signed
range is [-128, 127] and a ternary range is [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq.errors import RangeError

_INT_DTYPES = (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64)


@dataclass(frozen=True)
class IntRange:
    """The integer set ``{offset + i*step : 0 <= i < n_levels}``."""

    n_levels: int
    offset: int = 0
    step: int = 1

    def __post_init__(self) -> None:
        for key in ("n_levels", "offset", "step"):
            if not isinstance(getattr(self, key), (int, np.integer)) or isinstance(
                getattr(self, key), bool
            ):
                raise RangeError(f"IntRange.{key} must be an integer, got {getattr(self, key)!r}")
        if self.n_levels < 2:
            raise RangeError(f"IntRange needs at least 2 levels, got n_levels={self.n_levels}")
        if self.step < 1:
            raise RangeError(f"IntRange.step must be >= 1, got {self.step}")
        if self.step != 1 and not (self.n_levels == 2 and self.offset == -1 and self.step == 2):
            raise RangeError(
                "only the bipolar binary range {-1, +1} may have step != 1, got "
                f"n_levels={self.n_levels}, offset={self.offset}, step={self.step}"
            )
        if self.hi >= 2**62 or self.lo <= -(2**62):
            raise RangeError(f"IntRange [{self.lo}, {self.hi}] does not fit 63 bits")

    # -- constructors -------------------------------------------------------------
    @classmethod
    def unsigned(cls, n_levels: int) -> IntRange:
        """``{0, ..., K-1}``."""
        return cls(n_levels, 0)

    @classmethod
    def signed(cls, n_levels: int) -> IntRange:
        """``{-floor(K/2), ..., K-1-floor(K/2)}``; for K=2 this is the binary {-1, +1}."""
        if n_levels == 2:
            return cls.binary()
        return cls(n_levels, -(n_levels // 2))

    @classmethod
    def from_levels(cls, n_levels: int, signed: bool) -> IntRange:
        return cls.signed(n_levels) if signed else cls.unsigned(n_levels)

    @classmethod
    def from_bits(cls, bits: int, signed: bool) -> IntRange:
        """B-bit range with K = 2^B levels; 1-bit signed is the bipolar binary range."""
        if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 32:
            raise RangeError(f"bit width must be an integer in [1, 32], got {bits!r}")
        return cls.from_levels(2**bits, signed)

    @classmethod
    def binary(cls) -> IntRange:
        """The bipolar binary range ``{-1, +1}``."""
        return cls(2, -1, 2)

    @classmethod
    def ternary(cls) -> IntRange:
        """``{-1, 0, 1}``."""
        return cls(3, -1)

    @classmethod
    def from_bounds(cls, lo: int, hi: int) -> IntRange:
        """The contiguous range ``[lo, hi]``."""
        lo, hi = int(lo), int(hi)
        if hi <= lo:
            raise RangeError(f"empty or single-level range [{lo}, {hi}]")
        return cls(hi - lo + 1, lo)

    # -- properties ---------------------------------------------------------------
    @property
    def lo(self) -> int:
        return int(self.offset)

    @property
    def hi(self) -> int:
        return int(self.offset + (self.n_levels - 1) * self.step)

    @property
    def is_signed(self) -> bool:
        return self.lo < 0

    @property
    def bits(self) -> int:
        """Bits needed to index the levels: ceil(log2 K) (ternary needs 2)."""
        # exact integer form of ceil(log2 K); math.log2 rounds for K > 2^53
        return max(1, (int(self.n_levels) - 1).bit_length())

    @property
    def storage_bits(self) -> int:
        """Bits of the narrowest two's-complement/unsigned integer holding [lo, hi]."""
        return np.dtype(self.dtype).itemsize * 8

    @property
    def dtype(self) -> np.dtype:
        """Narrowest NumPy integer dtype that holds every level."""
        return narrowest_dtype(self.lo, self.hi)

    def levels(self) -> np.ndarray:
        return self.offset + self.step * np.arange(self.n_levels, dtype=np.int64)

    def contains(self, x: np.ndarray) -> bool:
        """True when every element of ``x`` is a level of this range."""
        x = np.asarray(x)
        if x.size == 0:
            return True
        if not np.all(np.isfinite(x)) or not np.all(np.floor(x) == x):
            return False
        inside = (x >= self.lo) & (x <= self.hi)
        if self.step != 1:
            inside &= (x - self.offset) % self.step == 0
        return bool(np.all(inside))

    def clip(self, x: np.ndarray) -> np.ndarray:
        """Clamp to [lo, hi] (for step 2, values are first snapped by sign: x>=0 -> +1)."""
        if self.step != 1:
            return np.where(np.asarray(x) >= 0, self.hi, self.lo).astype(np.int64)
        return np.clip(x, self.lo, self.hi)

    # -- JSON -----------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"n_levels": int(self.n_levels), "offset": int(self.offset), "step": int(self.step)}

    @classmethod
    def from_json(cls, data: dict) -> IntRange:
        unknown = set(data) - {"n_levels", "offset", "step"}
        if unknown:
            raise RangeError(f"unknown IntRange keys: {sorted(unknown)}")
        if "n_levels" not in data:
            raise RangeError("IntRange JSON needs the key 'n_levels'")
        return cls(int(data["n_levels"]), int(data.get("offset", 0)), int(data.get("step", 1)))

    def __str__(self) -> str:
        if self.step != 1:
            return "{-1,+1}"
        return f"[{self.lo},{self.hi}]"


def narrowest_dtype(lo: int, hi: int) -> np.dtype:
    """Narrowest of int8/uint8/int16/uint16/int32/uint32/int64 holding [lo, hi]."""
    for dt in _INT_DTYPES:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    raise RangeError(f"range [{lo}, {hi}] does not fit int64")
