"""Rebuild a float TFLite graph as TensorFlow ops over trainable variables.

MediaPipe's hand and face models (Apache-2.0) ship only as ``.tflite`` files. To
fine-tune them and to join them with our own layers into one SavedModel, we read the
flatbuffer with TensorFlow's own schema bindings and replay its operators with the
equivalent ``tf.nn`` ops. Weights become ``tf.Variable`` objects (fp16 weights are
widened to fp32), so they train, save and convert like any other variable.

Only the operators these models use are supported; anything else is an
:class:`UnsupportedGraph` error naming the operator, never a silently wrong graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

_OPERATOR_NAMES: Final = {
    value: name for name, value in vars(schema.BuiltinOperator).items() if name.isupper()
}
_TENSOR_DTYPES: Final = {
    schema.TensorType.FLOAT32: np.float32,
    schema.TensorType.FLOAT16: np.float16,
    schema.TensorType.INT32: np.int32,
    schema.TensorType.INT64: np.int64,
}
_PADDING: Final = {schema.Padding.SAME: "SAME", schema.Padding.VALID: "VALID"}


class UnsupportedGraph(Exception):
    """The TFLite file uses something this importer cannot replay exactly."""


@dataclass(frozen=True, slots=True)
class _Op:
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Any


@dataclass
class ImportedGraph:
    """A TFLite graph as a callable: ``graph(x)`` returns the graph's outputs in order.

    ``variables`` hold every weight (trainable); ``tensors`` maps tensor names to
    indexes so callers can tap an intermediate tensor with :meth:`call_tapped`.
    """

    input_shape: tuple[int, ...]
    output_names: tuple[str, ...]
    variables: list[tf.Variable] = field(default_factory=list)
    tensors: dict[str, int] = field(default_factory=dict)
    _ops: list[_Op] = field(default_factory=list)
    _constants: dict[int, tf.Tensor | tf.Variable | npt.NDArray[Any]] = field(default_factory=dict)
    _input: int = 0
    _outputs: tuple[int, ...] = ()

    def __call__(self, x: tf.Tensor) -> list[tf.Tensor]:
        values = self._run(x, self._outputs)
        return [values[i] for i in self._outputs]

    def call_tapped(self, x: tf.Tensor, names: Sequence[str]) -> list[tf.Tensor]:
        """The named intermediate tensors for input ``x`` (runs only what they need)."""
        missing = [n for n in names if n not in self.tensors]
        if missing:
            raise KeyError(f"no tensor named {missing} in the graph")
        wanted = tuple(self.tensors[n] for n in names)
        values = self._run(x, wanted)
        return [values[i] for i in wanted]

    def _run(self, x: tf.Tensor, wanted: tuple[int, ...]) -> dict[int, Any]:
        values: dict[int, Any] = dict(self._constants)
        values[self._input] = x
        remaining = set(wanted) - values.keys()
        for op in self._ops:
            if not remaining:
                break
            args = [values[i] if i >= 0 else None for i in op.inputs]
            results = _REPLAY[op.name](op, args)
            for index, value in zip(op.outputs, results, strict=True):
                values[index] = value
                remaining.discard(index)
        return values


def import_tflite(path: Path, *, name: str, trainable: bool = True) -> ImportedGraph:
    """Read ``path`` and rebuild its (single) subgraph; raises :class:`UnsupportedGraph`."""
    model = flatbuffer_utils.read_model(str(path))
    if len(model.subgraphs) != 1:
        raise UnsupportedGraph(f"{path}: {len(model.subgraphs)} subgraphs, expected 1")
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1:
        raise UnsupportedGraph(f"{path}: {len(graph.inputs)} inputs, expected 1")
    names = [t.name.decode() for t in graph.tensors]
    input_index = int(graph.inputs[0])
    imported = ImportedGraph(
        input_shape=tuple(int(d) for d in graph.tensors[input_index].shape),
        output_names=tuple(names[int(i)] for i in graph.outputs),
        tensors={n: i for i, n in enumerate(names)},
        _input=input_index,
        _outputs=tuple(int(i) for i in graph.outputs),
    )
    dequantized: set[int] = set()
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        op_name = _OPERATOR_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
        inputs = tuple(int(i) for i in op.inputs)
        outputs = tuple(int(i) for i in op.outputs)
        if op_name not in _REPLAY and op_name != "DEQUANTIZE":
            raise UnsupportedGraph(f"{path}: operator {op_name} is not supported")
        if op_name == "DEQUANTIZE":
            # fp16 weights stored for size; the graph computes in fp32.
            (source,) = inputs
            data = _constant(model, graph, source)
            if data is None:
                raise UnsupportedGraph(f"{path}: DEQUANTIZE of a non-constant tensor")
            imported._constants[outputs[0]] = _as_weight(
                data.astype(np.float32), names[outputs[0]], name, trainable, imported
            )
            dequantized.add(outputs[0])
            continue
        for index in inputs:
            if index < 0 or index in imported._constants or index == input_index:
                continue
            data = _constant(model, graph, index)
            if data is not None:
                weight = data.dtype == np.float32 and op_name in _WEIGHTED
                imported._constants[index] = (
                    _as_weight(data, names[index], name, trainable, imported)
                    if weight
                    else _fixed(data)
                )
        imported._ops.append(_Op(op_name, inputs, outputs, op.builtinOptions))
    return imported


def _fixed(data: npt.NDArray[Any]) -> npt.NDArray[Any] | tf.Tensor:
    """A constant that is not a weight. Integer ones (shapes, axes, permutations, slice
    bounds) stay NumPy values, so each use is a constant of the graph being traced:
    captured tensors reach the branches of a condition (TFLite ``IF``) as arguments,
    shapes computed from them are unknown there, and the TFLite converter cannot make a
    convolution whose input shape it does not know a built-in one."""
    return data if data.dtype.kind in "iu" else tf.constant(data)


def _constant(model: Any, graph: Any, index: int) -> npt.NDArray[Any] | None:
    tensor = graph.tensors[index]
    buffer = model.buffers[tensor.buffer]
    if buffer.data is None or len(buffer.data) == 0:
        return None
    dtype = _TENSOR_DTYPES.get(tensor.type)
    if dtype is None:
        raise UnsupportedGraph(f"tensor {tensor.name!r} has unsupported type {tensor.type}")
    shape = tuple(int(d) for d in tensor.shape) if tensor.shape is not None else ()
    return np.frombuffer(bytes(buffer.data), dtype=dtype).reshape(shape).copy()


def _as_weight(
    data: npt.NDArray[Any], tensor_name: str, scope: str, trainable: bool, graph: ImportedGraph
) -> tf.Variable:
    safe = "".join(c if c.isalnum() or c in "_." else "_" for c in tensor_name)[-80:]
    variable = tf.Variable(data, trainable=trainable, name=f"{scope}/{safe}")
    graph.variables.append(variable)
    return variable


def _activation(x: tf.Tensor, code: int) -> tf.Tensor:
    if code == schema.ActivationFunctionType.NONE:
        return x
    if code == schema.ActivationFunctionType.RELU:
        return tf.nn.relu(x)
    if code == schema.ActivationFunctionType.RELU6:
        return tf.nn.relu6(x)
    raise UnsupportedGraph(f"fused activation {code} is not supported")


def _conv(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    x, kernel, bias = args
    o = op.options
    # TFLite kernels are [out, h, w, in]; tf.nn.conv2d wants [h, w, in, out].
    y = tf.nn.conv2d(
        x,
        tf.transpose(kernel, [1, 2, 3, 0]),
        strides=[1, o.strideH, o.strideW, 1],
        padding=_PADDING[o.padding],
        dilations=[1, o.dilationHFactor, o.dilationWFactor, 1],
    )
    if bias is not None:
        y = y + bias
    return [_activation(y, o.fusedActivationFunction)]


def _depthwise(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    x, kernel, bias = args
    o = op.options
    channels = int(x.shape[-1])
    # TFLite depthwise kernels are [1, h, w, in * multiplier].
    k = tf.reshape(kernel, [kernel.shape[1], kernel.shape[2], channels, o.depthMultiplier])
    y = tf.nn.depthwise_conv2d(
        x,
        k,
        strides=[1, o.strideH, o.strideW, 1],
        padding=_PADDING[o.padding],
        dilations=[o.dilationHFactor, o.dilationWFactor],
    )
    if bias is not None:
        y = y + bias
    return [_activation(y, o.fusedActivationFunction)]


def _fully_connected(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    x, weights, bias = args[0], args[1], args[2] if len(args) > 2 else None
    y = tf.matmul(tf.reshape(x, [-1, weights.shape[1]]), weights, transpose_b=True)
    if bias is not None:
        y = y + bias
    return [_activation(y, op.options.fusedActivationFunction)]


def _add(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [_activation(args[0] + args[1], op.options.fusedActivationFunction)]


def _prelu(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    x, alpha = args
    # Written as the TFLite converter's PReLU pattern, so the export keeps one PRELU op
    # per activation instead of four element-wise ops (equal in value: relu(-x) is
    # -min(x, 0) exactly).
    return [tf.nn.relu(x) + tf.negative(alpha) * tf.nn.relu(tf.negative(x))]


def _max_pool(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    o = op.options
    return [
        tf.nn.max_pool2d(
            args[0],
            ksize=[o.filterHeight, o.filterWidth],
            strides=[o.strideH, o.strideW],
            padding=_PADDING[o.padding],
        )
    ]


def _pad(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [tf.pad(args[0], args[1])]


def _reshape(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    shape = args[1] if len(args) > 1 and args[1] is not None else op.options.newShape
    shape = tf.convert_to_tensor(shape)
    # Replace the exported batch of 1 by the real batch, so the graph takes any batch.
    shape = tf.concat([tf.shape(args[0])[:1], tf.cast(shape[1:], tf.int32)], axis=0)
    return [tf.reshape(args[0], shape)]


def _concat(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    axis = op.options.axis
    rank = len(args[0].shape)
    if axis % rank != 0:
        args = _batch_constants(args)
    return [_activation(tf.concat(args, axis=axis), op.options.fusedActivationFunction)]


def _batch_constants(args: list[Any]) -> list[Any]:
    """Inputs exported with a batch of one beside inputs of another batch (a learned
    token joined to every sample, as the blendshape model's mixer does) are repeated
    to that batch, so the graph takes any batch; with a batch of one nothing changes."""
    batches = [a.shape[0] for a in args]
    if all(b == 1 for b in batches) or all(b != 1 for b in batches):
        return args
    batch = tf.shape(next(a for a, b in zip(args, batches, strict=True) if b != 1))[0]
    return [
        tf.broadcast_to(a, tf.concat([[batch], tf.shape(a)[1:]], axis=0)) if b == 1 else a
        for a, b in zip(args, batches, strict=True)
    ]


def _resize_bilinear(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    o = op.options
    return [
        tf.raw_ops.ResizeBilinear(
            images=args[0],
            size=args[1],
            align_corners=o.alignCorners,
            half_pixel_centers=o.halfPixelCenters,
        )
    ]


def _mean(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [tf.reduce_mean(args[0], axis=args[1], keepdims=bool(op.options.keepDims))]


def _logistic(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [tf.sigmoid(args[0])]


def _relu(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [tf.nn.relu(args[0])]


def _sub(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [_activation(args[0] - args[1], op.options.fusedActivationFunction)]


def _mul(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [_activation(args[0] * args[1], op.options.fusedActivationFunction)]


def _div(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [_activation(args[0] / args[1], op.options.fusedActivationFunction)]


def _sum(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [tf.reduce_sum(args[0], axis=args[1], keepdims=bool(op.options.keepDims))]


def _sqrt(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [tf.sqrt(args[0])]


def _rsqrt(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [tf.math.rsqrt(args[0])]


def _neg(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [tf.negative(args[0])]


def _squared_difference(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [tf.math.squared_difference(args[0], args[1])]


def _transpose(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    return [tf.transpose(args[0], args[1])]


def _strided_slice(op: _Op, args: list[Any]) -> list[tf.Tensor]:
    o = op.options
    if o.ellipsisMask or o.newAxisMask or getattr(o, "offset", False):
        raise UnsupportedGraph("STRIDED_SLICE with ellipsis, new axes or offsets")
    x, begin, end, strides = args
    # The masks mean the same in TensorFlow and TFLite. A slice that drops the batch
    # axis keeps only the first sample: callers that batch tap the tensor before it.
    return [
        tf.strided_slice(
            x,
            begin,
            end,
            strides,
            begin_mask=o.beginMask,
            end_mask=o.endMask,
            shrink_axis_mask=o.shrinkAxisMask,
        )
    ]


_REPLAY: Final[dict[str, Callable[[_Op, list[Any]], list[tf.Tensor]]]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "ADD": _add,
    "PRELU": _prelu,
    "MAX_POOL_2D": _max_pool,
    "PAD": _pad,
    "RESHAPE": _reshape,
    "CONCATENATION": _concat,
    "RESIZE_BILINEAR": _resize_bilinear,
    "MEAN": _mean,
    "LOGISTIC": _logistic,
    "RELU": _relu,
    "SUB": _sub,
    "MUL": _mul,
    "DIV": _div,
    "SUM": _sum,
    "SQRT": _sqrt,
    "RSQRT": _rsqrt,
    "NEG": _neg,
    "SQUARED_DIFFERENCE": _squared_difference,
    "TRANSPOSE": _transpose,
    "STRIDED_SLICE": _strided_slice,
}
# Operators whose float constant inputs are learned weights rather than shapes/sizes.
_WEIGHTED: Final = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "PRELU", "ADD"})
