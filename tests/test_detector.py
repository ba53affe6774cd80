from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from worker.detector import Detection, Detector, ModelError

HANDS = Path("/work/shared/data/hands/test")
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)

Frames = npt.NDArray[np.uint8]


def solid(*colours: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> Frames:
    """One frame per colour, each filled with it."""
    frames = np.zeros((len(colours), *size, 3), dtype=np.uint8)
    for frame, colour in zip(frames, colours, strict=True):
        frame[...] = colour
    return frames


def real_frames(count: int, size: tuple[int, int] = (320, 320)) -> Frames:
    """The first ``count`` test frames of the hands data set, resized to ``size``."""
    paths = sorted(HANDS.glob("*.jpg"))[:count]
    assert len(paths) == count, f"need {count} frames in {HANDS}"
    frames = []
    for path in paths:
        with Image.open(path) as image:
            resized = image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
            frames.append(np.asarray(resized, dtype=np.uint8))
    return np.stack(frames)


def colour_fractions(frames: Frames) -> npt.NDArray[np.float64]:
    """Independent reference for the colour model: per frame, the fraction of pixels
    where each channel is strictly the largest."""
    wide = frames.astype(np.int16)
    fractions = np.zeros((len(frames), 3))
    for channel in range(3):
        others = [c for c in range(3) if c != channel]
        wins = (wide[..., channel] > wide[..., others[0]]) & (
            wide[..., channel] > wide[..., others[1]]
        )
        fractions[:, channel] = wins.mean(axis=(1, 2))
    return fractions


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def export_module(
    path: Path,
    *,
    input_spec: Any = None,
    outputs: Callable[[Any], dict[str, Any]] | None = None,
    signature: str = "serving_default",
    label_map: str = "item { id: 1 name: 'red' }\n",
) -> Path:
    """Export a small SavedModel with one signature (the contract unless overridden)."""
    import tensorflow as tf

    spec = input_spec or tf.TensorSpec([None, None, None, 3], tf.uint8, name="input_tensor")
    produce = outputs or fixed_outputs(scores=[0.9], classes=[1], boxes=[[0, 0, 1, 1]], num=1)
    module = tf.Module()
    module.serve = tf.function(produce, input_signature=[spec])
    tf.saved_model.save(
        module, str(path), signatures={signature: module.serve.get_concrete_function()}
    )
    (path / "label_map.pbtxt").write_text(label_map, encoding="utf-8")
    return path


def fixed_outputs(
    *, scores: list[float], classes: list[float], boxes: list[list[float]], num: float
) -> Callable[[Any], dict[str, Any]]:
    """Contract outputs that are the same for every frame, whatever its pixels."""
    import tensorflow as tf

    def produce(images: Any) -> dict[str, Any]:
        batch = tf.shape(images)[0]

        def tiled(values: Any, dtype: Any = tf.float32) -> Any:
            value = tf.constant(values, dtype)[tf.newaxis]
            return tf.tile(value, tf.concat([[batch], tf.ones_like(tf.shape(value)[1:])], 0))

        return {
            "detection_boxes": tiled(boxes),
            "detection_classes": tiled(classes),
            "detection_scores": tiled(scores),
            "num_detections": tf.fill([batch], float(num)),
            "raw_detection_scores": tiled(scores),  # extra outputs are ignored
        }

    return produce


# --- Detection results -----------------------------------------------------------


def test_solid_frames_give_exact_detections(colour_detector: Detector) -> None:
    # Given one solid red, green and blue frame
    frames = solid(RED, GREEN, BLUE)
    # When they are detected
    results = colour_detector.detect(frames)
    # Then each frame holds exactly its colour, whole-frame box, above the 0.5 default
    assert results == [
        [Detection("red", 1, 1.0, (0.0, 0.0, 1.0, 1.0))],
        [Detection("green", 2, 1.0, (0.0, 0.0, 1.0, 1.0))],
        [Detection("blue", 3, 1.0, (0.0, 0.0, 1.0, 1.0))],
    ]


def test_detections_are_sorted_with_exact_boxes(colour_model_dir: Path) -> None:
    # Given a frame: top half blue, bottom-left quarter red, bottom-right quarter green
    detector = Detector.load(colour_model_dir, default_threshold=0.0)
    frame = np.zeros((1, 40, 80, 3), dtype=np.uint8)
    frame[0, :20] = BLUE
    frame[0, 20:, :40] = RED
    frame[0, 20:, 40:] = GREEN
    # When it is detected
    [detections] = detector.detect(frame)
    # Then all three are reported, highest score first, with their regions as boxes
    assert detections == [
        Detection("blue", 3, 0.5, (0.0, 0.0, 0.5, 1.0)),
        Detection("red", 1, 0.25, (0.5, 0.0, 1.0, 0.5)),
        Detection("green", 2, 0.25, (0.5, 0.5, 1.0, 1.0)),
    ]


def test_real_frames_match_an_independent_reference(colour_model_dir: Path) -> None:
    # Given real webcam frames and a detector that reports every score
    detector = Detector.load(colour_model_dir, default_threshold=0.0)
    frames = real_frames(4)
    # When they are detected
    results = detector.detect(frames)
    # Then the scores are the colour fractions computed independently with NumPy
    expected = colour_fractions(frames)
    for detections, fractions in zip(results, expected, strict=True):
        scores = {d.label: d.score for d in detections}
        assert [d.score for d in detections] == sorted(scores.values(), reverse=True)
        got = [scores["red"], scores["green"], scores["blue"]]
        np.testing.assert_allclose(got, fractions, atol=1e-6)


def test_fixed_batch_of_one_matches_dynamic_batch(
    colour_model_dir: Path, colour_model_dir_batch1: Path
) -> None:
    # Given the same model exported with a dynamic batch and with a fixed batch of 1
    dynamic = Detector.load(colour_model_dir, default_threshold=0.0)
    batch1 = Detector.load(colour_model_dir_batch1, default_threshold=0.0)
    frames = np.concatenate([real_frames(3), solid(RED, BLUE, size=(320, 320))])
    # When the fixed-batch model gets a batch of five
    results = batch1.detect(frames)
    # Then it is fed frame by frame and answers exactly as the dynamic one
    assert (dynamic.max_batch, batch1.max_batch) == (None, 1)
    assert len(results) == 5
    assert results == dynamic.detect(frames)


def test_fixed_batch_larger_than_one_pads_the_last_chunk(
    colour_model_dir: Path, tmp_path: Path
) -> None:
    # Given a model with a fixed batch of 4
    from models.serving.contract_model import export_colour_model

    fixed = Detector.load(export_colour_model(tmp_path / "b4", batch_size=4), default_threshold=0)
    dynamic = Detector.load(colour_model_dir, default_threshold=0.0)
    frames = np.concatenate([real_frames(3), solid(GREEN, RED, BLUE, size=(320, 320))])
    # When it gets six frames (a full chunk and a padded one)
    results = fixed.detect(frames)
    # Then there is one result per real frame, equal to the dynamic model's
    assert fixed.max_batch == 4
    assert results == dynamic.detect(frames)
    assert results[-1][0] == Detection("blue", 3, 1.0, (0.0, 0.0, 1.0, 1.0))


def test_empty_batch_gives_no_results(colour_detector: Detector) -> None:
    assert colour_detector.detect(np.zeros((0, 32, 32, 3), dtype=np.uint8)) == []


# --- Thresholds and labels -------------------------------------------------------


@pytest.fixture
def mixed_frame() -> Frames:
    """60% red, 30% green, 10% blue (columns)."""
    frame = np.zeros((1, 10, 10, 3), dtype=np.uint8)
    frame[0, :, :6] = RED
    frame[0, :, 6:9] = GREEN
    frame[0, :, 9:] = BLUE
    return frame


def labels_of(results: list[list[Detection]]) -> list[str]:
    return [d.label for d in results[0]]


def test_default_threshold_applies_to_every_label(
    colour_model_dir: Path, mixed_frame: Frames
) -> None:
    # Given detectors with two default thresholds
    strict = Detector.load(colour_model_dir, default_threshold=0.5)
    loose = Detector.load(colour_model_dir, default_threshold=0.1)
    # When the same frame is detected; then each reports scores at or above its threshold
    assert labels_of(strict.detect(mixed_frame)) == ["red"]
    assert labels_of(loose.detect(mixed_frame)) == ["red", "green", "blue"]
    assert loose.thresholds == {"red": 0.1, "green": 0.1, "blue": 0.1}


def test_per_label_thresholds_override_the_default(
    colour_model_dir: Path, mixed_frame: Frames
) -> None:
    # Given green lowered below and red raised above their scores
    detector = Detector.load(
        colour_model_dir, default_threshold=0.5, thresholds={"green": 0.3, "red": 0.61}
    )
    # When the frame is detected; then green (0.3, inclusive) passes and red (0.6) does not
    assert labels_of(detector.detect(mixed_frame)) == ["green"]


def test_thresholds_shipped_in_model_json_apply_under_the_settings(
    colour_model_dir: Path, mixed_frame: Frames, tmp_path: Path
) -> None:
    # Given a model that ships red above its score (0.6) and green below its own (0.3)
    model = copy_model(colour_model_dir, tmp_path / "model")
    metadata = json.loads((model / "model.json").read_text())
    metadata["thresholds"] = {"red": 0.61, "green": 0.3}
    (model / "model.json").write_text(json.dumps(metadata))
    # When it is loaded with a default that would pass red and stop green
    shipped = Detector.load(model, default_threshold=0.5)
    # Then the shipped thresholds win over the default
    assert shipped.thresholds == {"red": 0.61, "green": 0.3, "blue": 0.5}
    assert labels_of(shipped.detect(mixed_frame)) == ["green"]
    # And the worker's own per-label setting wins over the shipped one
    overridden = Detector.load(model, default_threshold=0.5, thresholds={"red": 0.5})
    assert labels_of(overridden.detect(mixed_frame)) == ["red", "green"]


def test_thresholds_in_model_json_must_be_scores(colour_model_dir: Path, tmp_path: Path) -> None:
    model = copy_model(colour_model_dir, tmp_path / "model")
    metadata = json.loads((model / "model.json").read_text())
    metadata["thresholds"] = {"red": 1.5}
    (model / "model.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match="thresholds must map label names to scores"):
        Detector.load(model)


def test_ignored_labels_are_never_reported(colour_model_dir: Path, mixed_frame: Frames) -> None:
    # Given red ignored and everything else reported
    detector = Detector.load(colour_model_dir, default_threshold=0.0, ignore_labels=["red"])
    # When the frame is detected; then red is missing, however high its score
    assert labels_of(detector.detect(mixed_frame)) == ["green", "blue"]
    assert "red" not in detector.thresholds
    assert detector.labels.names == ("red", "green", "blue")


def test_class_ids_missing_from_the_label_map_are_skipped_and_counted(
    colour_model_dir: Path, tmp_path: Path
) -> None:
    # Given the colour model with a label map that lacks blue (id 3)
    model = copy_model(colour_model_dir, tmp_path / "model")
    (model / "label_map.pbtxt").write_text(
        "item { id: 1 name: 'red' }\nitem { id: 2 name: 'green' }"
    )
    detector = Detector.load(model, default_threshold=0.0)
    # When a blue and a red frame are detected
    results = detector.detect(solid(BLUE, RED))
    # Then blue is dropped (once per frame), the rest is reported
    assert [[d.label for d in r] for r in results] == [["red", "green"], ["red", "green"]]
    assert detector.unknown_class_detections == 2


def test_outputs_are_sanitised(tmp_path: Path) -> None:
    # Given a model whose outputs have swapped and out-of-range box corners, class ids
    # 0, 9 and NaN, a NaN score, and slots beyond num_detections
    outputs = fixed_outputs(
        scores=[0.6, 0.9, 0.99, 0.98, float("nan"), 0.7, 0.95],
        classes=[1, 2, 0, 9, 1, float("nan"), 1],
        boxes=[[0.8, 0.6, 0.2, 0.1], [-0.5, 0.2, 1.5, 0.4]] + [[0.0, 0.0, 1.0, 1.0]] * 5,
        num=6,
    )
    model = export_module(
        tmp_path / "model",
        outputs=outputs,
        label_map="item { id: 1 name: 'red' }\nitem { id: 2 name: 'green' }",
    )
    detector = Detector.load(model, default_threshold=0.5)
    # When a batch of two is detected
    results = detector.detect(solid(RED, GREEN))
    # Then boxes are ordered and clipped, unknown ids and NaN scores dropped, the slot
    # past num_detections ignored, and the rest sorted by score
    assert len(results) == 2
    for detections in results:
        assert [(d.label, d.class_id) for d in detections] == [("green", 2), ("red", 1)]
        assert [d.score for d in detections] == pytest.approx([0.9, 0.6])
        assert [d.box for d in detections] == [
            pytest.approx((0.0, 0.2, 1.0, 0.4)),
            pytest.approx((0.2, 0.1, 0.8, 0.6)),
        ]
    assert detector.unknown_class_detections == 2 * 3


# --- Loading and validation ------------------------------------------------------


def test_metadata_comes_from_model_json(tmp_path: Path) -> None:
    # Given an export with a name, version and input size in model.json
    from models.serving.contract_model import export_colour_model

    model = export_colour_model(tmp_path / "m", name="hands-ssd", version="2024.06.1")
    metadata = json.loads((model / "model.json").read_text())
    metadata["input_size"] = [240, 288]
    (model / "model.json").write_text(json.dumps(metadata))
    # When it is loaded
    detector = Detector.load(model, default_input_size=(100, 100))
    # Then those are its name, version and input size; the description marks plumbing
    assert (detector.name, detector.version) == ("hands-ssd", "2024.06.1")
    assert detector.input_size == (240, 288)
    assert "NOT a gesture detector" in metadata["description"]
    assert detector.frame_fit == "stretch"
    # And a model that asks for letterboxed frames gets them
    metadata["frame_fit"] = "letterbox"
    (model / "model.json").write_text(json.dumps(metadata))
    assert Detector.load(model).frame_fit == "letterbox"


def test_metadata_falls_back_without_model_json(
    colour_model_dir: Path, colour_model_dir_batch1: Path, tmp_path: Path
) -> None:
    # Given a model without model.json
    model = copy_model(colour_model_dir, tmp_path / "hands-v3")
    (model / "model.json").unlink()
    # When it is loaded
    detector = Detector.load(model, default_input_size=(200, 240))
    # Then the directory names it, a content hash versions it, the default sizes it
    assert detector.name == "hands-v3"
    assert len(detector.version) == 12
    int(detector.version, 16)
    assert detector.input_size == (200, 240)
    # And the version is stable for one model, different for another
    assert Detector.load(model).version == detector.version
    other = copy_model(colour_model_dir_batch1, tmp_path / "other")
    (other / "model.json").unlink()
    assert Detector.load(other).version != detector.version


def test_signature_with_fixed_size_sets_input_size(tmp_path: Path) -> None:
    # Given a model whose signature fixes H and W
    from models.serving.contract_model import export_colour_model

    detector = Detector.load(export_colour_model(tmp_path / "m", input_size=(48, 64)))
    # Then that is its input size, and frames of another size are refused
    assert detector.input_size == (48, 64)
    assert detector.detect(solid(RED, size=(48, 64)))[0][0].label == "red"
    with pytest.raises(ValueError, match="takes 48x64 images, got 32x32"):
        detector.detect(solid(RED))


def test_model_json_contradicting_the_signature_is_refused(tmp_path: Path) -> None:
    from models.serving.contract_model import export_colour_model

    model = export_colour_model(tmp_path / "m", input_size=(48, 64))
    (model / "model.json").write_text('{"input_size": [64, 48]}')
    with pytest.raises(ModelError, match="contradicts the signature's fixed size"):
        Detector.load(model)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read model metadata"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"name": ""}', "name must be a string"),
        ('{"version": 1.5}', "version must be a string"),
        ('{"input_size": [320]}', "input_size must be"),
        ('{"input_size": [320, 0]}', "input_size must be"),
        ('{"frame_fit": "crop"}', "frame_fit must be one of stretch, letterbox, got 'crop'"),
    ],
)
def test_malformed_model_json_is_refused(
    colour_model_dir: Path, tmp_path: Path, content: str, message: str
) -> None:
    model = copy_model(colour_model_dir, tmp_path / "m")
    (model / "model.json").write_text(content)
    with pytest.raises(ModelError, match=f"model.json: {message}"):
        Detector.load(model)


