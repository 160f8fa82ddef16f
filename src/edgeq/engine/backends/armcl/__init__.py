"""The ARM Compute Library backend (LPDNN's ARM-CL plugin) for ``--target cortex-a72``.

Layers that are one integer GEMM (Conv with group 1, Gemm, MatMul) run as ACL 20.08
``NEGEMMLowpMatrixMultiplyCore`` u8·u8 -> S32 products with edgeq's own im2col and
RequantShift around them (bit-exact); every other layer runs the C backend's kernels in
the same static binary. ``compile_mixed(graph, out_dir, backend=SPEC)`` builds such a
program for a :class:`~edgeq.engine.backends.spec.BackendSpec` mixing ``c`` and
``armcl`` (``"auto"``: per layer the cheaper backend by the cost table of
:mod:`edgeq.engine.backends.armcl.cost`).
"""

from edgeq.engine.backends.armcl.generator import supports, why_not
from edgeq.engine.backends.armcl.project import (
    MixedModel,
    compile_mixed,
    missing_acl,
    mixed_cached,
    require_acl,
)

__all__ = ["MixedModel", "compile_mixed", "missing_acl", "mixed_cached", "require_acl",
           "supports", "why_not"]
