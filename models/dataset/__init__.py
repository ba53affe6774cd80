"""Dataset tools: reading LabelImg folders and image folders, normalising their labels,
splitting by person, the labels we gave to shared frames ourselves, and the dataset
report."""

from pathlib import Path
from typing import Final

DEFAULT_DATA: Final = Path("../shared/data")
"""Where the commands look for the shared data by default (relative to the project
root, as the README's commands run)."""
