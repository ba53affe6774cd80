"""Settings as operators meet them: the generated table of every setting, a warning for a
misspelt variable, and one line naming the variable when the worker's model settings
cannot be served."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memelearning.cli import main
from memelearning.variables import PROCESSES, settings_markdown, unknown_variables

ROOT = Path(__file__).resolve().parent.parent


def run_worker(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """`memelearning worker` with these MEMELEARNING_WORKER_* values (and any other
    variables given by full name), until it exits."""
    env = {
        **os.environ,
        "MEMELEARNING_WORKER_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
        "MEMELEARNING_WORKER_HTTP_HOST": "127.0.0.1",
        "MEMELEARNING_WORKER_HTTP_PORT": "0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    for name, value in settings.items():
        env[name if name.startswith("MEMELEARNING_") else f"MEMELEARNING_WORKER_{name}"] = value
    return subprocess.run(
        [sys.executable, "-m", "memelearning", "worker"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- the table


def test_the_committed_settings_table_is_what_the_generator_writes() -> None:
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == settings_markdown(), (
        "docs/settings.md is out of date: run `memelearning settings > docs/settings.md`"
    )


def test_every_setting_of_every_process_is_documented() -> None:
    for process in PROCESSES:
        cls = process.settings_class()
        undocumented = [name for name, info in cls.model_fields.items() if not info.description]
        assert not undocumented, f"{cls.__name__}: give these a docstring: {undocumented}"


def test_memelearning_settings_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings"]) == 0
    table = capsys.readouterr().out
    assert table == settings_markdown()
    assert "| `MEMELEARNING_WORKER_MAX_BATCH` | `16` | integer ≥ 1, ≤ 1024 |" in table


# -- variables no process reads


def test_a_misspelt_variable_is_reported_with_the_closest_valid_name() -> None:
    environ = {
        "MEMELEARNING_WORKER_MAXBATCH": "8",
        "memelearning_reactions_cataloge": "x.json",
        "MEMELEARNING_NOTHING_LIKE_IT_AT_ALL_XYZZY": "1",
        # settings of any process, in any case, are fine
        "MEMELEARNING_WORKER_MAX_BATCH": "8",
        "MEMELEARNING_PUBLISHER_HEARTBEAT_S": "5",
        "memelearning_reactions_prefetch": "10",
        # and so are the variables of the tests, the benchmark and docker compose
        "MEMELEARNING_TEST_AMQP_URL": "amqp://localhost/",
        "MEMELEARNING_BENCH_AMQP_URL": "amqp://localhost/",
        "MEMELEARNING_RABBITMQ_PASSWORD": "x",
        "PATH": "/usr/bin",
    }
    assert unknown_variables(environ) == [
        ("MEMELEARNING_NOTHING_LIKE_IT_AT_ALL_XYZZY", None),
        ("MEMELEARNING_WORKER_MAXBATCH", "MEMELEARNING_WORKER_MAX_BATCH"),
        ("memelearning_reactions_cataloge", "MEMELEARNING_REACTIONS_CATALOG"),
    ]


# -- the worker's model settings: one line naming the variable, exit status 2


@pytest.mark.slow
def test_a_missing_model_folder_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "no-model-here"
    result = run_worker(tmp_path, MODEL_DIR=str(missing), MAXBATCH="8")
    print(result.stderr)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"memelearning worker: MEMELEARNING_WORKER_MODEL_DIR: {missing}: "
        "model directory does not exist"
    )
    # and the misspelt variable was pointed out first, with the name it meant
    assert any(
        line.endswith(
            "WARNING memelearning.settings: unknown variable MEMELEARNING_WORKER_MAXBATCH "
            "is ignored; did you mean MEMELEARNING_WORKER_MAX_BATCH?"
        )
        for line in lines
    )


@pytest.mark.slow
def test_a_threshold_for_a_label_the_model_lacks_is_one_line_naming_the_variable(
    tmp_path: Path,
) -> None:
    # the shipped model (models/default) has no label "thumbs_sideways"
    result = run_worker(tmp_path, THRESHOLDS='{"thumbs_sideways": 0.5}')
    print(result.stderr)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "memelearning worker: MEMELEARNING_WORKER_THRESHOLDS: thresholds name labels the "
        "model does not have: thumbs_sideways (labels in "
    )
    assert "like" in last  # the labels it does have
