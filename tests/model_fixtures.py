"""Session-scoped model fixtures: the colour plumbing model exported once per test
session, in both batch layouts, and a detector loaded on it.

TensorFlow is imported inside the fixtures, so tests that use none of them never pay
for importing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from worker.detector import Detector


@pytest.fixture(scope="session")
def colour_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The colour plumbing model with a dynamic batch (input ``[None, None, None, 3]``)."""
    from models.serving.contract_model import export_colour_model

    return export_colour_model(tmp_path_factory.mktemp("colour-dynamic"))


@pytest.fixture(scope="session")
def colour_model_dir_batch1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The colour plumbing model with a fixed batch of one, like stock TF2 zoo exports."""
    from models.serving.contract_model import export_colour_model

    return export_colour_model(tmp_path_factory.mktemp("colour-batch1"), batch_size=1)


@pytest.fixture(scope="session")
def colour_detector(colour_model_dir: Path) -> Detector:
    """A detector on the dynamic-batch colour model, default settings."""
    from worker.detector import Detector

    return Detector.load(colour_model_dir)
