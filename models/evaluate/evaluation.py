"""Evaluation of detectors and classifiers: Pascal VOC average precision, a
classification report, their charts, and a JSON + Markdown report.

Pure NumPy; matplotlib is imported inside the chart functions (it is the optional
``models`` extra). No TensorFlow: the metrics run on any model's outputs.

Boxes are ``(ymin, xmin, ymax, xmax)`` like :class:`worker.detector.Detection`, either
normalized or in pixels as long as ground truth and predictions agree: IoU does not
depend on the unit. Areas are continuous (no VOC devkit ``+1`` pixel).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from models.dataset.voc import Annotation

Box = tuple[float, float, float, float]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

AGNOSTIC_LABEL: Final = "object"
"""The one class of a class-agnostic evaluation."""

METRICS_JSON: Final = "metrics.json"
METRICS_MD: Final = "metrics.md"
PR_CHART: Final = "precision_recall.png"
CONFUSION_CHART: Final = "confusion_matrix.png"
SCHEMA_VERSION: Final = 1


class ScoredBox(Protocol):
    """A prediction; :class:`worker.detector.Detection` is one."""

    @property
    def label(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def box(self) -> Box: ...


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """One annotated object. A ``difficult`` one neither counts towards recall nor
    makes a detection of it a false positive (VOC)."""

    label: str
    box: Box
    difficult: bool = False


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    score: float
    box: Box


@dataclass(frozen=True, eq=False)
class ClassAP:
    """Average precision of one class. ``precision``, ``recall`` and ``scores`` have one
    entry per counted prediction (those matched to a difficult object are left out),
    highest score first."""

    label: str
    ap: float | None
    """``None`` when the class has no (non-difficult) ground truth."""
    n_gt: int
    n_difficult: int
    tp: int
    fp: int
    precision: FloatArray
    recall: FloatArray
    scores: FloatArray


@dataclass(frozen=True, eq=False)
class DetectionResult:
    iou_threshold: float
    class_agnostic: bool
    per_class: dict[str, ClassAP]
    mean_ap: float | None
    """Mean AP over the classes with ground truth; ``None`` when there are none."""


@dataclass(frozen=True, slots=True)
class ClassScores:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, eq=False)
class ClassificationResult:
    labels: tuple[str, ...]
    confusion: IntArray
    """Counts, rows = true label, columns = predicted label, in ``labels`` order."""
    accuracy: float
    per_class: dict[str, ClassScores]
    macro_precision: float
    macro_recall: float
    macro_f1: float

    @property
    def n_samples(self) -> int:
        return int(self.confusion.sum())


@dataclass(frozen=True, slots=True)
class ReportFiles:
    json: Path
    markdown: Path
    charts: tuple[Path, ...]


# --- detection -------------------------------------------------------------------------


def ground_truth_from_annotation(annotation: Annotation) -> list[GroundTruth]:
    """The boxes of a VOC annotation as normalized ``(ymin, xmin, ymax, xmax)``."""
    w, h = annotation.width, annotation.height
    return [
        GroundTruth(b.label, (b.ymin / h, b.xmin / w, b.ymax / h, b.xmax / w))
        for b in annotation.boxes
    ]


def _check_box(box: Box, where: str) -> None:
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise ValueError(f"{where}: box must be 4 finite numbers, got {box!r}")
    ymin, xmin, ymax, xmax = box
    if ymin > ymax or xmin > xmax:
        raise ValueError(f"{where}: box must be (ymin, xmin, ymax, xmax) with min <= max: {box}")


def iou(box: Box, others: FloatArray) -> FloatArray:
    """IoU of ``box`` with each row of ``others`` (shape ``[n, 4]``)."""
    ymin = np.maximum(box[0], others[:, 0])
    xmin = np.maximum(box[1], others[:, 1])
    ymax = np.minimum(box[2], others[:, 2])
    xmax = np.minimum(box[3], others[:, 3])
    inter = np.clip(ymax - ymin, 0, None) * np.clip(xmax - xmin, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    # Two zero-area boxes have no overlap to speak of, not NaN.
    iou: FloatArray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou


def _voc_ap(precision: FloatArray, recall: FloatArray) -> float:
    """All-point interpolated AP (VOC2010+): area under the precision envelope, where
    precision at recall r is the best precision at any recall >= r."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _class_ap(
    label: str,
    truths: list[list[GroundTruth]],
    preds: list[tuple[float, int, Box]],
    iou_threshold: float,
) -> ClassAP:
    gt_boxes = [np.array([g.box for g in gts], dtype=np.float64).reshape(-1, 4) for gts in truths]
    difficult = [np.array([g.difficult for g in gts], dtype=bool) for gts in truths]
    matched = [np.zeros(len(gts), dtype=bool) for gts in truths]
    n_difficult = sum(int(d.sum()) for d in difficult)
    n_gt = sum(len(gts) for gts in truths) - n_difficult

    # Highest score first; a stable sort keeps input order among equal scores.
    order = sorted(range(len(preds)), key=lambda i: -preds[i][0])
    is_tp: list[bool] = []
    scores: list[float] = []
    for i in order:
        score, image, box = preds[i]
        if len(gt_boxes[image]):
            overlaps = iou(box, gt_boxes[image])
            best = int(np.argmax(overlaps))
            # VOC devkit (VOCevaldet.m): the best-overlapping object only, ">=" threshold;
            # a second hit on an already matched object is a false positive.
            if overlaps[best] >= iou_threshold:
                if difficult[image][best]:
                    continue
                is_tp.append(not matched[image][best])
                matched[image][best] = True
                scores.append(score)
                continue
        is_tp.append(False)
        scores.append(score)

    tp = np.cumsum(np.array(is_tp, dtype=np.float64))
    fp = np.cumsum(~np.array(is_tp, dtype=bool)).astype(np.float64)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    recall = tp / n_gt if n_gt else np.zeros_like(tp)
    n_tp = int(tp[-1]) if len(tp) else 0
    return ClassAP(
        label=label,
        ap=_voc_ap(precision, recall) if n_gt else None,
        n_gt=n_gt,
        n_difficult=n_difficult,
        tp=n_tp,
        fp=len(is_tp) - n_tp,
        precision=precision,
        recall=recall,
        scores=np.array(scores, dtype=np.float64),
    )


