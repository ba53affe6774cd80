"""models/ is grouped by what each part holds, and imports go one way: the model
(networks, serving) never imports training or evaluation, and the dataset tools import
neither."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[1] / "models"
FORBIDDEN = {
    "dataset": {"networks", "serving", "train", "evaluate"},
    "networks": {"serving", "train", "evaluate"},
    "serving": {"train", "evaluate"},
}


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        found |= {n.split(".")[1] for n in names if n.startswith("models.") and "." in n}
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_the_model_never_imports_training_or_evaluation(package: str) -> None:
    modules = sorted((MODELS / package).glob("*.py"))
    assert modules, package
    wrong = {
        f"{m.relative_to(MODELS)} imports models.{p}"
        for m in modules
        for p in _imported_packages(m) & FORBIDDEN[package]
    }
    assert not wrong, sorted(wrong)


def test_every_module_lives_in_a_package_of_its_kind() -> None:
    loose = sorted(p.name for p in MODELS.glob("*.py") if p.name not in {"__init__.py", "cli.py"})
    assert not loose, f"modules outside the subpackages: {loose}"
