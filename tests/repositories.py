"""Model repositories for tests: ``<root>/<name>/<version>/`` folders copied from an
exported model, each with a ``model.json`` that names its folder's model and version."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from worker.labelmap import load_label_map


def add_version(
    model: Path, source: Path, version: str, *, labels: Iterable[str] | None = None
) -> Path:
    """Copy the model folder ``source`` to ``model/<version>`` as an operator would: under
    another name first, then renamed, so no worker sees half a version. ``labels``
    keeps only those labels in the label map (a retrained model that dropped some)."""
    staging = model / f"{version}.tmp"
    shutil.copytree(source, staging)
    metadata_path = staging / "model.json"
    metadata = json.loads(metadata_path.read_text()) if metadata_path.exists() else {}
    metadata.update(name=model.name, version=version)
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")
    if labels is not None:
        keep = set(labels)
        label_map = load_label_map(staging / "label_map.pbtxt")
        items = [
            f"item {{\n  id: {class_id}\n  name: '{name}'\n}}\n"
            for class_id, name in label_map.items()
            if name in keep
        ]
        (staging / "label_map.pbtxt").write_text("".join(items))
    staging.rename(model / version)
    return model / version


def make_repository(
    root: Path, source: Path, versions: Iterable[str], name: str = "colour"
) -> Path:
    """``root/<name>`` holding a copy of ``source`` for each version; returns that folder."""
    model = root / name
    model.mkdir(parents=True)
    for version in versions:
        add_version(model, source, version)
    return model


def break_version(model: Path, source: Path, version: str) -> Path:
    """A version whose files are all there but whose SavedModel is not one."""
    path = add_version(model, source, version)
    (path / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    return path
