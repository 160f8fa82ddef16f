"""The NumPy reference backend: the executable specification of the integer semantics.

Importing this package registers every kernel (one module per op family) in
:data:`KERNELS`. Kernel contract (see ``registry.py``): ``kernel(*inputs, **attrs)``
with NumPy arrays in ONNX input order and ONNX attribute names; ONNX defaults are
applied inside the kernel. Opset-aware kernels (``Softmax``) also take ``opset=``.

Every kernel's docstring states its rounding and overflow rule. In short: integer
arithmetic (Conv, Gemm, MatMul, Add, Sub, Mul, sum pooling, ReduceSum, RequantShift,
HarmonisedAdd, the fused ``*Requant`` ops) is exact in int64 and raises
IntegerOverflowError instead of wrapping; float ops keep their float dtype and read
integer inputs as float64 real values.
Kernels raise ValueError for attribute values they do not implement; the executor adds
the node's name. They ignore only the QuantLab/DORY bit-width annotations
(``_common.ANNOTATION_ATTRS``) and reject any other unknown attribute.
"""

from edgeq.engine.backends.reference import (  # noqa: F401  (imported to register kernels)
    activation,
    conv,
    elementwise,
    fused,
    gemm,
    integer,
    layout,
    norm,
    pad,
    pool,
    reduce,
    shape,
    tensor,
    thirdparty,
)
from edgeq.engine.backends.reference.registry import KERNELS, KernelEntry, register, supported_ops

__all__ = ["KERNELS", "KernelEntry", "register", "supported_ops"]
