"""Pascal VOC annotations as written by LabelImg: read a folder into typed records and
validate them.

Reading never raises on bad data: every problem becomes an :class:`Issue` naming the
file, so one broken annotation among thousands is reported instead of aborting a
training run. ``strict=True`` (or :meth:`VocDataset.raise_for_issues`) turns errors
into a :class:`DatasetError` for callers that must not go on.

No TensorFlow here: this module must stay importable by tooling that only inspects data.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# A LabelImg file for a frame with a dozen boxes is ~3 kB; anything near this limit is
# not an annotation, and refusing it keeps a stray huge file from exhausting memory.
MAX_XML_BYTES = 1_000_000

LabelPolicy = Callable[[str], str | None]
"""Maps a raw label to its canonical form, or ``None`` when the label is unknown."""


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class Problem(StrEnum):
    """What is wrong; stable names so reports can be grouped and tests can match them."""

    XML_TOO_LARGE = "xml-too-large"
    XML_UNREADABLE = "xml-unreadable"
    NOT_VOC = "not-voc"
    IMAGE_MISSING = "image-missing"
    IMAGE_UNREADABLE = "image-unreadable"
    SIZE_MISSING = "size-missing"
    SIZE_MISMATCH = "size-mismatch"
    BOX_MALFORMED = "box-malformed"
    BOX_DEGENERATE = "box-degenerate"
    BOX_OUTSIDE = "box-outside-image"
    LABEL_UNKNOWN = "label-unknown"
    NO_BOXES = "no-boxes"
    IMAGE_UNANNOTATED = "image-unannotated"


# Warnings keep the record (an empty frame is a valid negative; a box a few pixels past
# the border is clipped); any error drops the whole record.
_WARNINGS = frozenset({Problem.NO_BOXES, Problem.BOX_OUTSIDE, Problem.IMAGE_UNANNOTATED})


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in one file."""

    path: Path
    problem: Problem
    detail: str

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self.problem in _WARNINGS else Severity.ERROR

    def __str__(self) -> str:
        return f"{self.path}: {self.severity} {self.problem}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in pixel coordinates of the image (LabelImg's convention:
    ``xmin < xmax <= width``, ``ymin < ymax <= height``)."""

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    raw_label: str = ""
    """The label as typed in the XML, before normalisation."""

    @property
    def area(self) -> float:
        return (self.xmax - self.xmin) * (self.ymax - self.ymin)


@dataclass(frozen=True, slots=True)
class Annotation:
    """One annotated image."""

    xml_path: Path
    image_path: Path
    width: int
    height: int
    boxes: tuple[Box, ...]
    group: str
    """The folder the XML sits in, relative to the dataset root (``""`` for the root):
    the person in ``signs/``, the split in ``hands/``. Group splits hold these out."""

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(box.label for box in self.boxes)

    def relabel(self, label_of: Callable[[str], str]) -> Annotation:
        """A copy with every box label mapped through ``label_of``."""
        boxes = tuple(replace(box, label=label_of(box.label)) for box in self.boxes)
        return replace(self, boxes=boxes)


class DatasetError(Exception):
    """A dataset read in strict mode had errors; ``issues`` lists them."""

    def __init__(self, root: Path, issues: list[Issue]) -> None:
        self.root = root
        self.issues = issues
        shown = "\n".join(f"  {issue}" for issue in issues[:20])
        more = f"\n  … and {len(issues) - 20} more" if len(issues) > 20 else ""
        super().__init__(f"{root}: {len(issues)} dataset error(s)\n{shown}{more}")


@dataclass(slots=True)
class VocDataset:
    """The valid records of a folder plus every issue found while reading it."""

    root: Path
    annotations: list[Annotation] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity is Severity.ERROR]

    def raise_for_issues(self) -> None:
        """Raise :class:`DatasetError` if any error (not warning) was found."""
        if self.errors:
            raise DatasetError(self.root, self.errors)

    def label_counts(self) -> Counter[str]:
        """Boxes per label over the valid records."""
        return count_labels(self.annotations)

    def class_agnostic(self, label: str = "hand") -> list[Annotation]:
        """The records with every box relabelled ``label`` (detector training)."""
        return [a.relabel(lambda _: label) for a in self.annotations]


def count_labels(annotations: Iterable[Annotation]) -> Counter[str]:
    """Boxes per label."""
    return Counter(box.label for a in annotations for box in a.boxes)


def read_voc_dir(
    root: Path | str,
    *,
    labels: Collection[str] | LabelPolicy | None = None,
    check_images: bool = True,
    strict: bool = False,
    max_xml_bytes: int = MAX_XML_BYTES,
) -> VocDataset:
    """Read every ``*.xml`` under ``root`` (recursively) with the image next to it.

    ``labels`` is either the set of accepted labels or a policy that maps a raw label to
    its canonical form (``None`` = unknown); ``None`` accepts every label as typed.
    With ``check_images`` each image's header is read (not its pixels) to compare its
    real size with the XML's and to clip boxes against it. Images without an XML are
    reported as warnings. ``strict`` raises :class:`DatasetError` when errors were found.
    """
    root = Path(root)
    policy = _as_policy(labels)
    dataset = VocDataset(root=root)
    xml_paths = sorted(root.rglob("*.xml"))
    annotated_stems = set()
    for xml_path in xml_paths:
        annotated_stems.add(xml_path.with_suffix(""))
        record, issues = _read_one(root, xml_path, policy, check_images, max_xml_bytes)
        dataset.issues.extend(issues)
        if record is not None:
            dataset.annotations.append(record)
    for image_path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if image_path.with_suffix("") not in annotated_stems:
            dataset.issues.append(
                Issue(image_path, Problem.IMAGE_UNANNOTATED, "no XML annotation next to it")
            )
    if strict:
        dataset.raise_for_issues()
    return dataset


def format_report(dataset: VocDataset) -> str:
    """A human-readable summary: record and box counts, boxes per label, issues."""
    counts = dataset.label_counts()
    boxes = sum(counts.values())
    lines = [
        f"{dataset.root}: {len(dataset.annotations)} annotated images, {boxes} boxes, "
        f"{len(dataset.errors)} error(s), {len(dataset.issues) - len(dataset.errors)} "
        "warning(s)",
    ]
    lines += [f"  {label}: {n}" for label, n in sorted(counts.items())]
    by_problem = Counter(issue.problem for issue in dataset.issues)
    if by_problem:
        lines.append("issues by problem:")
        lines += [f"  {problem}: {n}" for problem, n in sorted(by_problem.items())]
        lines.append("issues:")
        lines += [f"  {issue}" for issue in dataset.issues]
    return "\n".join(lines)


def _as_policy(labels: Collection[str] | LabelPolicy | None) -> LabelPolicy:
    if labels is None:
        return lambda raw: raw
    if callable(labels):
        return labels
    accepted = frozenset(labels)
    return lambda raw: raw if raw in accepted else None


def _read_one(
    root: Path, xml_path: Path, policy: LabelPolicy, check_images: bool, max_bytes: int
) -> tuple[Annotation | None, list[Issue]]:
    issues: list[Issue] = []
    try:
        size = xml_path.stat().st_size
        if size > max_bytes:
            return None, [Issue(xml_path, Problem.XML_TOO_LARGE, f"{size} bytes > {max_bytes}")]
        # expat (Python ≥ 3.11 bundles ≥ 2.4) refuses entity-expansion bombs itself.
        tree = ET.parse(xml_path)
    except (OSError, ET.ParseError) as exc:
        return None, [Issue(xml_path, Problem.XML_UNREADABLE, str(exc))]
    node = tree.getroot()
    if node.tag != "annotation":
        return None, [Issue(xml_path, Problem.NOT_VOC, f"root element <{node.tag}>")]

    image_path = _find_image(xml_path, node.findtext("filename"))
    if image_path is None:
        named = node.findtext("filename") or "(no <filename>)"
        return None, [Issue(xml_path, Problem.IMAGE_MISSING, f"no image for {named!r}")]

    declared = _declared_size(node)
    width_height = declared
    if check_images:
        try:
            # Image.open reads the header only; pixels are never decoded here.
            with Image.open(image_path) as image:
                real = image.size
        except (OSError, UnidentifiedImageError) as exc:
            return None, [Issue(image_path, Problem.IMAGE_UNREADABLE, str(exc))]
        if declared is not None and declared != real:
            # Boxes were drawn on an image of another size: rescaling would be a guess.
            return None, [
                Issue(
                    xml_path,
                    Problem.SIZE_MISMATCH,
                    f"XML says {declared[0]}x{declared[1]}, {image_path.name} is "
                    f"{real[0]}x{real[1]}",
                )
            ]
        width_height = real
    if width_height is None:
        return None, [Issue(xml_path, Problem.SIZE_MISSING, "no valid <size> width/height")]
    width, height = width_height

    boxes: list[Box] = []
    for index, obj in enumerate(node.iter("object")):
        box = _read_box(xml_path, index, obj, width, height, policy, issues)
        if box is not None:
            boxes.append(box)
    if any(issue.severity is Severity.ERROR for issue in issues):
        # Keeping the frame without its bad box would teach a detector that the hand
        # in it is background.
        return None, issues
    if not boxes:
        issues.append(Issue(xml_path, Problem.NO_BOXES, "no <object> boxes (negative frame?)"))
    group = xml_path.parent.relative_to(root).as_posix()
    record = Annotation(
        xml_path=xml_path,
        image_path=image_path,
        width=width,
        height=height,
        boxes=tuple(boxes),
        group="" if group == "." else group,
    )
    return record, issues


def _find_image(xml_path: Path, filename: str | None) -> Path | None:
    # The image next to the XML with the same stem wins: renamed datasets often keep a
    # stale <filename>, but the pair on disk is what the annotator saved together.
    for suffix in IMAGE_SUFFIXES:
        for candidate in (xml_path.with_suffix(suffix), xml_path.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    if filename:
        candidate = xml_path.parent / Path(filename).name
        if candidate.is_file():
            return candidate
    return None


def _declared_size(node: ET.Element) -> tuple[int, int] | None:
    try:
        width = int(float(node.findtext("size/width") or ""))
        height = int(float(node.findtext("size/height") or ""))
    except ValueError:
        return None
    return (width, height) if width > 0 and height > 0 else None


def _read_box(
    xml_path: Path,
    index: int,
    obj: ET.Element,
    width: int,
    height: int,
    policy: LabelPolicy,
    issues: list[Issue],
) -> Box | None:
    raw = (obj.findtext("name") or "").strip()
    where = f"object #{index} ({raw or 'no name'})"
    try:
        xmin, ymin, xmax, ymax = (
            float(obj.findtext(f"bndbox/{tag}") or "") for tag in ("xmin", "ymin", "xmax", "ymax")
        )
    except ValueError:
        issues.append(Issue(xml_path, Problem.BOX_MALFORMED, f"{where}: missing or bad bndbox"))
        return None
    if xmin >= xmax or ymin >= ymax:
        issues.append(
            Issue(
                xml_path,
                Problem.BOX_DEGENERATE,
                f"{where}: ({xmin:g},{ymin:g})-({xmax:g},{ymax:g}) has no area",
            )
        )
        return None
    if xmin < 0 or ymin < 0 or xmax > width or ymax > height:
        clipped = (max(xmin, 0.0), max(ymin, 0.0), min(xmax, width), min(ymax, height))
        if clipped[0] >= clipped[2] or clipped[1] >= clipped[3]:
            issues.append(
                Issue(
                    xml_path,
                    Problem.BOX_DEGENERATE,
                    f"{where}: ({xmin:g},{ymin:g})-({xmax:g},{ymax:g}) lies entirely "
                    f"outside the {width}x{height} image",
                )
            )
            return None
        issues.append(
            Issue(
                xml_path,
                Problem.BOX_OUTSIDE,
                f"{where}: ({xmin:g},{ymin:g})-({xmax:g},{ymax:g}) exceeds the "
                f"{width}x{height} image; clipped",
            )
        )
        xmin, ymin, xmax, ymax = clipped
    label = policy(raw)
    if label is None:
        issues.append(Issue(xml_path, Problem.LABEL_UNKNOWN, f"{where}: unknown label {raw!r}"))
        return None
    return Box(label=label, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, raw_label=raw)