def test_integer_version_in_model_json_is_accepted(colour_model_dir: Path, tmp_path: Path) -> None:
    model = copy_model(colour_model_dir, tmp_path / "m")
    (model / "model.json").write_text('{"version": 7}')
    assert Detector.load(model).version == "7"


def test_missing_directory_or_files_are_refused(colour_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model directory does not exist"):
        Detector.load(tmp_path / "nowhere")
    no_graph = copy_model(colour_model_dir, tmp_path / "no-graph")
    (no_graph / "saved_model.pb").unlink()
    with pytest.raises(ModelError, match=r"no saved_model\.pb"):
        Detector.load(no_graph)
    no_labels = copy_model(colour_model_dir, tmp_path / "no-labels")
    (no_labels / "label_map.pbtxt").unlink()
    with pytest.raises(ModelError, match=r"no label_map\.pbtxt"):
        Detector.load(no_labels)


def test_broken_label_map_is_refused_with_its_line(colour_model_dir: Path, tmp_path: Path) -> None:
    model = copy_model(colour_model_dir, tmp_path / "m")
    (model / "label_map.pbtxt").write_text("item {\n  id: 1\n  nmae: 'red'\n}\n")
    with pytest.raises(ModelError, match=r"label_map.pbtxt:3: unknown item field 'nmae'"):
        Detector.load(model)


def test_corrupt_saved_model_is_refused(colour_model_dir: Path, tmp_path: Path) -> None:
    model = copy_model(colour_model_dir, tmp_path / "m")
    (model / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="cannot load SavedModel"):
        Detector.load(model)


def test_wrong_signature_name_is_refused(tmp_path: Path) -> None:
    model = export_module(tmp_path / "m", signature="detect")
    with pytest.raises(ModelError, match=r"no 'serving_default' signature \(found: detect\)"):
        Detector.load(model)


def test_wrong_input_dtype_is_refused(tmp_path: Path) -> None:
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="input_tensor")
    model = export_module(tmp_path / "m", input_spec=spec)
    with pytest.raises(ModelError, match="input 'input_tensor' must be uint8, is float32"):
        Detector.load(model)


