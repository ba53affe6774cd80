"""The LiteRT runtime: the same detections as TensorFlow on the same frames, the TFLite
contract enforced at load, the runtime choice, and a worker serving with it end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.frames import SIGNS, load_jpegs
from memelearning.cli import main
from tests.frames import BLUE, GREEN, RED, EventCollector, make_frame, publish_frames
from tests.workers import Worker, messages_ready, wait_until, worker_settings
from worker.decode import decode_into
from worker.detector import Detection, Detector, ModelError
from worker.litert import TFLITE_FILE, LiteRtDetector
from worker.runtime import choose_runtime

SIZE = (320, 320)


@pytest.fixture(scope="module")
def tflite_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The colour model with its TFLite export, dynamic batch in the SavedModel."""
    from models.serving.contract_model import export_colour_model

    return export_colour_model(tmp_path_factory.mktemp("colour-tflite"), tflite=True)


@pytest.fixture(scope="module")
def both(tflite_model_dir: Path) -> tuple[Detector, LiteRtDetector]:
    options: dict[str, Any] = {"default_threshold": 0.0}
    return (
        Detector.load(tflite_model_dir, **options),
        LiteRtDetector.load(tflite_model_dir, threads=2, **options),
    )


def frames() -> np.ndarray:
    """Real webcam frames decoded as the worker decodes them, solid colours, noise."""
    jpegs = load_jpegs(SIGNS, 6)
    images = np.empty((len(jpegs) + 4, *SIZE, 3), dtype=np.uint8)
    for i, jpeg in enumerate(jpegs):
        decode_into(jpeg, images[i], max_pixels=4096 * 4096)
    for i, colour in enumerate((RED, GREEN, BLUE), start=len(jpegs)):
        images[i] = colour
    images[-1] = np.random.default_rng(7).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    return images


def assert_same(left: list[Detection], right: list[Detection]) -> None:
    assert [(d.label, d.class_id) for d in left] == [(d.label, d.class_id) for d in right]
    for a, b in zip(left, right, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        assert a.box == pytest.approx(b.box, abs=1e-5)


def test_both_runtimes_give_the_same_detections_on_the_same_frames(
    both: tuple[Detector, LiteRtDetector],
) -> None:
    # Given the SavedModel in TensorFlow and its TFLite export in LiteRT
    tensorflow, litert = both
    images = frames()

    # When both detect on the same batch (LiteRT runs it frame by frame)
    expected = tensorflow.detect(images)
    got = litert.detect(images)

    # Then every frame has the same labels, scores and boxes
    assert len(got) == len(images)
    for left, right in zip(expected, got, strict=True):
        assert len(left) == 3
        assert_same(left, right)
    assert got[6][0].label == "red" and got[6][0].score == pytest.approx(1.0)


def test_litert_reads_the_contract_and_runs_one_frame_per_call(
    both: tuple[Detector, LiteRtDetector],
) -> None:
    tensorflow, litert = both
    assert (litert.runtime, tensorflow.runtime) == ("litert", "tensorflow")
    assert litert.input_size == SIZE
    assert litert.max_batch == 1
    assert (litert.name, litert.version) == (tensorflow.name, tensorflow.version)
    assert litert.thresholds == tensorflow.thresholds
    assert litert.detect(np.zeros((0, *SIZE, 3), dtype=np.uint8)) == []
    with pytest.raises(ValueError, match="takes 320x320 images, got 100x100"):
        litert.detect(np.zeros((1, 100, 100, 3), dtype=np.uint8))


def test_thresholds_and_ignored_labels_apply_as_in_tensorflow(tflite_model_dir: Path) -> None:
    # Given a frame that is 62.5 % red and 37.5 % blue
    image = np.zeros((1, *SIZE, 3), dtype=np.uint8)
    image[0, :, :200] = RED
    image[0, :, 200:] = BLUE

    # Then a 0.3 threshold keeps both, unless blue is ignored; 0.7 keeps neither
    loose = LiteRtDetector.load(tflite_model_dir, threads=1, default_threshold=0.3)
    assert [d.label for d in loose.detect(image)[0]] == ["red", "blue"]
    ignoring = LiteRtDetector.load(
        tflite_model_dir, threads=1, default_threshold=0.3, ignore_labels=["blue"]
    )
    assert [d.label for d in ignoring.detect(image)[0]] == ["red"]
    strict = LiteRtDetector.load(tflite_model_dir, threads=1, thresholds={"red": 0.7})
    assert strict.detect(image)[0] == []


def test_a_model_without_a_tflite_file_is_a_clear_error(colour_model_dir: Path) -> None:
    with pytest.raises(ModelError, match=f"no {TFLITE_FILE}"):
        LiteRtDetector.load(colour_model_dir)


def test_a_tflite_file_that_breaks_the_contract_is_refused(tmp_path: Path) -> None:
    import tensorflow as tf

    from models.serving.contract_model import export_colour_model

    # Given a model directory whose TFLite file takes float input
    model = export_colour_model(tmp_path / "m")

    def serve(input_tensor: Any) -> dict[str, Any]:
        return {"detection_scores": tf.reduce_mean(input_tensor, axis=[1, 2])}

    module = tf.Module()
    module.serve = tf.function(serve, input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    function = module.serve.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    (model / TFLITE_FILE).write_bytes(converter.convert())

    # Then loading it says what is wrong
    with pytest.raises(ModelError, match="must be uint8"):
        LiteRtDetector.load(model)


def test_auto_picks_litert_only_when_the_model_has_a_tflite_file(
    tflite_model_dir: Path, colour_model_dir: Path
) -> None:
    url = "amqp://guest:guest@127.0.0.1:5672/"
    assert choose_runtime(worker_settings(url, model_dir=tflite_model_dir)) == "litert"
    assert choose_runtime(worker_settings(url, model_dir=colour_model_dir)) == "tensorflow"
    forced = worker_settings(url, model_dir=tflite_model_dir, runtime="tensorflow")
    assert choose_runtime(forced) == "tensorflow"


async def test_a_worker_on_litert_turns_frames_into_events(
    amqp_url: str, tflite_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a worker that loads the model itself, told to use LiteRT
    settings = worker_settings(
        amqp_url, model_dir=tflite_model_dir, runtime="litert", litert_threads=1, max_batch=4
    )
    worker = Worker(settings)
    await worker.start()
    try:
        colours = {"red": RED, "green": GREEN, "blue": BLUE}
        sent = [make_frame(colours[name], sequence=i) for i, name in enumerate(colours)]

        # When frames are published
        async with EventCollector(amqp_url) as collector:
            await publish_frames(amqp_url, sent * 3)
            events = await collector.wait_for(9)

        # Then each frame's colour comes back as its event, from the LiteRT detector
        assert isinstance(worker.detector, LiteRtDetector)
        assert sorted((e.sequence, e.label) for e in events) == sorted(
            [(0, "red"), (1, "green"), (2, "blue")] * 3
        )
        info = worker.metrics.registry.get_sample_value(
            "memelearning_worker_model_info",
            {
                "name": "colour-plumbing",
                "version": "1",
                "runtime": "litert",
                "input_size": "320x320",
                "max_batch": "1",
            },
        )
        assert info == 1.0
        await wait_until(lambda: worker.metrics.frames_processed._value.get() == 9)

        # ... and the readiness probe says which runtime serves the model
        probe = ["worker", "check", "--port", str(worker.http_port)]
        assert await asyncio.to_thread(main, probe) == 0
        assert "ready (model colour-plumbing 1 on litert)" in capsys.readouterr().out
    finally:
        await worker.stop()
    assert await messages_ready(amqp_url) == 0