def average_precision(
    ground_truth: Sequence[Sequence[GroundTruth]],
    predictions: Sequence[Sequence[ScoredBox]],
    *,
    iou_threshold: float = 0.5,
    class_agnostic: bool = False,
    classes: Sequence[str] | None = None,
) -> DetectionResult:
    """Pascal VOC average precision per class and its mean.

    ``ground_truth[i]`` and ``predictions[i]`` belong to the same image i. Predictions
    of a class are ranked by score over all images; each is a true positive when its
    best-overlapping object of that class in its image has IoU >= ``iou_threshold`` and
    was not matched before. ``class_agnostic`` evaluates every box as one class,
    :data:`AGNOSTIC_LABEL`. ``classes`` fixes the classes reported and their order
    (any other label is an error); by default, every label seen, sorted.
    """
    if len(ground_truth) != len(predictions):
        raise ValueError(
            f"ground truth has {len(ground_truth)} images but predictions have "
            f"{len(predictions)}; pass one (possibly empty) list per image to each"
        )
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")

    def label_of(label: str) -> str:
        return AGNOSTIC_LABEL if class_agnostic else label

    seen: set[str] = set()
    for i, (gts, scored) in enumerate(zip(ground_truth, predictions, strict=True)):
        for g in gts:
            _check_box(g.box, f"image {i} ground truth {g.label!r}")
            seen.add(label_of(g.label))
        for p in scored:
            _check_box(p.box, f"image {i} prediction {p.label!r}")
            if not math.isfinite(p.score):
                raise ValueError(f"image {i} prediction {p.label!r}: score is {p.score}")
            seen.add(label_of(p.label))
    if classes is None or class_agnostic:
        labels = [AGNOSTIC_LABEL] if class_agnostic else sorted(seen)
    else:
        labels = list(classes)
        unknown = sorted(seen - set(labels))
        if unknown:
            raise ValueError(f"labels not in classes: {', '.join(unknown)}")

    per_class: dict[str, ClassAP] = {}
    for label in labels:
        truths = [[g for g in gts if label_of(g.label) == label] for gts in ground_truth]
        preds = [
            (float(p.score), i, p.box)
            for i, image_preds in enumerate(predictions)
            for p in image_preds
            if label_of(p.label) == label
        ]
        per_class[label] = _class_ap(label, truths, preds, iou_threshold)
    aps = [c.ap for c in per_class.values() if c.ap is not None]
    return DetectionResult(
        iou_threshold=iou_threshold,
        class_agnostic=class_agnostic,
        per_class=per_class,
        mean_ap=float(np.mean(aps)) if aps else None,
    )


# --- classification --------------------------------------------------------------------