def test_wrong_input_name_is_refused(tmp_path: Path) -> None:
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    model = export_module(tmp_path / "m", input_spec=spec)
    with pytest.raises(ModelError, match="exactly one input 'input_tensor', takes images"):
        Detector.load(model)


def test_wrong_input_rank_is_refused(tmp_path: Path) -> None:
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, 3], tf.uint8, name="input_tensor")
    model = export_module(tmp_path / "m", input_spec=spec)
    with pytest.raises(ModelError, match=r"must be \[N, H, W, 3\]"):
        Detector.load(model)


def test_missing_outputs_are_refused(tmp_path: Path) -> None:
    import tensorflow as tf

    def scores_only(images: Any) -> dict[str, Any]:
        return {"detection_scores": tf.zeros([tf.shape(images)[0], 100])}

    model = export_module(tmp_path / "m", outputs=scores_only)
    with pytest.raises(
        ModelError, match="lacks outputs detection_boxes, detection_classes, num_detections"
    ):
        Detector.load(model)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"thresholds": {"redd": 0.5}}, "thresholds name labels the model does not have: redd"),
        ({"ignore_labels": ["bleu"]}, "ignore_labels name labels the model does not have: bleu"),
        ({"thresholds": {"red": 1.5}}, "threshold for red must be in"),
        ({"default_threshold": -0.1}, "threshold for default threshold must be in"),
    ],
)
def test_bad_threshold_settings_are_refused(
    colour_model_dir: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        Detector.load(colour_model_dir, **options)


def test_labels_unfit_for_routing_keys_must_be_ignored(
    colour_model_dir: Path, tmp_path: Path
) -> None:
    # Given a label map with a name that cannot be part of a routing key
    model = copy_model(colour_model_dir, tmp_path / "m")
    (model / "label_map.pbtxt").write_text(
        "item { id: 1 name: 'red' }\nitem { id: 2 name: 'traffic light' }\n"
    )
    # When it is loaded reporting that label, it is refused; ignoring it is fine
    with pytest.raises(ModelError, match="'traffic light'"):
        Detector.load(model)
    assert Detector.load(model, ignore_labels=["traffic light"]).thresholds == {"red": 0.5}


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((1, 8, 8, 3), dtype=np.float32), "must be uint8, got float32"),
        (np.zeros((8, 8, 3), dtype=np.uint8), r"shape \[N, H, W, 3\], got \[8, 8, 3\]"),
        (np.zeros((1, 8, 8, 4), dtype=np.uint8), r"got \[1, 8, 8, 4\]"),
        ([[[[0, 0, 0]]]], "must be a numpy array, got list"),
    ],
)
def test_invalid_images_are_refused(colour_detector: Detector, images: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        colour_detector.detect(images)


# --- Export, warm-up, threads ----------------------------------------------------


def test_export_reload_gives_the_in_memory_outputs(colour_model_dir: Path) -> None:
    # Given the in-memory colour model and its SavedModel export
    import tensorflow as tf

    from models.serving.contract_model import ColourModel

    module = ColourModel()
    loaded = tf.saved_model.load(str(colour_model_dir))
    frames = np.concatenate([real_frames(2, size=(96, 128)), solid(GREEN, size=(96, 128))])
    # When both run the same frames
    expected = module(tf.constant(frames))
    got = loaded.signatures["serving_default"](input_tensor=tf.constant(frames))
    # Then every output and the saved weights are identical
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy(), err_msg=key)
    np.testing.assert_array_equal(loaded.conv_kernel.numpy(), module.conv_kernel.numpy())


