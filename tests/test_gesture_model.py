"""The gesture model's building blocks and its exports: the TFLite importer replays
MediaPipe's graphs exactly, stage one's targets decode back to their boxes, the crops
sit where they should, and the SavedModel and TFLite exports compute what the
in-memory model computes and load in the worker."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf
from PIL import Image

from models.networks.base_models import (
    HAND_LANDMARKS,
    HAND_REGION_LANDMARKS,
    PALM_DETECTOR,
    BaseModelError,
    base_model_paths,
)
from models.networks.face_tracking import FaceStage
from models.networks.gesture_classifier import GestureHead
from models.networks.hand_detector import INPUT_SIZE, letterbox
from models.networks.tflite_import import import_tflite
from models.serving.gesture_model import (
    CROPS_SIGNATURE,
    FACES_SIGNATURE,
    HANDS_SIGNATURE,
    GestureModel,
    ModelConfig,
    crop_squares,
    export,
    to_tflite,
)
from models.train.landmark_calibration import calibration_frames, landmark_calibration

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# The module's first test builds and exports the whole model (hands, faces, poses;
# SavedModel and TFLite): past the suite's 120 s when other work loads the cores.
pytestmark = pytest.mark.timeout(300)
LABELS = ("fist", "like", "none", "palm")
BILINEAR = Image.Resampling.BILINEAR


@pytest.fixture(scope="session")
def bases() -> dict[str, Path]:
    return base_model_paths()


def _frames(count: int, size: tuple[int, int] = (360, 480)) -> npt.NDArray[np.uint8]:
    paths = sorted((DATA / "hands" / "test").glob("*.jpg"))[:count]
    return np.stack(
        [
            np.asarray(
                Image.open(p).convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
            )
            for p in paths
        ]
    )


def test_base_models_are_verified_by_checksum(tmp_path: Path, bases: dict[str, Path]) -> None:
    for model in (PALM_DETECTOR, HAND_REGION_LANDMARKS, HAND_LANDMARKS):
        assert hashlib.sha256(bases[model.file_name].read_bytes()).hexdigest() == model.sha256
    (tmp_path / PALM_DETECTOR.file_name).write_bytes(b"not the model")
    with pytest.raises(BaseModelError, match=r"palm_detection_full\.tflite"):
        base_model_paths(tmp_path, fetch=False)


@pytest.mark.parametrize(
    "model", [PALM_DETECTOR, HAND_REGION_LANDMARKS, HAND_LANDMARKS], ids=lambda m: m.file_name
)
def test_imported_graph_computes_what_the_tflite_interpreter_computes(
    bases: dict[str, Path], model: object
) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = bases[model.file_name]  # type: ignore[attr-defined]
    graph = import_tflite(path, name="under_test")
    size = graph.input_shape[1]
    x = _frames(1, (size, size)).astype(np.float32) / 255.0
    ours = [t.numpy() for t in graph(tf.constant(x))]
    interpreter = Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    theirs = {
        d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()
    }
    for name, value in zip(graph.output_names, ours, strict=True):
        reference = theirs[name]
        assert value.shape == reference.shape
        assert np.abs(value - reference).max() <= 1e-3 * max(1.0, np.abs(reference).max())
    # Any batch, not only the exported batch of one.
    batched = graph(tf.constant(np.concatenate([x, x[:, ::-1]])))
    np.testing.assert_allclose(batched[0].numpy()[:1], ours[0], rtol=1e-4, atol=1e-3)


def test_crops_are_square_centred_and_zero_outside_the_frame() -> None:
    height, width = 40, 80
    rows = np.broadcast_to(np.arange(height, dtype=np.float32)[:, None], (height, width))
    cols = np.broadcast_to(np.arange(width, dtype=np.float32)[None, :], (height, width))
    image = np.stack([rows, cols, np.ones_like(rows)], axis=-1)[None]
    # A 20x20-pixel box from (10, 30) to (30, 50); margin 1 → exactly that square, sampled
    # at pixel centres (a pixel's value sits at index + 0.5).
    box = tf.constant([[10 / height, 30 / width, 30 / height, 50 / width]])
    crop = crop_squares(tf.constant(image), box, tf.constant([0]), 1.0)[0].numpy()
    assert crop.shape == (224, 224, 3)
    assert crop[..., 0].min() == pytest.approx(9.5, abs=0.1)
    assert crop[..., 0].max() == pytest.approx(29.5, abs=0.1)
    assert crop[..., 1].min() == pytest.approx(29.5, abs=0.1)
    assert crop[..., 1].max() == pytest.approx(49.5, abs=0.1)
    # Doubling the margin reaches past the top edge: those rows are zeros.
    wide = crop_squares(tf.constant(image), box, tf.constant([0]), 3.0)[0].numpy()
    assert np.all(wide[:10, :, 2] == 0)
    assert np.all(wide[112, 112, 2] == 1)


@pytest.fixture(scope="module")
def gesture_model(bases: dict[str, Path]) -> GestureModel:
    head = GestureHead(LABELS, 736, seed=3)
    # An untrained head: only the plumbing is under test here. fp32 TFLite weights so
    # the exports can be compared to float precision.
    return GestureModel.from_base_models(
        bases,
        head,
        ModelConfig(max_hands=2, tflite_max_hands=2, tflite_weights="fp32"),
        FaceStage.from_base_models(bases),
    )


@pytest.fixture(scope="module")
def exported(gesture_model: GestureModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gesture-export") / "model"
    return export(gesture_model, out, {"name": "test-gestures", "version": "t1"})


def test_the_reloaded_savedmodel_computes_what_the_model_in_memory_computes(
    gesture_model: GestureModel, exported: Path
) -> None:
    frames = _frames(3)
    expected = gesture_model.detect(tf.constant(frames))
    loaded = tf.saved_model.load(str(exported))
    got = loaded.signatures["serving_default"](input_tensor=tf.constant(frames))
    assert int(np.sum(expected["num_detections"])) > 0, (
        "no hand found: the test would prove nothing"
    )
    for key, value in expected.items():
        # The saved graph is optimized on load (fused, reordered float sums): the same
        # answers to within 1e-4, not bit for bit.
        np.testing.assert_allclose(got[key].numpy(), value.numpy(), rtol=1e-4, atol=2e-4)
    hands = loaded.signatures[HANDS_SIGNATURE](input_tensor=tf.constant(frames))
    assert hands["hand_boxes"].shape == (3, 2, 4)
    crops = loaded.signatures[CROPS_SIGNATURE](crops=tf.zeros([2, 224, 224, 3], tf.uint8))
    np.testing.assert_allclose(crops["gesture_probabilities"].numpy().sum(axis=-1), 1.0, rtol=1e-5)
    faces = loaded.signatures[FACES_SIGNATURE](input_tensor=tf.constant(frames))
    assert faces["face_boxes"].shape == (3, 2, 4) and faces["smile"].shape == (3, 2)


def test_faces_are_labelled_beside_the_hands_and_change_no_hand(
    gesture_model: GestureModel,
) -> None:
    # Frames of signs/ show one signing person each: their face and their hands.
    paths = [sorted((DATA / "signs" / p).glob("*.jpg"))[0] for p in ("Condzi", "pietercdevries")]
    frames = tf.constant(
        np.stack(
            [np.asarray(Image.open(p).convert("RGB").resize((480, 360), BILINEAR)) for p in paths]
        )
    )
    hands_only = gesture_model.with_settings(gesture_model.head, gesture_model.config)
    assert hands_only.labels == ("fist", "like", "palm")
    assert gesture_model.labels == (
        "fist",
        "like",
        "palm",
        "smile",
        "neutral",
        "thinking",
        "raise_hand",
    )
    both = gesture_model.detect(frames)
    hands = hands_only.detect(frames)
    assert gesture_model.faces is not None
    faces = gesture_model.faces(frames)
    assert faces["num_faces"].numpy().tolist() == [1, 1]
    for i in range(len(paths)):
        count = int(both["num_detections"][i])
        classes = both["detection_classes"][i, :count].numpy()
        is_face = np.isin(classes, [4, 5])  # smile (4) or neutral (5)
        assert int(is_face.sum()) == 1
        # The face's box is the face stage's, its score presence x the likelier label.
        face = int(np.argmax(is_face))
        np.testing.assert_allclose(both["detection_boxes"][i, face], faces["face_boxes"][i, 0])
        smile = float(faces["smile"][i, 0])
        assert classes[face] == (4 if smile >= 0.5 else 5)
        expected = float(faces["face_scores"][i, 0]) * max(smile, 1 - smile)
        assert float(both["detection_scores"][i, face]) == pytest.approx(expected, rel=1e-5)
        # Every hand is the one the model without faces finds, named the same unless
        # it holds a pose (thinking 6, raise_hand 7).
        n_hands = int(hands["num_detections"][i])
        assert count == n_hands + 1
        ours = sorted(
            (tuple(np.round(b, 4)), c)
            for b, c in zip(
                both["detection_boxes"][i, :count].numpy()[~is_face], classes[~is_face], strict=True
            )
        )
        theirs = sorted(
            (tuple(np.round(b, 4)), c)
            for b, c in zip(
                hands["detection_boxes"][i, :n_hands].numpy(),
                hands["detection_classes"][i, :n_hands].numpy(),
                strict=True,
            )
        )
        assert [b for b, _ in ours] == [b for b, _ in theirs]
        assert all(a == b or a in (6, 7) for (_, a), (_, b) in zip(ours, theirs, strict=True))


def test_the_worker_serves_the_export_and_never_reports_none(exported: Path) -> None:
    from worker.detector import Detector

    detector = Detector.load(exported, default_threshold=0.0)
    assert detector.input_size == (360, 480)
    labels = {"fist", "like", "palm", "smile", "neutral", "thinking", "raise_hand"}
    assert set(detector.labels.values()) == labels
    results = detector.detect(_frames(4))
    assert len(results) == 4
    assert any(results)
    assert all(d.label in labels for frame in results for d in frame)


def test_the_tflite_export_agrees_with_the_savedmodel(exported: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    loaded = tf.saved_model.load(str(exported))
    runner = Interpreter(model_path=str(exported / "model.tflite")).get_signature_runner()
    checked = 0
    for frame in _frames(4):
        reference = loaded.signatures["serving_default"](input_tensor=tf.constant(frame[None]))
        lite = runner(input_tensor=frame[None])
        count = int(reference["num_detections"][0])
        assert int(lite["num_detections"][0]) == count
        np.testing.assert_allclose(
            lite["detection_boxes"][0, :count], reference["detection_boxes"][0, :count], atol=2e-3
        )
        np.testing.assert_array_equal(
            lite["detection_classes"][0, :count], reference["detection_classes"][0, :count]
        )
        np.testing.assert_allclose(
            lite["detection_scores"][0, :count], reference["detection_scores"][0, :count], atol=2e-3
        )
        checked += count
    assert checked > 0


def _by_place(out: dict[str, npt.NDArray[np.float32]], count: int) -> npt.NDArray[np.float32]:
    """The first ``count`` boxes in order of place, not of score (an untrained head's
    probabilities decide the order)."""
    boxes = out["detection_boxes"][0, :count]
    return boxes[np.lexsort(boxes.T[::-1])]


@pytest.mark.timeout(600)
def test_int8_landmark_networks_find_the_same_hands_and_faces(
    gesture_model: GestureModel, exported: Path
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    model = gesture_model.with_settings(
        gesture_model.head,
        replace(gesture_model.config, tflite_landmarks="int8"),
        gesture_model.faces,
    )
    with pytest.raises(ValueError, match="needs calibration"):
        to_tflite(model)
    with pytest.raises(ValueError, match="no frames to calibrate"):
        landmark_calibration(model, [])
    calibration = landmark_calibration(model, calibration_frames(DATA), frames=12)
    assert len(calibration.regions) >= 6 and len(calibration.squares) >= 6
    for crop in (*calibration.regions, *calibration.squares):
        assert crop.shape == (1, 224, 224, 3) and crop.dtype == np.float32
        assert crop.min() >= 0.0 and crop.max() <= 1.0
    int8 = Interpreter(model_content=to_tflite(model, calibration)).get_signature_runner()
    floats = Interpreter(model_path=str(exported / "model.tflite")).get_signature_runner()
    checked = 0
    for frame in _frames(6):
        got, want = int8(input_tensor=frame[None]), floats(input_tensor=frame[None])
        count = int(want["num_detections"][0])
        assert int(got["num_detections"][0]) == count

        # Joints move by about 0.5 % of the hand region in int8 (docs/benchmarks.md).
        np.testing.assert_allclose(_by_place(got, count), _by_place(want, count), atol=0.02)
        checked += count
    assert checked > 0


def test_frames_are_letterboxed_keeping_their_shape() -> None:
    # A wide frame with a white block: in the square input the block keeps its shape
    # (black bars above and below), and the placement says where the frame sits.
    height, width = 360, 960
    frame = np.zeros((1, height, width, 3), np.float32)
    frame[:, 90:270, 480:840] = 1.0
    boxed, placement = letterbox(tf.constant(frame))
    assert boxed.shape == (1, INPUT_SIZE, INPUT_SIZE, 3)
    rows = np.nonzero(boxed[0, :, :, 0].numpy().max(axis=1) > 0.5)[0]
    cols = np.nonzero(boxed[0, :, :, 0].numpy().max(axis=0) > 0.5)[0]
    block_h, block_w = (rows[-1] + 1 - rows[0]), (cols[-1] + 1 - cols[0])
    assert block_w / block_h == pytest.approx(2.0, rel=0.05)  # 360x180 stays 2:1
    assert float(placement.offset_y) == pytest.approx((1 - height / width) / 2)
    assert float(placement.offset_x) == pytest.approx(0.0)


def test_frames_without_hands_give_no_detections_and_the_worker_warms_up(exported: Path) -> None:
    from worker.detector import Detector

    loaded = tf.saved_model.load(str(exported))
    blank = tf.zeros([3, 360, 480, 3], tf.uint8)  # what the worker's warm-up sends
    out = loaded.signatures["serving_default"](input_tensor=blank)
    assert out["num_detections"].numpy().tolist() == [0.0, 0.0, 0.0]
    assert float(tf.reduce_max(out["detection_scores"])) == 0.0
    crops = loaded.signatures[CROPS_SIGNATURE](crops=tf.zeros([0, 224, 224, 3], tf.uint8))
    assert crops["gesture_probabilities"].shape == (0, len(LABELS))
    detector = Detector.load(exported)
    detector.warm_up([1, 4])
    assert detector.detect(blank.numpy()) == [[], [], []]
