"""Splicing a separately converted network into a branch of a converted graph: the
file computes what it did, with the branch's network now int8, and a network that
does not fit its branch is refused in one line."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils

from models.serving.tflite_splice import SpliceError, splice

SIDE = 16


class _Net(tf.Module):  # type: ignore[misc]  # TensorFlow ships no type hints
    """Two outputs, as the landmark networks have: a feature map's mean and a score.
    Variables, as in the imported networks: frozen into the branch as constants."""

    def __init__(self, channels: int = 8, seed: int = 0) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.kernel = tf.Variable(rng.normal(0, 0.3, (3, 3, 3, channels)).astype(np.float32))
        self.dense = tf.Variable(rng.normal(0, 0.3, (channels, 1)).astype(np.float32))

    def __call__(self, x: tf.Tensor) -> list[tf.Tensor]:
        maps = tf.nn.relu(tf.nn.conv2d(x, self.kernel, 1, "SAME"))
        pooled = tf.reduce_mean(maps, axis=[1, 2])
        return [pooled, tf.sigmoid(pooled @ self.dense)]


_SPEC = tf.TensorSpec([1, SIDE, SIDE, 3], tf.float32)


def _inputs(count: int) -> list[npt.NDArray[np.float32]]:
    rng = np.random.default_rng(1)
    return [rng.random((1, SIDE, SIDE, 3), dtype=np.float32) for _ in range(count)]


def _graph(net: _Net, name: str) -> bytes:
    """The network in the true branch of a condition named ``name``, with glue around."""

    @tf.function(input_signature=[_SPEC])  # type: ignore[untyped-decorator]
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        pooled, score = tf.cond(
            x[0, 0, 0, 0] >= 0.0,
            lambda: net(x),
            lambda: [tf.zeros([1, int(net.kernel.shape[-1])]), tf.zeros([1, 1])],
            name=name,
        )
        return {"pooled": pooled * 2.0, "score": score + 1.0}

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], net
    )
    data: bytes = converter.convert()
    return data


def _int8(net: _Net) -> bytes:
    function = tf.function(lambda x: net(x), input_signature=[_SPEC]).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], net)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x] for x in _inputs(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    data: bytes = converter.convert()
    return data


def _runner(data: bytes) -> Callable[..., dict[str, npt.NDArray[np.float32]]]:
    from ai_edge_litert.interpreter import Interpreter

    runner: Callable[..., dict[str, npt.NDArray[np.float32]]] = Interpreter(
        model_content=data
    ).get_signature_runner("serving_default")
    return runner


def test_the_spliced_file_computes_the_same_with_the_branch_in_int8() -> None:
    net = _Net()
    float_graph = _graph(net, "spliced_toy")
    spliced = splice(float_graph, {"spliced_toy": _int8(net)})
    before, after = _runner(float_graph), _runner(spliced)
    for x in _inputs(4):
        want, got = before(x=x), after(x=x)
        # The glue around the branch still runs (x2, +1); the branch is int8 now.
        assert not np.array_equal(got["pooled"], want["pooled"])
        np.testing.assert_allclose(
            got["pooled"], want["pooled"], atol=0.02 * np.abs(want["pooled"]).max()
        )
        np.testing.assert_allclose(got["score"], want["score"], atol=0.01)
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(spliced))
    (branch,) = [g for g in model.subgraphs if b"spliced_toy_true" in (g.name or b"")]
    conv = [
        op
        for op in branch.operators
        if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) == "CONV_2D"
    ]
    assert conv and all(branch.tensors[op.inputs[1]].type == 9 for op in conv)  # 9: INT8 weights


def test_a_network_that_does_not_fit_its_branch_is_refused() -> None:
    graph = _graph(_Net(channels=8), "spliced_toy")
    with pytest.raises(SpliceError, match=r"spliced_toy: the network's inputs/outputs"):
        splice(graph, {"spliced_toy": _int8(_Net(channels=4))})
    with pytest.raises(SpliceError, match=r"no branch named spliced_other"):
        splice(graph, {"spliced_other": _int8(_Net())})
