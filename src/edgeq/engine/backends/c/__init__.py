"""The generated C backend: a kernel library (``kernels/*.c``) plus a thin generator.

``compile_model(graph | path, out_dir, target="host"|"cortex-a72", batch=1)`` writes a
self-contained C99 project (``model.h``/``model.c`` call sequence, ``weights.c`` data,
the kernels, a ``main.c`` harness and a ``Makefile``), builds ``run_model`` and returns
a :class:`CompiledModel` whose ``run(feeds)`` executes it (under ``qemu-aarch64`` for
``cortex-a72``). ``supports(graph, node)`` is the backend's per-node predicate for
:mod:`edgeq.engine.backends.spec`.
"""

from edgeq.engine.backends.c.generator import SUPPORTED_OPS, supports
from edgeq.engine.backends.c.project import (
    TARGETS,
    CompiledModel,
    cache_dir,
    compile_cached,
    compile_graph,
    compile_model,
    prepare_graph,
)

__all__ = [
    "SUPPORTED_OPS",
    "TARGETS",
    "CompiledModel",
    "cache_dir",
    "compile_cached",
    "compile_graph",
    "compile_model",
    "prepare_graph",
    "supports",
]
