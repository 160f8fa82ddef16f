"""Graph rewrites on the IR: pattern -> replacement passes, validated after each."""

from edgeq.engine.passes.base import GraphPass, run_passes, single_consumer

__all__ = ["GraphPass", "run_passes", "single_consumer"]