def test_colour_model_is_labelled_as_plumbing(
    colour_model_dir: Path, colour_detector: Detector
) -> None:
    # Given the default export; then its metadata and label map say what it is
    assert (colour_detector.name, colour_detector.version) == ("colour-plumbing", "1")
    assert colour_detector.input_size == (320, 320)
    assert colour_detector.labels.names == ("red", "green", "blue")
    assert "NOT a gesture detector" in (colour_model_dir / "label_map.pbtxt").read_text()
    assert "NOT a gesture detector" in (colour_model_dir / "model.json").read_text()


def test_colour_model_obeys_the_serving_contract(colour_model_dir_batch1: Path) -> None:
    import tensorflow as tf

    signature = tf.saved_model.load(str(colour_model_dir_batch1)).signatures["serving_default"]
    _, inputs = signature.structured_input_signature
    assert inputs["input_tensor"].shape.as_list() == [1, None, None, 3]
    outputs = signature(input_tensor=tf.constant(solid(RED)))
    assert outputs["detection_boxes"].shape == (1, 100, 4)
    assert outputs["detection_scores"].shape == (1, 100)
    assert outputs["detection_classes"].dtype == tf.float32
    assert outputs["num_detections"].numpy().tolist() == [3.0]
    assert not outputs["detection_scores"].numpy()[0, 3:].any()


