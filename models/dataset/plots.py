"""Charts of the training data. matplotlib is imported inside each function: it is an
optional dependency (``pip install memelearning[models]``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def plot_label_distribution(
    counts_by_split: Mapping[str, Mapping[str, int]],
    path: Path | str,
    *,
    title: str = "Label distribution per split",
    ylabel: str = "boxes",
) -> Path:
    """Write a grouped bar chart (one bar per split for each label) to ``path`` (PNG).

    ``counts_by_split`` maps a split name (``"train"``) to counts per label; labels
    missing from a split count as 0. Returns the written path.
    """
    # The object-oriented API with no pyplot: no global figure state, no GUI backend.
    from matplotlib.figure import Figure

    path = Path(path)
    labels = sorted({label for counts in counts_by_split.values() for label in counts})
    n_splits = max(len(counts_by_split), 1)
    width = 0.8 / n_splits
    figure = Figure(figsize=(max(6.0, 0.55 * len(labels) * max(n_splits, 2) / 2 + 2), 4.5))
    axes = figure.add_subplot()
    for i, (split, counts) in enumerate(counts_by_split.items()):
        xs = [j + (i - (n_splits - 1) / 2) * width for j in range(len(labels))]
        values = [counts.get(label, 0) for label in labels]
        total = sum(values)
        bars = axes.bar(xs, values, width=width, label=f"{split} ({total})")
        axes.bar_label(bars, fontsize=7, padding=1)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend()
    axes.margins(y=0.1)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
