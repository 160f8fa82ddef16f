"""A digits task on small subsets, so that experiment tests train in about a second per run.

Named by import path in test designs (``tests.lab.experiment.tiny:TinyDigits``): worker
processes import it too.
"""

from __future__ import annotations

from edgeq.lab.tasks.base import Split
from edgeq.lab.tasks.digits import DigitsTask

SIZES = {"train": 160, "val": 32, "test": 96}


class TinyDigits(DigitsTask):
    name = "tiny_digits"

    def _load(self, progress: bool) -> dict[str, Split]:
        full = super()._load(progress)
        return {k: Split(s.raw[:SIZES[k]], s.targets[:SIZES[k]]) for k, s in full.items()}


class BrokenDigits(TinyDigits):
    """Loads nothing: every run of it fails (the experiment must go on without it)."""

    def _load(self, progress: bool) -> dict[str, Split]:
        raise RuntimeError("broken on purpose")
