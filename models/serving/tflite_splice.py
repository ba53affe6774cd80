"""Put a separately converted network into one branch of a converted graph.

The TFLite converter quantizes a whole graph or none of it. Full-integer conversion of
the whole model fails on its glue (region geometry, NMS: ``DIV ... data[i] !=
zero_point``), and the converter's selective quantization quantized the glue anyway
(docs/benchmarks.md, "Quantization per network"). Yet the landmark networks are the
one place int8 pays (2x faster on XNNPACK's QS8 kernels, the same answers).

So the export keeps one file and splices: each landmark network call sits alone in
the true branch of a condition (a TFLite ``IF`` whose branch is its own subgraph,
named after the condition), the network is converted on its own to int8 with float
input and output, and its subgraph takes the branch's place. The ``IF`` op sees the
same inputs and outputs (checked: count, type and shape), so the rest of the graph and
every reader of the file are unchanged. The replaced branch's weights are dropped
from the file; a network spliced into several branches stores its weights once.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

BRANCH_SUFFIX: Final = "_true_"
"""The converter names a condition's true branch ``<condition name>_true_<number>``."""


class SpliceError(Exception):
    """The graph has no branch to splice into, or the network does not fit it."""


def _returned_order(model: Any, name: str) -> list[int]:
    """The subgraph's output tensors in the order the converted function returned
    them: its signature names them ``output_0``, ``output_1``, ... (the subgraph's own
    output list follows no such order)."""
    signatures = model.signatureDefs or []
    if len(signatures) != 1:
        raise SpliceError(f"{name}: {len(signatures)} signatures, expected 1")
    outputs = {t.name.decode(): int(t.tensorIndex) for t in signatures[0].outputs}
    try:
        return [outputs[f"output_{k}"] for k in range(len(outputs))]
    except KeyError:
        raise SpliceError(
            f"{name}: outputs {sorted(outputs)} are not output_0, output_1, ..."
        ) from None


def _io(graph: Any, indices: Any) -> list[tuple[int, tuple[int, ...]]]:
    return [
        (int(graph.tensors[i].type), tuple(int(d) for d in graph.tensors[i].shape)) for i in indices
    ]


class _Network:
    """A single-subgraph TFLite network whose buffers and op codes are moved into
    ``host`` once, its subgraph copied per branch."""

    def __init__(self, name: str, data: bytes, host: Any) -> None:
        self.model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
        if len(self.model.subgraphs) != 1:
            raise SpliceError(f"{name}: {len(self.model.subgraphs)} subgraphs, expected 1")
        self.model.subgraphs[0].outputs = _returned_order(self.model, name)
        self._buffer_map = {0: 0}  # buffer 0 is every file's empty sentinel
        for index, buffer in enumerate(self.model.buffers):
            if index:
                self._buffer_map[index] = len(host.buffers)
                host.buffers.append(buffer)
        self._opcode_map: dict[int, int] = {}
        for index, code in enumerate(self.model.operatorCodes):
            key = (code.builtinCode, code.customCode, code.version)
            for position, known in enumerate(host.operatorCodes):
                if (known.builtinCode, known.customCode, known.version) == key:
                    self._opcode_map[index] = position
                    break
            else:
                self._opcode_map[index] = len(host.operatorCodes)
                host.operatorCodes.append(code)

    def subgraph(self, name: bytes) -> Any:
        graph = copy.deepcopy(self.model.subgraphs[0])
        for tensor in graph.tensors:
            tensor.buffer = self._buffer_map[tensor.buffer]
        for op in graph.operators:
            op.opcodeIndex = self._opcode_map[op.opcodeIndex]
        graph.name = name
        return graph


def splice(graph_data: bytes, networks: Mapping[str, bytes]) -> bytes:
    """``graph_data`` with every branch named ``[outer_]<name>_true_<n>`` replaced by the
    subgraph of ``networks[name]`` (a one-subgraph TFLite file whose inputs and
    outputs match the branch's). Each name must match at least one branch."""
    host = flatbuffer_utils.convert_bytearray_to_object(bytearray(graph_data))
    replaced: dict[str, int] = dict.fromkeys(networks, 0)
    loaded = {name: _Network(name, data, host) for name, data in networks.items()}
    for position, graph in enumerate(host.subgraphs):
        branch = (graph.name or b"").decode()
        stem, suffix, number = branch.rpartition(BRANCH_SUFFIX)
        # A condition inside another's branch is named after both: outer_inner.
        found = [n for n in loaded if stem == n or stem.endswith(f"_{n}")]
        if not suffix or not number.isdigit() or not found:
            continue
        stem = found[0]
        network = loaded[stem]
        ours = network.model.subgraphs[0]
        if _io(graph, graph.inputs) != _io(ours, ours.inputs) or _io(graph, graph.outputs) != _io(
            ours, ours.outputs
        ):
            raise SpliceError(
                f"{stem}: the network's inputs/outputs {_io(ours, ours.inputs)} → "
                f"{_io(ours, ours.outputs)} do not match branch {branch!r}'s "
                f"{_io(graph, graph.inputs)} → {_io(graph, graph.outputs)}"
            )
        host.subgraphs[position] = network.subgraph(graph.name)
        replaced[stem] += 1
    missing = [name for name, count in replaced.items() if not count]
    if missing:
        raise SpliceError(f"no branch named {', '.join(missing)} to splice into")
    _drop_unused_buffers(host)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(host))


def _drop_unused_buffers(model: Any) -> None:
    """Empty the buffers no tensor refers to any more (the replaced branches'
    weights). Buffers keep their places: tensors refer to them by index."""
    used = {t.buffer for graph in model.subgraphs for t in graph.tensors}
    used |= {m.buffer for m in model.metadata or ()}
    for index, buffer in enumerate(model.buffers):
        if index not in used and buffer.data is not None:
            model.buffers[index] = schema.BufferT()
