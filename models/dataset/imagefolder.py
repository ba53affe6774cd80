"""Image-folder classification data (``hagrid-crops/``): one sub-folder per label."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from models.dataset.splits import Split, stratified_split
from models.dataset.voc import IMAGE_SUFFIXES, Issue, Problem


@dataclass(frozen=True, slots=True)
class ImageSample:
    path: Path
    label: str
    box: tuple[int, int, int, int] | None = None
    """``(left, top, right, bottom)`` pixels of the hand when the image is a whole
    frame (hands taken from LabelImg boxes); None when the image is the crop."""


@dataclass(slots=True)
class ImageFolderDataset:
    root: Path
    classes: tuple[str, ...]
    """Sorted folder names: a class's index here is its stable id."""
    samples: list[ImageSample] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        """Images per label (every class present, empty ones as 0)."""
        counts = Counter({label: 0 for label in self.classes})
        counts.update(sample.label for sample in self.samples)
        return counts

    def split(self, *, test_fraction: float, seed: int) -> Split[ImageSample]:
        """A seeded split stratified by label."""
        return stratified_split(
            self.samples,
            key=lambda s: s.path.as_posix(),
            label_of=lambda s: s.label,
            test_fraction=test_fraction,
            seed=seed,
        )


def read_image_folder(root: Path | str, *, verify_images: bool = False) -> ImageFolderDataset:
    """List ``root/<label>/*.jpg`` (and other image suffixes) as labelled samples.

    Files that are not images, images directly in ``root`` and empty class folders are
    reported as issues. ``verify_images`` also reads every header (slower: one open per
    file) and drops unreadable images.
    """
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    dataset = ImageFolderDataset(root=root, classes=tuple(p.name for p in folders))
    for stray in sorted(p for p in root.iterdir() if p.is_file()):
        if stray.suffix.lower() in IMAGE_SUFFIXES:
            dataset.issues.append(
                Issue(stray, Problem.LABEL_UNKNOWN, "image outside any class folder")
            )
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            dataset.issues.append(Issue(folder, Problem.IMAGE_MISSING, "class has no images"))
        for path in images:
            if verify_images and not _readable(path, dataset.issues):
                continue
            dataset.samples.append(ImageSample(path=path, label=folder.name))
    return dataset


def _readable(path: Path, issues: list[Issue]) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        issues.append(Issue(path, Problem.IMAGE_UNREADABLE, str(exc)))
        return False
    return True
