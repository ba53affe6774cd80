"""Evaluation metrics: VOC AP on hand-computed cases and against a brute-force
reference, the classification report, and the charts and report files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.dataset.voc import Annotation
from models.dataset.voc import Box as VocBox
from models.evaluate.evaluation import (
    AGNOSTIC_LABEL,
    Box,
    ClassificationResult,
    DetectionResult,
    GroundTruth,
    Prediction,
    average_precision,
    classification_report,
    ground_truth_from_annotation,
    plot_confusion_matrix,
    plot_precision_recall,
    write_report,
)
from worker.detector import Detection

A: Box = (0.1, 0.1, 0.3, 0.3)
B: Box = (0.5, 0.5, 0.9, 0.9)
ELSEWHERE: Box = (0.0, 0.6, 0.1, 0.7)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GESTURES = [
    "call", "dislike", "fist", "like", "mute", "none", "ok",
    "one", "palm", "peace", "rock", "stop", "stop_inverted",
]  # fmt: skip


def _gt(*boxes: Box, label: str = "hand") -> list[GroundTruth]:
    return [GroundTruth(label, box) for box in boxes]


def _p(box: Box, score: float, label: str = "hand") -> Prediction:
    return Prediction(label, score, box)


def _ap(
    gts: list[list[GroundTruth]], preds: list[list[Prediction]], iou_threshold: float = 0.5
) -> float | None:
    return average_precision(gts, preds, iou_threshold=iou_threshold).per_class["hand"].ap


# --- hand-computed cases ---------------------------------------------------------------


def test_perfect_detections_score_one() -> None:
    result = average_precision([_gt(A, B), _gt(A)], [[_p(A, 0.9), _p(B, 0.8)], [_p(A, 0.7)]])
    hand = result.per_class["hand"]
    assert (hand.ap, hand.n_gt, hand.tp, hand.fp, result.mean_ap) == (1.0, 3, 3, 0, 1.0)


def test_false_positive_ranked_above_the_only_true_positive_halves_ap() -> None:
    # ranks: FP (p=0, r=0), TP (p=1/2, r=1) -> envelope 1/2 over recall [0, 1]
    assert _ap([_gt(A)], [[_p(ELSEWHERE, 0.9), _p(A, 0.8)]]) == pytest.approx(0.5)


def test_false_positive_first_of_three_gives_two_thirds() -> None:
    # two objects; ranks FP, TP, TP: precision 0, 1/2, 2/3 at recall 0, 1/2, 1.
    # Interpolated precision is 2/3 on both recall steps -> AP = 2/3.
    preds = [[_p(ELSEWHERE, 0.9), _p(A, 0.8), _p(B, 0.7)]]
    assert _ap([_gt(A, B)], preds) == pytest.approx(2 / 3)


def test_duplicate_detection_is_a_false_positive() -> None:
    # ranks TP(A), FP(A again), TP(B): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    # -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6; the duplicate costs precision, not recall.
    result = average_precision([_gt(A, B)], [[_p(A, 0.9), _p(A, 0.8), _p(B, 0.7)]])
    hand = result.per_class["hand"]
    assert hand.ap == pytest.approx(5 / 6)
    assert (hand.tp, hand.fp) == (2, 1)
    np.testing.assert_allclose(hand.precision, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(hand.recall, [0.5, 0.5, 1.0])


def test_unmatched_ground_truth_lowers_recall() -> None:
    result = average_precision([_gt(A), _gt(B)], [[_p(A, 0.9)], []])
    hand = result.per_class["hand"]
    assert hand.ap == pytest.approx(0.5)
    assert hand.recall[-1] == 0.5


def test_iou_exactly_at_threshold_matches() -> None:
    # in pixels: 10x10 object, 10x5 box inside it -> IoU = 50 / 100 = 0.5 exactly
    gts, preds = [_gt((0, 0, 10, 10))], [[_p((0, 0, 10, 5), 0.9)]]
    assert _ap(gts, preds, iou_threshold=0.5) == 1.0
    assert _ap(gts, preds, iou_threshold=0.51) == 0.0
    # one pixel narrower: IoU 0.4 misses at 0.5
    assert _ap(gts, [[_p((0, 0, 10, 4), 0.9)]]) == 0.0


def test_normalized_and_pixel_boxes_agree() -> None:
    def scaled(box: Box) -> Box:
        return (box[0] * 480, box[1] * 640, box[2] * 480, box[3] * 640)

    shifted: Box = (0.12, 0.1, 0.32, 0.33)
    normalized = _ap([_gt(A, B)], [[_p(shifted, 0.9), _p(ELSEWHERE, 0.5)]])
    pixels = _ap(
        [_gt(scaled(A), scaled(B))], [[_p(scaled(shifted), 0.9), _p(scaled(ELSEWHERE), 0.5)]]
    )
    assert normalized == pixels == pytest.approx(0.5)


def test_empty_predictions_score_zero() -> None:
    result = average_precision([_gt(A), _gt(B)], [[], []])
    assert result.per_class["hand"].ap == 0.0
    assert result.mean_ap == 0.0


def test_class_without_ground_truth_is_excluded_from_mean() -> None:
    gts = [_gt(A, label="fist")]
    preds = [[_p(A, 0.9, "fist"), _p(B, 0.8, "palm")]]
    result = average_precision(gts, preds)
    assert result.per_class["palm"].ap is None
    assert result.per_class["palm"].fp == 1
    assert result.mean_ap == 1.0


def test_no_ground_truth_at_all_has_no_mean() -> None:
    assert average_precision([[]], [[_p(A, 0.9)]]).mean_ap is None


def test_difficult_objects_neither_count_nor_penalise() -> None:
    gts = [[GroundTruth("hand", A), GroundTruth("hand", B, difficult=True)]]
    result = average_precision(gts, [[_p(B, 0.95), _p(A, 0.9)]])
    hand = result.per_class["hand"]
    assert (hand.ap, hand.n_gt, hand.n_difficult, hand.tp, hand.fp) == (1.0, 1, 1, 1, 0)


def test_class_agnostic_ignores_labels() -> None:
    gts = [[GroundTruth("fist", A), GroundTruth("palm", B)]]
    preds = [[_p(A, 0.9, "palm"), _p(B, 0.8, "fist")]]
    assert average_precision(gts, preds).mean_ap == 0.0
    agnostic = average_precision(gts, preds, class_agnostic=True)
    assert list(agnostic.per_class) == [AGNOSTIC_LABEL]
    assert agnostic.mean_ap == 1.0


def test_classes_fix_order_and_report_unseen_ones() -> None:
    result = average_precision([_gt(A, label="b")], [[]], classes=["c", "b", "a"])
    assert list(result.per_class) == ["c", "b", "a"]
    assert result.mean_ap == 0.0  # only "b" has ground truth
    with pytest.raises(ValueError, match="labels not in classes: x"):
        average_precision([_gt(A, label="x")], [[]], classes=["a"])


def test_worker_detections_are_accepted() -> None:
    detections = [Detection(label="hand", class_id=1, score=0.9, box=A)]
    assert average_precision([_gt(A)], [detections]).mean_ap == 1.0


@pytest.mark.parametrize(
    ("gts", "preds", "message"),
    [
        ([[]], [[], []], "1 images but predictions have 2"),
        ([_gt((0.5, 0, 0.1, 1))], [[]], "min <= max"),
        ([[]], [[_p((0, 0, float("nan"), 1), 0.5)]], "finite"),
        ([[]], [[_p(A, float("nan"))]], "score is nan"),
    ],
)
def test_bad_input_is_refused_clearly(
    gts: list[list[GroundTruth]], preds: list[list[Prediction]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        average_precision(gts, preds)


def test_voc_annotation_becomes_normalized_ground_truth() -> None:
    annotation = Annotation(
        xml_path=Path("a.xml"),
        image_path=Path("a.jpg"),
        width=200,
        height=100,
        boxes=(VocBox("hand", xmin=20, ymin=10, xmax=100, ymax=50),),
        group="",
    )
    assert ground_truth_from_annotation(annotation) == [GroundTruth("hand", (0.1, 0.1, 0.5, 0.5))]


# --- cross-check against a brute-force reference ---------------------------------------


def _py_iou(a: Box, b: Box) -> float:
    inter_h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_h * inter_w
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference_ap(
    gts: list[list[GroundTruth]], preds: list[list[Prediction]], label: str, threshold: float
) -> tuple[float | None, int, int]:
    """VOC AP the long way: walk the ranked predictions with explicit loops, then sum,
    over each true positive's rank k, the best precision at any rank >= k, divided by
    the number of objects (each true positive adds 1/n to recall)."""
    ranked = sorted(
        ((p.score, image, p.box) for image, ps in enumerate(preds) for p in ps if p.label == label),
        key=lambda t: t[0],
        reverse=True,
    )
    taken: set[tuple[int, int]] = set()
    outcomes: list[bool] = []
    for _, image, box in ranked:
        best, best_iou = -1, -1.0
        for j, g in enumerate(gts[image]):
            if g.label == label and _py_iou(box, g.box) > best_iou:
                best, best_iou = j, _py_iou(box, g.box)
        if best >= 0 and best_iou >= threshold:
            if gts[image][best].difficult:
                continue
            outcomes.append((image, best) not in taken)
            taken.add((image, best))
        else:
            outcomes.append(False)
    n = sum(1 for gs in gts for g in gs if g.label == label and not g.difficult)
    precisions = []
    for k in range(len(outcomes)):
        precisions.append(sum(outcomes[: k + 1]) / (k + 1))
    total = 0.0
    for k, hit in enumerate(outcomes):
        if hit:
            total += max(precisions[k:])
    tp = sum(outcomes)
    return (total / n if n else None), tp, len(outcomes) - tp


def _jitter(rng: random.Random, box: Box, amount: float) -> Box:
    y0, x0, y1, x1 = (v + rng.uniform(-amount, amount) for v in box)
    return (min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1))


@pytest.mark.parametrize("seed", range(8))
def test_ap_matches_brute_force_reference(seed: int) -> None:
    rng = random.Random(seed)
    labels = ["fist", "palm", "like"]
    gts: list[list[GroundTruth]] = []
    preds: list[list[Prediction]] = []
    for _ in range(25):
        image_gts = []
        for _ in range(rng.randint(0, 4)):
            y, x, s = rng.uniform(0, 0.7), rng.uniform(0, 0.7), rng.uniform(0.05, 0.3)
            box = (y, x, y + s, x + s)
            image_gts.append(GroundTruth(rng.choice(labels), box, difficult=rng.random() < 0.1))
        image_preds = []
        for g in image_gts:
            # found, found twice, found with the wrong label, or missed
            for _ in range(rng.choice([0, 1, 1, 1, 2])):
                label = g.label if rng.random() < 0.8 else rng.choice(labels)
                image_preds.append(Prediction(label, rng.random(), _jitter(rng, g.box, 0.06)))
        for _ in range(rng.randint(0, 2)):
            y, x = rng.uniform(0, 0.8), rng.uniform(0, 0.8)
            image_preds.append(
                Prediction(rng.choice(labels), rng.random(), (y, x, y + 0.2, x + 0.2))
            )
        gts.append(image_gts)
        preds.append(image_preds)

    for threshold in (0.3, 0.5, 0.75):
        result = average_precision(gts, preds, iou_threshold=threshold)
        for label in labels:
            ap, tp, fp = _reference_ap(gts, preds, label, threshold)
            got = result.per_class[label]
            assert (got.tp, got.fp) == (tp, fp)
            if ap is None:
                assert got.ap is None
            else:
                assert got.ap == pytest.approx(ap, abs=1e-12)
    # the random data is not degenerate: both misses and hits happened
    mean_ap = average_precision(gts, preds).mean_ap
    assert mean_ap is not None and 0.0 < mean_ap < 1.0


# --- classification --------------------------------------------------------------------


def test_classification_report_counts_and_scores() -> None:
    true = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    report = classification_report(true, pred, ["a", "b", "c"])
    assert report.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert report.accuracy == pytest.approx(3 / 5)
    a, b, c = (report.per_class[k] for k in "abc")
    assert (a.precision, a.recall, a.f1, a.support) == pytest.approx((0.5, 0.5, 0.5, 2))
    assert (b.precision, b.recall, b.f1, b.support) == pytest.approx((2 / 3, 1.0, 0.8, 2))
    # "c" is never predicted: precision 0 by convention, not NaN
    assert (c.precision, c.recall, c.f1, c.support) == (0.0, 0.0, 0.0, 1)
    assert report.macro_f1 == pytest.approx((0.5 + 0.8 + 0.0) / 3)


@pytest.mark.parametrize(
    ("true", "pred", "labels", "message"),
    [
        (["a"], ["a", "b"], ["a", "b"], "1 true labels but 2"),
        ([], [], ["a"], "no samples"),
        (["a"], ["z"], ["a"], "not in the label order: z"),
        (["a"], ["a"], ["a", "a"], "unique"),
    ],
)
def test_classification_bad_input_is_refused(
    true: list[str], pred: list[str], labels: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        classification_report(true, pred, labels)


# --- charts and reports ----------------------------------------------------------------


def _gesture_results() -> tuple[DetectionResult, ClassificationResult]:
    rng = random.Random(0)
    true = [rng.choice(GESTURES) for _ in range(300)]
    pred = [t if rng.random() < 0.8 else rng.choice(GESTURES) for t in true]
    classification = classification_report(true, pred, GESTURES)
    gts = [[GroundTruth(label, A)] for label in true[:60]]
    preds = [
        [Prediction(p, rng.random(), A), Prediction(rng.choice(GESTURES), 0.3 * rng.random(), B)]
        for p in pred[:60]
    ]
    detection = average_precision(gts, preds, classes=GESTURES)
    return detection, classification


def _png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.load()
        return image.size


def test_charts_are_pngs_sized_for_thirteen_classes(tmp_path: Path) -> None:
    detection, classification = _gesture_results()
    pr = plot_precision_recall(detection, tmp_path / "pr.png")
    cm = plot_confusion_matrix(classification, tmp_path / "nested" / "cm.png")
    assert _png_size(pr)[0] >= 800
    width, height = _png_size(cm)
    assert width >= 900 and height >= 900


def test_report_writes_json_markdown_and_charts(tmp_path: Path) -> None:
    detection, classification = _gesture_results()
    files = write_report(
        tmp_path / "report",
        detection=detection,
        classification=classification,
        metadata={"model": "gestures-v1", "dataset": Path("hands/test"), "command": "a | b"},
    )
    data = json.loads(files.json.read_text())
    assert set(data) == {"schema", "metadata", "detection", "classification", "charts"}
    assert data["metadata"]["dataset"] == "hands/test" and "date" in data["metadata"]
    assert set(data["detection"]) == {"iou_threshold", "class_agnostic", "mean_ap", "per_class"}
    assert list(data["detection"]["per_class"]) == GESTURES
    assert set(data["detection"]["per_class"]["fist"]) == {
        "ap", "n_gt", "n_difficult", "tp", "fp", "recall",
    }  # fmt: skip
    assert data["detection"]["mean_ap"] == pytest.approx(detection.mean_ap)
    assert data["classification"]["accuracy"] == pytest.approx(classification.accuracy)
    assert len(data["classification"]["confusion_matrix"]) == 13
    assert sum(map(sum, data["classification"]["confusion_matrix"])) == 300
    for name in data["charts"].values():
        _png_size(files.json.parent / name)

    markdown = files.markdown.read_text()
    assert "| class | AP | GT | TP | FP | max recall |" in markdown
    assert "| class | precision | recall | F1 | support |" in markdown
    assert "a \\| b" in markdown  # a pipe in metadata does not break the table
    assert "![confusion matrix](confusion_matrix.png)" in markdown


def test_report_with_classification_only_has_null_detection(tmp_path: Path) -> None:
    classification = classification_report(["a", "b"], ["a", "a"], ["a", "b"])
    files = write_report(tmp_path, classification=classification, charts=False)
    data = json.loads(files.json.read_text())
    assert data["detection"] is None and data["charts"] == {}
    assert files.charts == ()
    assert "## Detection" not in files.markdown.read_text()


def test_report_needs_a_result(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to report"):
        write_report(tmp_path)


def test_pr_chart_draws_a_class_nothing_was_predicted_for(tmp_path: Path) -> None:
    truth = [
        [GroundTruth("fist", (0.1, 0.1, 0.5, 0.5))],
        [GroundTruth("palm", (0.1, 0.1, 0.5, 0.5))],
    ]
    predictions = [[Prediction("fist", 0.9, (0.1, 0.1, 0.5, 0.5))], []]
    result = average_precision(truth, predictions)
    assert result.per_class["palm"].ap == 0.0
    path = plot_precision_recall(result, tmp_path / "pr.png")
    assert path.read_bytes().startswith(b"\x89PNG")