def test_warm_up_runs_each_batch_size_once(colour_model_dir: Path, tmp_path: Path) -> None:
    # Given a label map without green and blue, so each zero frame the model sees
    # counts two unknown detections
    model = copy_model(colour_model_dir, tmp_path / "m")
    (model / "label_map.pbtxt").write_text("item { id: 1 name: 'red' }\n")
    detector = Detector.load(model)
    # When it warms up at batch sizes 1, 4 and 4 again
    detector.warm_up([4, 1, 4])
    # Then it ran 1 + 4 frames
    assert detector.unknown_class_detections == 2 * 5
    with pytest.raises(ValueError, match=">= 1"):
        detector.warm_up([0])


def test_warm_up_of_a_fixed_batch_model_runs_one_batch(
    colour_model_dir_batch1: Path, tmp_path: Path
) -> None:
    model = copy_model(colour_model_dir_batch1, tmp_path / "m")
    (model / "label_map.pbtxt").write_text("item { id: 1 name: 'red' }\n")
    detector = Detector.load(model)
    detector.warm_up([1, 8, 32])
    assert detector.unknown_class_detections == 2


def test_threads_set_after_tensorflow_started_only_warn(
    colour_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given TensorFlow already running in this process (the export fixture ran it)
    import tensorflow as tf

    current = tf.config.threading.get_intra_op_parallelism_threads()
    # When a detector asks for other thread counts
    with caplog.at_level(logging.WARNING, logger="worker.detector"):
        detector = Detector.load(colour_model_dir, intra_op_threads=current + 3)
    # Then it loads and serves, with a warning
    assert detector.detect(solid(RED))[0][0].label == "red"
    assert "already initialised" in caplog.text


@pytest.mark.slow
def test_threads_apply_in_a_fresh_process(colour_model_dir: Path) -> None:
    # Given a new process that has not started TensorFlow
    script = (
        "import sys; from pathlib import Path; from worker.detector import Detector\n"
        "Detector.load(Path(sys.argv[1]), intra_op_threads=1, inter_op_threads=2)\n"
        "import tensorflow as tf; t = tf.config.threading\n"
        "print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads())\n"
    )
    # When it loads a detector with thread settings
    done = subprocess.run(
        [sys.executable, "-c", script, str(colour_model_dir)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    # Then TensorFlow runs with them, and nothing warned
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "2"]
    assert "already initialised" not in done.stderr
