"""F2T: walk the FQ network's fx graph in order and emit the TQ program.

``tq = f2t(fq_model, example_input)``. Each fx node is handled by one small rule that
reads its inputs' :class:`~.epsprop.State` and returns its own (emitting TQ ops where
integers change):

======================================  ================================================
fx node                                 TQ program
======================================  ================================================
input -> QuantActivation                the input rule x̂ = clip(⌊x/ε + ½⌋, lo, hi)
QuantConv2d / QuantLinear               IntConv2d / IntLinear, b̂ = ⌊b/(ε_x·ε_w) + ½⌋,
                                        output ε_x·ε_w (per channel with per-channel ŵ)
BatchNorm1d/2d (eval)                   nothing: pending affine (γ̂, β̂)
QuantActivation relu/relu6/identity     RequantShift, mul ≈ a·ε_in/ε_out, add ≈ c/ε_out
HarmonisedAdd / HarmonisedConcat        RequantShift per input (skipped when it is already
                                        on the output ε and range, nothing pending), then
                                        IntHarmonisedAdd (sum, clip) / IntConcat
MaxPool2d                               IntMaxPool (exact)
AvgPool2d / AdaptiveAvgPool2d           IntSumPool: exact sum, ε_in/k; a following
                                        quantiser requantises it, a following linear op
                                        reads it as it is (exact at ε_in/k)
Flatten / view / reshape                Flatten / Reshape
Dropout / Identity / contiguous         nothing
======================================  ================================================

Everything else is an :class:`~.epsprop.F2TError` naming the fx node: LeakyReLU, a
linear op reading a float or BatchNorm-pending tensor ("an activation with no quantiser
before a linear op"), an unharmonised add or concat, a harmonised op whose input ε
differ from its output ε, a float op. The network output may be a quantiser output or
an accumulator (final linear op): the TQ network returns its integers with
``output_eps`` (logits = ε·acc).
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from edgeq.numerics import IntRange
from edgeq.train.f2f.trace import propagate_shapes
from edgeq.train.f2t.epsprop import (
    F2TError,
    State,
    accumulator,
    float_input,
    linear_eps,
    node_error,
    pooled,
    quantised,
    requant_reals,
    with_batchnorm,
)
from edgeq.train.f2t.fold import (
    F2TOptions,
    activation_bounds,
    bn_fold,
    check_accumulator,
    integer_bias,
    linear_bound,
    requant_params,
)
from edgeq.train.f2t.tq import (
    Flatten,
    InputRule,
    IntConcat,
    IntConv2d,
    IntHarmonisedAdd,
    IntLinear,
    IntMaxPool,
    IntOp,
    IntSumPool,
    RequantShift,
    Reshape,
    TQNetwork,
    ValueInfo,
)
from edgeq.train.modules import (
    HarmonisedAdd,
    HarmonisedConcat,
    QuantActivation,
    QuantConv2d,
    QuantLinear,
    quant_modules,
)

_ALIAS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
_ALIAS_CALLS = {("call_method", "contiguous"), ("call_function", F.dropout)}
_SHAPE_CALLS = {("call_method", "size"), ("call_method", "dim"), ("call_function", getattr),
                ("call_function", operator.getitem)}
_ADDS = (operator.add, operator.iadd, torch.add)
_CATS = (torch.cat, torch.concat)
# functional pooling -> the module with the same arguments
_FUNCTIONAL_POOLS = {
    F.avg_pool2d: (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode",
                                  "count_include_pad", "divisor_override")),
    F.adaptive_avg_pool2d: (nn.AdaptiveAvgPool2d, ("output_size",)),
    F.max_pool2d: (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                  "return_indices")),
}


def f2t(
    fq_model: fx.GraphModule,
    example_input: torch.Tensor,
    dtype: torch.dtype = torch.float64,
    acc_bits: int = 64,
    mul_bits: int = 32,
    *,
    significant_bits: int | None = None,
    allow_subnormal: bool = False,
) -> TQNetwork:
    """Fake-to-true conversion of a trained FQ network (F2F output, QAT started).

    BatchNorm is read in eval mode (running statistics). ``dtype`` is the float format of
    the conversion arithmetic (DESIGN §3.9); ``acc_bits``/``mul_bits`` bound the
    requantisation integers; ``significant_bits=24`` makes every integer constant exact in
    float32, as ONNX files carry them (:class:`~.fold.F2TOptions`). ``example_input``
    (float) fixes the shapes. Raises :class:`~.epsprop.F2TError` naming the node it cannot convert,
    and :class:`~.formats.FormatError` naming the node and quantity that overflows, underflows
    or (unless ``allow_subnormal``) becomes subnormal in ``dtype``.
    """
    if not isinstance(fq_model, fx.GraphModule):
        raise F2TError(f"F2T needs the fx.GraphModule that f2f returns, got "
                       f"{type(fq_model).__name__}")
    _check_started(fq_model)
    propagate_shapes(fq_model, example_input)
    opts = F2TOptions(dtype, acc_bits, mul_bits, significant_bits, allow_subnormal)
    with torch.no_grad():
        return _Converter(fq_model, opts).run()


def _check_started(gm: fx.GraphModule) -> None:
    for name, m in quant_modules(gm):
        if not (m.quant_enabled and m.initialised):
            raise F2TError(f"F2T: module '{name}' ({type(m).__name__}) is not quantising yet "
                           "(start QAT: QATController or module.start()) — its ε is not final")


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        raise node_error(node.name, node.op, "produces no single tensor (shape unknown)")
    return tuple(int(d) for d in meta.shape)


def _channel_shaped(t: np.ndarray, ndim: int) -> np.ndarray:
    """Per-channel [C] constants as [C, 1, ...] to broadcast against an N×C×... tensor."""
    t = np.asarray(t)
    return t if t.ndim == 0 else t.reshape((-1,) + (1,) * (ndim - 2))


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(x) for x in v)


class _Converter:
    """One pass over the fx graph; ``states`` maps fx node names to :class:`State`."""

    def __init__(self, gm: fx.GraphModule, opts: F2TOptions) -> None:
        self.gm, self.opts, self.arith = gm, opts, opts.arith
        self.states: dict[str, State] = {}
        self.ops: list[IntOp] = []
        self.values: dict[str, ValueInfo] = {}
        self.quantiser_values: dict[str, str] = {}
        self.harmonised_inputs: dict[str, list[str]] = {}
        self.input_name: str | None = None
        self.input_rule: InputRule | None = None
        self.output_name: str | None = None

    # -- driver -------------------------------------------------------------------------
    def run(self) -> TQNetwork:
        for node in self.gm.graph.nodes:
            state = self._visit(node)
            if state is not None:
                self.states[node.name] = state
        if self.input_rule is None:
            raise F2TError("F2T: the network input is never quantised (no input quantiser)")
        return TQNetwork(self.ops, self.input_name, self.output_name, self.input_rule,
                         self.values, self.quantiser_values, type(self.gm).__name__,
                         self.harmonised_inputs)

    def _visit(self, node: fx.Node) -> State | None:
        if node.op == "placeholder":
            return self._placeholder(node)
        if node.op == "output":
            return self._output(node)
        if node.op == "call_module":
            return self._module(node, self.gm.get_submodule(node.target))
        if node.op in ("call_function", "call_method"):
            return self._call(node)
        raise node_error(node.name, node.op, "unsupported fx node kind")

    def _emit(self, op: IntOp, shape, eps, lo: int, hi: int, r: IntRange | None = None) -> None:
        self.ops.append(op)
        self.values[op.output] = ValueInfo(tuple(shape), r, eps, int(lo), int(hi))

    def _in(self, node: fx.Node, i: int = 0) -> State:
        arg = node.args[i] if i < len(node.args) else None
        if not isinstance(arg, fx.Node) or arg.name not in self.states:
            raise node_error(node.name, _what(self.gm, node), f"input #{i} is not a tensor")
        return self.states[arg.name]

    # -- graph boundary -----------------------------------------------------------------
    def _placeholder(self, node: fx.Node) -> State:
        if any(s.is_float for s in self.states.values()):
            raise node_error(node.name, "placeholder", "F2T supports one network input")
        return float_input(node.name, _shape(node))

    def _output(self, node: fx.Node) -> None:
        out = node.args[0]
        if isinstance(out, (tuple, list)) and len(out) == 1:
            out = out[0]
        if not isinstance(out, fx.Node) or out.name not in self.states:
            raise node_error(node.name, "output", "F2T supports one tensor output")
        s = self.states[out.name]
        if s.is_float:
            raise node_error(node.name, "output", "the output is the unquantised input")
        if s.pending:
            raise node_error(out.name, _what(self.gm, out),
                             f"the network output still carries BatchNorm '{s.affine_from}' "
                             "with no quantiser after it; add an activation quantiser")
        self.output_name = s.value
        return None

    # -- dispatch -----------------------------------------------------------------------
    def _module(self, node: fx.Node, m: nn.Module) -> State:
        if isinstance(m, (QuantConv2d, QuantLinear)):
            return self._linear(node, m)
        if isinstance(m, QuantActivation):
            return self._activation(node, m)
        if isinstance(m, (HarmonisedAdd, HarmonisedConcat)):
            return self._harmonised(node, m)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self._batchnorm(node, m)
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            return self._sum_pool(node, m)
        if isinstance(m, nn.MaxPool2d):
            return self._max_pool(node, m)
        if isinstance(m, nn.Flatten):
            return self._flatten(node, m.start_dim, m.end_dim)
        if isinstance(m, _ALIAS_MODULES):
            return self._alias(node)
        raise self._unsupported(node, m)

    def _call(self, node: fx.Node) -> State | None:
        key = (node.op, node.target)
        if key in _SHAPE_CALLS and not _reads_tensor_data(node, self.states):
            return None  # x.size(0), x.shape[...]: only used as reshape arguments
        if key in _ALIAS_CALLS:
            return self._alias(node)
        if node.op == "call_function" and node.target in _FUNCTIONAL_POOLS:
            cls, names = _FUNCTIONAL_POOLS[node.target]
            kwargs = dict(zip(names, node.args[1:], strict=False)) | dict(node.kwargs)
            return self._module(node, cls(**kwargs))
        if key in (("call_function", torch.flatten), ("call_method", "flatten")):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return self._flatten(node, start, end)
        if key in (("call_method", "view"), ("call_method", "reshape"),
                   ("call_function", torch.reshape)):
            return self._reshape(node)
        raise self._unsupported(node, None)

    def _unsupported(self, node: fx.Node, m: nn.Module | None) -> F2TError:
        what = _what(self.gm, node)
        if isinstance(m, nn.LeakyReLU) or node.target in (F.leaky_relu, F.leaky_relu_):
            return node_error(node.name, what, "LeakyReLU is not supported by F2T")
        if node.target in _ADDS or node.target == "add":
            return node_error(node.name, what, "a tensor add that is not ε-harmonised (F2F "
                              "turns adds into HarmonisedAdd; give them a policy rule)")
        if node.target in _CATS:
            return node_error(node.name, what, "a concatenation that is not ε-harmonised")
        return node_error(node.name, what, "unsupported op: no exact integer form "
                          "(quantisers, conv/linear, BN, pooling and reshapes are supported)")

    # -- rules --------------------------------------------------------------------------
    def _linear_input(self, node: fx.Node) -> State:
        s = self._in(node)
        what = _what(self.gm, node)
        if s.is_float:
            raise node_error(node.name, what, f"an activation with no quantiser before a linear "
                             f"op: it reads the float input '{s.value}' (quantise the input: "
                             "f2f(..., input_spec=...))")
        if s.pending:
            raise node_error(node.name, what, f"an activation with no quantiser before a linear "
                             f"op: it reads '{node.args[0].name}', where BatchNorm "
                             f"'{s.affine_from}' is still pending; add a quantiser in between")
        if s.per_channel:
            raise node_error(node.name, what, f"its input '{node.args[0].name}' has one ε per "
                             "channel; a quantiser (one ε) must come in between")
        return s

    def _linear(self, node: fx.Node, m: QuantConv2d | QuantLinear) -> State:
        s = self._linear_input(node)
        w, dtype, where = m.int_weight(), self.opts.dtype, f"node '{node.name}'"
        eps_w = self.arith.cast(m.weight_eps, where, "ε_w", nonzero=True)
        eps = linear_eps(s.eps, eps_w, self.arith, where)
        if not bool(torch.all(torch.isfinite(eps) & (eps > 0))):
            raise node_error(node.name, _what(self.gm, node), f"ε_x·ε_w underflows or "
                             f"overflows in {dtype}; convert in a wider float format")
        b = None if m.bias is None else integer_bias(m.bias, eps, self.opts, f"node '{node.name}'")
        bound = linear_bound(w, s.bound, b)
        check_accumulator(bound, self.opts, f"node '{node.name}'")
        op = (self._conv_op(node, m, w, b, eps_w) if isinstance(m, QuantConv2d)
              else IntLinear(node.name, [s.value], node.name, w, b, m.weight_range, eps_w))
        shape = _shape(node)
        self._emit(op, shape, eps, -bound, bound)
        return accumulator(node.name, shape, eps, -bound, bound)

    def _conv_op(self, node, m: QuantConv2d, w, b, eps_w) -> IntConv2d:
        if m.padding_mode != "zeros":
            raise node_error(node.name, "QuantConv2d",
                             f"padding_mode={m.padding_mode!r}: only zero padding is exact")
        padding = m.padding
        if isinstance(padding, str):  # 'valid' or 'same' (stride 1)
            total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size, strict=True)]
            if padding == "same" and any(t % 2 for t in total):
                raise node_error(node.name, "QuantConv2d", "asymmetric 'same' padding")
            padding = (0, 0) if padding == "valid" else tuple(t // 2 for t in total)
        return IntConv2d(node.name, [self._in(node).value], node.name, w, b, m.weight_range,
                         eps_w, stride=m.stride, padding=padding, dilation=m.dilation,
                         groups=m.groups)

    def _batchnorm(self, node: fx.Node, bn: nn.Module) -> State:
        s = self._in(node)
        what = _what(self.gm, node)
        if s.is_float:
            raise node_error(node.name, what, "BatchNorm on the unquantised input")
        if bn.running_var is None or bn.running_mean is None:
            raise node_error(node.name, what, "BatchNorm without running statistics")
        if bn.num_features != s.channels:
            raise node_error(node.name, what, f"{bn.num_features} features, input has "
                             f"{s.channels} channels")
        gamma_hat, beta_hat = bn_fold(bn, self.arith, f"node '{node.name}'")
        return with_batchnorm(s, gamma_hat, beta_hat, node.name, self.arith)

    def _activation(self, node: fx.Node, m: QuantActivation) -> State:
        what = f"{_what(self.gm, node)} {m.kind}"
        if m.kind not in ("relu", "relu6", "identity"):
            raise node_error(node.name, what, "LeakyReLU is not supported by F2T "
                             "(supported activations: relu, relu6, identity)")
        s, r = self._in(node), m.range
        eps_out = self.arith.cast(m.eps, f"node '{node.name}'", "ε_out", nonzero=True)
        lo, hi = activation_bounds(m.kind, r.lo, r.hi, eps_out)
        if lo >= hi:
            raise node_error(node.name, what, f"empty output range [{lo}, {hi}]")
        if s.is_float:
            return self._input_rule(node, s, eps_out, r, lo, hi)
        where = f"node '{node.name}'"
        p = requant_params(*requant_reals(s, eps_out, self.arith, where), s.bound, lo, hi,
                           self.opts, where)
        ndim = len(s.shape)
        op = RequantShift(node.name, [s.value], node.name, _channel_shaped(p.mul, ndim),
                          _channel_shaped(p.add, ndim), p.shift, lo, hi)
        shape = _shape(node)
        self._emit(op, shape, eps_out, lo, hi, r)
        self.quantiser_values[node.name] = node.name
        return quantised(node.name, shape, eps_out, r).replace(lo=lo, hi=hi)

    def _input_rule(self, node, s: State, eps_out, r: IntRange, lo: int, hi: int) -> State:
        if self.input_rule is not None:
            raise node_error(node.name, _what(self.gm, node), "the network input feeds several "
                             "quantisers; F2T needs one input rule")
        r = r if (lo, hi) == (r.lo, r.hi) else IntRange.from_bounds(lo, hi)
        self.input_name, self.input_rule = s.value, InputRule(r, float(eps_out))
        self.values[s.value] = ValueInfo(s.shape, r, eps_out, lo, hi)
        self.quantiser_values[node.name] = s.value
        return quantised(s.value, s.shape, eps_out, r)

    def _harmonised(self, node: fx.Node, m: HarmonisedAdd | HarmonisedConcat) -> State:
        what = _what(self.gm, node)
        eps_out = self.arith.cast(m.eps, f"node '{node.name}'", "ε_out", nonzero=True)
        r = m.range
        if any(float(e) != float(m.eps) for e in m.input_eps) or any(
                q.int_range != r for q in m.in_quantisers):
            raise node_error(node.name, what, "its inputs are not on the output ε and range "
                             "(the scales cannot be harmonised)")
        names = [self._onto(node, i, eps_out, r) for i in range(len(node.args))]
        self.harmonised_inputs[node.name] = names
        if isinstance(m, HarmonisedAdd):
            op = IntHarmonisedAdd(node.name, names, node.name, r.lo, r.hi)
        else:
            op = IntConcat(node.name, names, node.name, m.dim % len(_shape(node)))
        shape = _shape(node)
        self._emit(op, shape, eps_out, r.lo, r.hi, r)
        self.quantiser_values[node.name] = node.name
        return quantised(node.name, shape, eps_out, r)

    def _onto(self, node: fx.Node, i: int, eps_out, r: IntRange) -> str:
        """Input i requantised onto (ε_out, r); skipped when it already is there exactly."""
        s = self._in(node, i)
        if s.is_float:
            raise node_error(node.name, _what(self.gm, node), "reads the unquantised input")
        if (not s.pending and not s.per_channel and float(s.eps) == float(eps_out)
                and r.lo <= s.lo and s.hi <= r.hi):
            return s.value
        name = f"{node.name}.in{i}"
        where = f"node '{node.name}' input {i}"
        p = requant_params(*requant_reals(s, eps_out, self.arith, where), s.bound, r.lo,
                           r.hi, self.opts, where)
        ndim = len(s.shape)
        self._emit(RequantShift(name, [s.value], name, _channel_shaped(p.mul, ndim),
                                _channel_shaped(p.add, ndim), p.shift, r.lo, r.hi),
                   s.shape, eps_out, r.lo, r.hi, r)
        return name

    def _pool_input(self, node: fx.Node) -> State:
        s = self._in(node)
        if s.is_float:
            raise node_error(node.name, _what(self.gm, node), "pooling of the unquantised input")
        if len(s.shape) != 4:
            raise node_error(node.name, _what(self.gm, node), "2-D pooling needs N×C×H×W")
        return s

    def _sum_pool(self, node: fx.Node, m: nn.Module) -> State:
        s, what = self._pool_input(node), _what(self.gm, node)
        kernel, stride, padding, divisor = _avg_geometry(node, m, s.shape, what)
        taps = kernel[0] * kernel[1]
        if s.offset is not None and (padding != (0, 0) or divisor != taps):
            raise node_error(node.name, what, f"averages BatchNorm '{s.affine_from}' output "
                             "over padding or with a divisor override: not exact")
        shape = _shape(node)
        out = pooled(s, node.name, shape, taps, self.arith)
        if divisor != taps:
            out = out.replace(eps=self.arith.rnd(s.eps / divisor, f"node '{node.name}'",
                                                 "ε/divisor", factors=(s.eps,)))
        check_accumulator(out.bound, self.opts, f"node '{node.name}'")
        self._emit(IntSumPool(node.name, [s.value], node.name, kernel, stride, padding),
                   shape, out.eps, out.lo, out.hi)
        return out

    def _max_pool(self, node: fx.Node, m: nn.MaxPool2d) -> State:
        s, what = self._pool_input(node), _what(self.gm, node)
        if m.return_indices:
            raise node_error(node.name, what, "return_indices is not supported")
        if s.scale is not None and bool((s.scale <= 0).any()):
            raise node_error(node.name, what, f"max pool after BatchNorm '{s.affine_from}' "
                             "with γ <= 0: max does not commute with it")
        op = IntMaxPool(node.name, [s.value], node.name, _pair(m.kernel_size),
                        _pair(m.stride if m.stride is not None else m.kernel_size),
                        _pair(m.padding), _pair(m.dilation), m.ceil_mode)
        shape = _shape(node)
        self._emit(op, shape, s.eps, s.lo, s.hi, s.range)
        return s.replace(value=node.name, shape=shape)

    def _reshaped(self, node: fx.Node, op_for, keeps_channels: bool) -> State:
        """Common part of flatten/reshape: batch kept; per-channel data must keep C."""
        s, what, shape = self._in(node), _what(self.gm, node), _shape(node)
        if s.is_float:
            raise node_error(node.name, what, "reshape of the unquantised input")
        if shape[0] != s.shape[0]:
            raise node_error(node.name, what, "reshapes across the batch dimension")
        if s.per_channel and not keeps_channels:
            why = f" (BatchNorm '{s.affine_from}' is still pending)" if s.pending else ""
            raise node_error(node.name, what, f"moves per-channel scaled data{why} off the "
                             "channel axis; a quantiser (one ε) must come before it")
        op = op_for(node.name, [s.value], node.name)
        self._emit(op, shape, s.eps, s.lo, s.hi, s.range)
        return s.replace(value=node.name, shape=shape)

    def _flatten(self, node: fx.Node, start: int, end: int) -> State:
        ndim = len(self._in(node).shape)
        start, end = start % ndim, end % ndim
        if start == 0:
            raise node_error(node.name, _what(self.gm, node), "flattens the batch dimension")
        in_shape = self._in(node).shape
        keeps = start >= 2 or int(np.prod(in_shape[2:end + 1], dtype=np.int64)) == 1
        return self._reshaped(node, lambda n, i, o: Flatten(n, i, o, start, end), keeps)

    def _reshape(self, node: fx.Node) -> State:
        in_shape, shape = self._in(node).shape, _shape(node)
        keeps = (len(shape) > 1 and shape[1] == in_shape[1]
                 and int(np.prod(in_shape[2:], dtype=np.int64)) == 1
                 and int(np.prod(shape[2:], dtype=np.int64)) == 1)
        return self._reshaped(node, lambda n, i, o: Reshape(n, i, o, shape[1:]), keeps)

    def _alias(self, node: fx.Node) -> State:
        return self._in(node)


def _what(gm: fx.GraphModule, node: fx.Node) -> str:
    """The op of a node for messages: module class (and name, if not the node's)."""
    if node.op == "call_module":
        kind = type(gm.get_submodule(node.target)).__name__
        return kind if node.target == node.name else f"{kind} '{node.target}'"
    return getattr(node.target, "__name__", str(node.target))


def _reads_tensor_data(node: fx.Node, states: dict[str, State]) -> bool:
    """operator.getitem on a tensor (slicing) reads data; on a size tuple it does not."""
    if node.target is not operator.getitem:
        return False
    src = node.args[0]
    return isinstance(src, fx.Node) and src.name in states


def _avg_geometry(node: fx.Node, m: nn.Module, shape, what: str):
    """(kernel, stride, padding, divisor) of an average pool as exact window sums."""
    if isinstance(m, nn.AdaptiveAvgPool2d):
        h, w = shape[2:]
        out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,) * 2
        out = tuple(d if o is None else o for o, d in zip(out, (h, w), strict=True))
        if h % out[0] or w % out[1]:
            raise node_error(node.name, what, f"adaptive pooling of {h}×{w} to {out}: windows "
                             "of unequal size have no exact integer form")
        kernel = (h // out[0], w // out[1])
        return kernel, kernel, (0, 0), kernel[0] * kernel[1]
    kernel = _pair(m.kernel_size)
    stride = _pair(m.stride if m.stride is not None else m.kernel_size)
    padding = _pair(m.padding)
    if m.ceil_mode:
        raise node_error(node.name, what, "ceil_mode windows are not all the same size")
    if padding != (0, 0) and not m.count_include_pad:
        raise node_error(node.name, what, "count_include_pad=False: border windows divide by "
                         "fewer taps")
    divisor = m.divisor_override or kernel[0] * kernel[1]
    return kernel, stride, padding, int(divisor)


__all__ = ["F2TError", "f2t"]
