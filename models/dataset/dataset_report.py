"""The dataset report behind ``memelearning models dataset-report``: validate a folder
of LabelImg (Pascal VOC) annotations, split it, and chart the labels per split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from models.dataset.labels import normalise_hands, normalise_sign
from models.dataset.plots import plot_label_distribution
from models.dataset.splits import Split, group_split, split_items
from models.dataset.voc import Annotation, VocDataset, count_labels, format_report, read_voc_dir

LabelScheme = Literal["signs", "hands", "any"]
LABEL_SCHEMES: Final[dict[str, Callable[[str], str | None] | None]] = {
    "signs": normalise_sign,
    "hands": normalise_hands,
    "any": None,
}


@dataclass(frozen=True)
class DatasetReport:
    dataset: VocDataset
    split: Split[Annotation]
    chart: Path | None

    @property
    def text(self) -> str:
        train, test = count_labels(self.split.train), count_labels(self.split.test)
        lines = [format_report(self.dataset), "split (images / boxes):"]
        lines.append(f"  train: {len(self.split.train)} / {sum(train.values())}")
        lines.append(f"  test:  {len(self.split.test)} / {sum(test.values())}")
        if self.chart is not None:
            lines.append(f"label distribution chart: {self.chart}")
        return "\n".join(lines)


def dataset_report(
    root: Path,
    *,
    labels: LabelScheme = "any",
    seed: int = 0,
    test_fraction: float = 0.2,
    hold_out_groups: bool = False,
    chart: Path | None = None,
) -> DatasetReport:
    """Read and validate ``root``, split it (by whole sub-folders — people in
    ``signs/`` — with ``hold_out_groups``), and draw the label distribution per split
    to ``chart`` if given."""
    dataset = read_voc_dir(root, labels=LABEL_SCHEMES[labels])

    def key(annotation: Annotation) -> str:
        return annotation.xml_path.as_posix()

    if hold_out_groups:
        split = group_split(
            dataset.annotations,
            key=key,
            group_of=lambda a: a.group,
            seed=seed,
            test_fraction=test_fraction,
        )
    else:
        split = split_items(dataset.annotations, key=key, test_fraction=test_fraction, seed=seed)
    if chart is not None:
        plot_label_distribution(
            {"train": count_labels(split.train), "test": count_labels(split.test)},
            chart,
            title=f"Labels per split: {root.name}",
        )
    return DatasetReport(dataset=dataset, split=split, chart=chart)
