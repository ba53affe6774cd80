"""Fixtures of the Helm chart tests: the pinned helm binary and the chart rendered
with given values (a test module may render its own way, as tests/test_chart.py does
in a namespace)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_chart import CHART, HELM, run_helm

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def helm() -> Path:
    assert HELM.is_file(), f"{HELM} is missing: run `bash scripts/install-helm.sh`"
    return HELM


@pytest.fixture(scope="module")
def render(helm: Path) -> Callable[[Obj], list[Obj]]:
    def _render(values: Obj) -> list[Obj]:
        result = run_helm(helm, "template", "ml", str(CHART), values=values)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return _render
