"""The model repository without a broker: layout, version policy, promote and rollback
(and their command line), the canary's share of participants."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from memelearning.cli import main
from memelearning.settings import SettingsError, load_settings
from tests.repositories import add_version, make_repository
from tests.workers import ThumbsUpDetector
from worker.events import ModelRef
from worker.metrics import WorkerMetrics
from worker.repository import (
    ModelRepository,
    RepositoryError,
    ServingPlan,
    ServingState,
    catalog_labels,
    open_repository,
    promote,
    rollback,
)
from worker.routing import BUCKETS, Routing, ServedModel, canary_bucket
from worker.settings import DEFAULT_MODEL_DIR, WorkerSettings
from worker.swapper import ModelSwapper

ROOT = Path(__file__).resolve().parent.parent
# The colour plumbing model's labels are in the packaged catalog (red, green, blue).
COLOUR_LABELS = {"red", "green", "blue"}


@pytest.fixture
def colour(tmp_path: Path, colour_model_dir: Path) -> ModelRepository:
    """MODELS_DIR/colour with versions 1, 2 and 3 of the colour plumbing model."""
    return ModelRepository(make_repository(tmp_path / "models", colour_model_dir, ["1", "2", "3"]))


# -- layout


def test_the_shipped_model_folder_is_served_as_it_is_not_as_a_repository() -> None:
    assert open_repository(DEFAULT_MODEL_DIR) is None


def test_a_repository_of_one_model_opens_at_its_root_or_at_the_model(
    colour: ModelRepository,
) -> None:
    for path in (colour.path.parent, colour.path):
        repository = open_repository(path)
        assert repository is not None and repository.name == "colour"


def test_a_repository_of_several_models_asks_which_one(
    colour: ModelRepository, colour_model_dir: Path
) -> None:
    make_repository(colour.path.parent, colour_model_dir, ["1"], name="other")

    with pytest.raises(RepositoryError, match="several models; point at one of them") as error:
        open_repository(colour.path.parent)
    assert "colour" in str(error.value) and "other" in str(error.value)


def test_versions_are_numbers_compared_as_numbers_and_copies_in_progress_are_not_versions(
    colour: ModelRepository, colour_model_dir: Path
) -> None:
    add_version(colour.path, colour_model_dir, "10")
    (colour.path / "11.tmp").mkdir()  # a copy still in progress

    assert colour.versions() == ["1", "2", "3", "10"]
    assert colour.plan() == ServingPlan(default="10")


def test_model_json_must_agree_with_the_folder_it_is_in(colour: ModelRepository) -> None:
    metadata = colour.path / "2" / "model.json"
    metadata.write_text(json.dumps({"name": "colour", "version": "7"}))

    with pytest.raises(RepositoryError, match=r"version '7' disagrees with the folder \('2'\)"):
        colour.check("2")


def test_a_version_without_a_model_is_reported_as_such(colour: ModelRepository) -> None:
    (colour.path / "3" / "saved_model.pb").unlink()

    with pytest.raises(RepositoryError, match=r"no saved_model\.pb or model\.tflite"):
        colour.check("3")


# -- version policy


def test_latest_serves_the_highest_version_until_something_is_promoted(
    colour: ModelRepository,
) -> None:
    assert colour.plan("latest") == ServingPlan(default="3")

    colour.write_state(ServingState(revision=4, default="2", candidate="3", canary_percent=10))

    assert colour.plan("latest") == ServingPlan("2", "3", 10.0, revision=4)


def test_a_pinned_version_serves_whatever_was_promoted(colour: ModelRepository) -> None:
    colour.write_state(ServingState(revision=1, default="3"))

    assert colour.plan("1") == ServingPlan(default="1")
    with pytest.raises(RepositoryError, match=r"no version 9 \(versions: 1, 2, 3\)"):
        colour.plan("9")


def test_a_bad_version_policy_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="MEMELEARNING_WORKER_MODEL_VERSION_POLICY"):
        load_settings(WorkerSettings, model_version_policy="newest")


async def test_a_worker_cannot_start_on_a_pinned_version_that_is_not_there(
    colour: ModelRepository,
) -> None:
    settings = WorkerSettings(model_dir=colour.path, model_version_policy="9")
    swapper = ModelSwapper(settings, WorkerMetrics())

    with pytest.raises(
        SettingsError, match=r"MEMELEARNING_WORKER_MODEL_VERSION_POLICY: .*no version 9"
    ):
        await swapper.start()
    await swapper.close()


# -- promote and rollback


def test_a_canary_then_promote_then_rollback(colour: ModelRepository) -> None:
    colour.write_state(ServingState(revision=1, default="2"))

    canary, changed = promote(colour, "3", canary_percent=10, catalog=COLOUR_LABELS)
    assert changed
    assert (canary.default, canary.candidate, canary.canary_percent, canary.revision) == (
        "2",
        "3",
        10,
        2,
    )
    colour.write_state(canary)

    promoted, _ = promote(colour, None)  # the candidate
    assert (promoted.default, promoted.candidate, promoted.history) == ("3", None, ("2",))
    colour.write_state(promoted)

    back, _ = rollback(colour)
    assert (back.default, back.history, back.revision) == ("2", (), 4)


def test_rollback_calls_off_a_canary_first(colour: ModelRepository) -> None:
    colour.write_state(ServingState(revision=3, default="2", candidate="3", canary_percent=5))

    state, _ = rollback(colour)

    assert (state.default, state.candidate, state.canary_percent) == ("2", None, 0)


def test_promoting_what_already_serves_changes_nothing(colour: ModelRepository) -> None:
    colour.write_state(ServingState(revision=5, default="3"))

    state, changed = promote(colour, "3")

    assert not changed and state.revision == 5


def test_a_first_canary_of_the_newest_version_keeps_the_one_before_as_default(
    colour: ModelRepository,
) -> None:
    # Before the first promote a `latest` fleet serves the version it found at start.
    state, _ = promote(colour, "3", canary_percent=20)

    assert (state.default, state.candidate) == ("2", "3")


def test_a_version_that_drops_a_label_the_catalog_uses_is_not_promoted(
    colour: ModelRepository, colour_model_dir: Path
) -> None:
    add_version(colour.path, colour_model_dir, "4", labels=["green", "blue"])
    colour.write_state(ServingState(revision=1, default="3"))

    with pytest.raises(RepositoryError, match=r"lacks labels the reactions catalog uses .*: red"):
        promote(colour, "4", catalog=catalog_labels(None))


def test_nothing_to_roll_back_to_is_said_so(colour: ModelRepository) -> None:
    with pytest.raises(RepositoryError, match="nothing to roll back to"):
        rollback(colour)


def test_a_damaged_serving_file_is_reported_with_the_field(colour: ModelRepository) -> None:
    colour.state_path.write_text('{"default": "2", "canary_percent": 30}')

    with pytest.raises(RepositoryError, match=r"serving\.json: .*canary_percent is set without"):
        colour.read_state()


# -- the command line


def test_models_list_shows_each_version_and_what_serves(
    colour: ModelRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    colour.write_state(ServingState(revision=2, default="2", candidate="3", canary_percent=10))
    (colour.path / "1" / "label_map.pbtxt").write_text("item { id: 1 }")

    assert main(["models", "list", str(colour.path.parent)]) == 0

    out = capsys.readouterr().out
    assert "colour  serves version 2, and version 3 to 10% of participants" in out
    assert "2  default" in out and "3  candidate 10%" in out
    assert "1  -" in out and "broken:" in out


def test_promote_and_rollback_without_notifying_only_write_serving_json(
    colour: ModelRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "promote", str(colour.path), "2", "--no-notify"]) == 0
    assert main(["models", "promote", str(colour.path), "3", "--canary", "25", "--no-notify"]) == 0
    state = colour.current_state()
    assert (state.revision, state.default, state.candidate, state.canary_percent) == (
        2,
        "2",
        "3",
        25,
    )
    assert main(["models", "rollback", str(colour.path), "--no-notify"]) == 0

    assert colour.current_state().candidate is None
    assert "colour now serves version 2 (revision 3)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["promote", "{model}", "7"], "no version 7 (versions: 1, 2, 3)"),
        (["promote", "{model}", "3", "--canary", "100"], "--canary must be a share"),
        (["promote", "{model}"], "no candidate to promote; name a version"),
        (["rollback", "{model}"], "nothing to roll back to"),
        (["promote", "{plain}", "1"], "not a model of a repository"),
        (
            ["promote", "{model}", "2", "--catalog", "{missing}"],
            "cannot read the reactions catalog",
        ),
    ],
    ids=[
        "no-such-version",
        "canary-share",
        "no-candidate",
        "no-history",
        "plain-folder",
        "catalog",
    ],
)
def test_bad_model_commands_are_one_line_and_exit_2(
    colour: ModelRepository,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    paths = {"model": colour.path, "plain": DEFAULT_MODEL_DIR, "missing": tmp_path / "nope.json"}
    argv = ["models", *(a.format(**paths) for a in args), "--no-notify"]

    assert main(argv) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("memelearning models: ")
    assert message in err


def test_a_promote_the_workers_cannot_be_told_of_says_what_to_do(
    colour: ModelRepository,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMELEARNING_MODELS_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/")

    assert main(["models", "promote", str(colour.path), "2"]) == 1

    assert colour.current_state().default == "2"  # written all the same
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "serving.json is written, but the workers were not told" in err
    assert f"memelearning models notify {colour.path}" in err
    assert "guest:guest" not in err


def test_the_worker_process_names_a_version_policy_it_cannot_serve(
    colour: ModelRepository,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memelearning", "worker"],
        env={
            "PATH": "/usr/bin:/bin",
            "MEMELEARNING_WORKER_MODEL_DIR": str(colour.path),
            "MEMELEARNING_WORKER_MODEL_VERSION_POLICY": "9",
            "MEMELEARNING_WORKER_HTTP_PORT": "0",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("memelearning worker: MEMELEARNING_WORKER_MODEL_VERSION_POLICY: ")
    assert "no version 9" in line


# -- the canary's share


@pytest.mark.parametrize("percent", [5, 10, 25, 50])
def test_canary_shares_are_within_5_points_over_1000_participants(percent: float) -> None:
    routing = _routing(percent)

    picks = Counter(routing.pick(f"meeting-{i % 40}", f"person-{i}").version for i in range(1000))

    assert abs(picks["2"] / 10 - percent) <= 5, picks


def test_a_participant_stays_on_one_version_and_a_larger_share_only_adds_people() -> None:
    people = [(f"m{i % 7}", f"p{i}") for i in range(1000)]
    at_10 = {p for p in people if _routing(10).pick(*p).version == "2"}

    assert at_10 == {p for p in people if _routing(10).pick(*p).version == "2"}
    assert at_10 < {p for p in people if _routing(30).pick(*p).version == "2"}


def test_the_bucket_is_the_same_in_every_process() -> None:
    # A salted hash (Python's hash()) would send a participant to different versions on
    # different workers: the bucket must be a pure function of the ids.
    assert canary_bucket("standup", "alice") == 1094
    assert 0 <= canary_bucket("m", "p") < BUCKETS


def _routing(percent: float) -> Routing:
    def served(version: str) -> ServedModel:
        return ServedModel(ModelRef(name="colour", version=version), ThumbsUpDetector(), "given")

    return Routing(served("1"), served("2"), percent)