def classification_report(
    true: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> ClassificationResult:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix, in ``labels``
    order. A ratio with a zero denominator (a class never predicted, or never true) is 0,
    as in scikit-learn."""
    if len(true) != len(predicted):
        raise ValueError(f"{len(true)} true labels but {len(predicted)} predictions")
    if not true:
        raise ValueError("no samples to evaluate")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique: {list(labels)}")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(true).union(predicted) - index.keys())
    if unknown:
        raise ValueError(f"labels not in the label order: {', '.join(unknown)}")

    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(confusion, ([index[t] for t in true], [index[p] for p in predicted]), 1)
    hits = np.diag(confusion).astype(np.float64)
    predicted_n = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = np.divide(hits, predicted_n, out=np.zeros_like(hits), where=predicted_n > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    per_class = {
        label: ClassScores(
            label, float(precision[i]), float(recall[i]), float(f1[i]), int(support[i])
        )
        for i, label in enumerate(labels)
    }
    return ClassificationResult(
        labels=tuple(labels),
        confusion=confusion,
        accuracy=float(hits.sum() / len(true)),
        per_class=per_class,
        macro_precision=float(precision.mean()),
        macro_recall=float(recall.mean()),
        macro_f1=float(f1.mean()),
    )


# --- charts ----------------------------------------------------------------------------


def _envelope_at(c: ClassAP, grid: FloatArray) -> FloatArray:
    """Interpolated precision (best precision at recall >= r) at each r of ``grid``."""
    best = np.maximum.accumulate(np.concatenate((c.precision, [0.0]))[::-1])[::-1]
    return best[np.searchsorted(c.recall, grid, side="left")]


def plot_precision_recall(
    result: DetectionResult, path: Path | str, *, title: str | None = None
) -> Path:
    """One precision-recall curve per class with ground truth (interpolated precision,
    VOC style), AP in the legend, and the mean over classes as a thick line labelled
    with the mAP."""
    from matplotlib.figure import Figure

    path = Path(path)
    curves = [c for c in result.per_class.values() if c.ap is not None]
    figure = Figure(figsize=(8.5 if len(curves) > 1 else 6.0, 5.5))
    axes = figure.add_subplot()
    colours = _palette(len(curves))
    for colour, c in zip(colours, curves, strict=True):
        # The interpolated (monotone) precision as steps: the area under it is the AP,
        # and 13 raw saw-tooth curves on one chart are unreadable.
        # A class nothing was predicted for still gets its legend entry (AP 0).
        precision = c.precision if len(c.precision) else np.zeros(1)
        recall = c.recall if len(c.recall) else np.zeros(1)
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        axes.plot(
            np.concatenate(([0.0], recall)),
            np.concatenate((envelope[:1], envelope)),
            drawstyle="steps-pre",
            color=colour,
            linewidth=1.2,
            label=f"{c.label} (AP {c.ap:.3f})",
        )
    if len(curves) > 1 and result.mean_ap is not None:
        grid = np.linspace(0.0, 1.0, 101)
        mean = np.mean([_envelope_at(c, grid) for c in curves], axis=0)
        axes.plot(
            grid, mean, color="black", linewidth=2.5, label=f"mean (mAP {result.mean_ap:.3f})"
        )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.grid(alpha=0.3)
    axes.set_title(title or f"Precision-recall, IoU ≥ {result.iou_threshold:g}")
    if curves:
        outside = len(curves) > 1
        axes.legend(
            fontsize=8,
            loc="upper left" if outside else "lower left",
            bbox_to_anchor=(1.02, 1.0) if outside else None,
        )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def plot_confusion_matrix(
    result: ClassificationResult, path: Path | str, *, title: str = "Confusion matrix"
) -> Path:
    """A heatmap of the row-normalized confusion matrix (each true label's share of
    predictions) with the raw counts written in each non-empty cell."""
    from matplotlib.figure import Figure

    path = Path(path)
    n = len(result.labels)
    counts = result.confusion
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    side = max(4.5, 0.55 * n + 2.5)
    figure = Figure(figsize=(side + 1.0, side))
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of true label")
    fontsize = 9 if n <= 10 else 8
    for t in range(n):
        for p in range(n):
            if counts[t, p]:
                colour = "white" if shares[t, p] > 0.5 else "black"
                axes.text(
                    p,
                    t,
                    str(counts[t, p]),
                    ha="center",
                    va="center",
                    color=colour,
                    fontsize=fontsize,
                )
    axes.set_xticks(range(n), result.labels, rotation=45, ha="right")
    axes.set_yticks(range(n), result.labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"{title} (accuracy {result.accuracy:.3f}, n={result.n_samples})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# --- reports ---------------------------------------------------------------------------


def detection_to_dict(result: DetectionResult) -> dict[str, Any]:
    return {
        "iou_threshold": result.iou_threshold,
        "class_agnostic": result.class_agnostic,
        "mean_ap": result.mean_ap,
        "per_class": {
            c.label: {
                "ap": c.ap,
                "n_gt": c.n_gt,
                "n_difficult": c.n_difficult,
                "tp": c.tp,
                "fp": c.fp,
                "recall": float(c.recall[-1]) if len(c.recall) else 0.0,
            }
            for c in result.per_class.values()
        },
    }


def classification_to_dict(result: ClassificationResult) -> dict[str, Any]:
    return {
        "labels": list(result.labels),
        "n_samples": result.n_samples,
        "accuracy": result.accuracy,
        "macro_precision": result.macro_precision,
        "macro_recall": result.macro_recall,
        "macro_f1": result.macro_f1,
        "per_class": {
            s.label: {
                "precision": s.precision,
                "recall": s.recall,
                "f1": s.f1,
                "support": s.support,
            }
            for s in result.per_class.values()
        },
        "confusion_matrix": result.confusion.tolist(),
    }


def _cell(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _markdown(
    metadata: Mapping[str, object],
    detection: DetectionResult | None,
    classification: ClassificationResult | None,
    charts: Mapping[str, Path],
) -> str:
    lines = ["# Evaluation report", ""]
    lines += _table(["", ""], [(f"**{k}**", v) for k, v in metadata.items()])
    if detection is not None:
        iou = f"{detection.iou_threshold:g}"
        kind = ", class-agnostic" if detection.class_agnostic else ""
        lines += [f"## Detection (VOC AP, IoU ≥ {iou}{kind})", ""]
        lines += [f"**mAP@{iou}: {_cell(detection.mean_ap)}**", ""]
        ap_rows = [
            (a.label, a.ap, a.n_gt, a.tp, a.fp, float(a.recall[-1]) if len(a.recall) else 0.0)
            for a in detection.per_class.values()
        ]
        lines += _table(["class", "AP", "GT", "TP", "FP", "max recall"], ap_rows)
        if "precision_recall" in charts:
            lines += [f"![precision-recall]({charts['precision_recall'].name})", ""]
    if classification is not None:
        c = classification
        lines += ["## Classification", ""]
        lines += [f"**accuracy: {c.accuracy:.4f}** on {c.n_samples} samples", ""]
        rows = [(s.label, s.precision, s.recall, s.f1, s.support) for s in c.per_class.values()]
        rows.append(("*macro*", c.macro_precision, c.macro_recall, c.macro_f1, c.n_samples))
        lines += _table(["class", "precision", "recall", "F1", "support"], rows)
        lines += ["Confusion matrix (rows: true, columns: predicted)", ""]
        matrix = [(label, *c.confusion[i].tolist()) for i, label in enumerate(c.labels)]
        lines += _table(["true \\ predicted", *c.labels], matrix)
        if "confusion_matrix" in charts:
            lines += [f"![confusion matrix]({charts['confusion_matrix'].name})", ""]
    return "\n".join(lines)


def write_report(
    directory: Path | str,
    *,
    detection: DetectionResult | None = None,
    classification: ClassificationResult | None = None,
    metadata: Mapping[str, object] | None = None,
    charts: bool = True,
) -> ReportFiles:
    """Write ``metrics.json``, ``metrics.md`` and (with ``charts``) the PNG charts of
    the given results into ``directory``.

    The JSON always has the keys ``schema``, ``metadata``, ``detection`` and
    ``classification`` (``null`` for a result not given). ``metadata`` is free-form
    (model, dataset, command line…); values JSON cannot hold are written as strings,
    and a ``date`` (UTC, ISO 8601) is added unless given.
    """
    if detection is None and classification is None:
        raise ValueError("nothing to report: pass a detection and/or a classification result")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(metadata or {})
    meta.setdefault("date", datetime.now(UTC).isoformat(timespec="seconds"))

    written: dict[str, Path] = {}
    if charts and detection is not None:
        written["precision_recall"] = plot_precision_recall(detection, directory / PR_CHART)
    if charts and classification is not None:
        written["confusion_matrix"] = plot_confusion_matrix(
            classification, directory / CONFUSION_CHART
        )
    document = {
        "schema": SCHEMA_VERSION,
        "metadata": meta,
        "detection": None if detection is None else detection_to_dict(detection),
        "classification": (
            None if classification is None else classification_to_dict(classification)
        ),
        "charts": {name: p.name for name, p in written.items()},
    }
    json_path = directory / METRICS_JSON
    # allow_nan=False: a NaN would make the file unreadable to strict JSON parsers.
    json_path.write_text(json.dumps(document, indent=2, default=str, allow_nan=False) + "\n")
    md_path = directory / METRICS_MD
    md_path.write_text(_markdown(meta, detection, classification, written))
    return ReportFiles(json=json_path, markdown=md_path, charts=tuple(written.values()))
