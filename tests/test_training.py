"""A tiny end-to-end training run on the shared data (a few images, one epoch): the
recipe trains, exports, evaluates, resumes and refuses a changed recipe. Full training
is not CI's job; this proves the commands work."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from memelearning.cli import main
from models.evaluate import runtimes, stage_one
from models.train.rebuild import RebuildError, read_trained, rebuild
from models.train.training import MODEL_SUBDIR, TrainConfig, TrainingError, train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# A whole training run and export (two stages and the face stage, SavedModel and
# TFLite with int8 landmark networks) in the module's first test: 170 s on a quiet
# 2-core machine, past the suite's 120 s, and slower on a loaded one.
pytestmark = pytest.mark.timeout(600)
# Two heads averaged: the ensemble path through training, cross-validation and export.
# int8 landmark networks: the calibration and the splice through training and export.
SMOKE = TrainConfig(
    head_epochs=2,
    feature_passes=1,
    limit=8,
    head_members=2,
    tflite_landmarks="int8",
    version="smoke",
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("train") / "run"
    train(DATA, run, SMOKE)
    return run


def test_a_smoke_run_trains_both_stages_and_exports(run_dir: Path) -> None:
    model = run_dir / MODEL_SUBDIR
    for name in (
        "saved_model.pb",
        "model.tflite",
        "label_map.pbtxt",
        "model.json",
        "MODEL_CARD.md",
    ):
        assert (model / name).is_file(), name
    meta = json.loads((model / "model.json").read_text(encoding="utf-8"))
    assert meta["version"] == "smoke"
    assert meta["data"]["signs_held_out_people"], "whole people must be held out"
    assert "none" in meta["head_labels"]
    label_map = (model / "label_map.pbtxt").read_text(encoding="utf-8")
    assert "none" not in label_map
    # Face labels follow the gestures, so a model without faces keeps its gesture ids.
    assert label_map.index('"smile"') > max(label_map.index(f'"{g}"') for g in meta["thresholds"])
    assert meta["face_labels"] == ["smile", "neutral"] and meta["faces"]["max_faces"] == 2
    assert meta["pose_labels"] == ["thinking", "raise_hand"]
    for member in ("member-0", "member-1"):
        assert list((run_dir / "head" / member / "checkpoints").glob("ckpt-2.index"))
    # The two heads are served as one, their hidden layers side by side.
    assert meta["train_config"]["head_members"] == 2
    head, _, _ = read_trained(model)
    assert int(head.w1.shape[1]) == 2 * 256
    # Calibrated on the training side, shipped with the model.
    assert 1.0 <= meta["config"]["box_scale"] <= 1.8
    assert set(meta["thresholds"]) == set(meta["head_labels"]) - {"none"}
    assert all(0.5 <= t <= 0.95 for t in meta["thresholds"].values())


def test_training_resumes_and_refuses_a_changed_recipe(run_dir: Path) -> None:
    def checkpoints() -> list[str]:
        return sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("head/*/checkpoints/*"))

    before = checkpoints()
    assert any(name.startswith("head/member-1/checkpoints/") for name in before)
    train(DATA, run_dir, SMOKE)  # everything done already: nothing retrains
    assert checkpoints() == before
    with pytest.raises(TrainingError, match="head_epochs"):
        train(DATA, run_dir, replace(SMOKE, head_epochs=3))


def test_evaluate_writes_the_report_and_fills_the_model_card(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = run_dir / MODEL_SUBDIR
    out = run_dir / "report"
    command = ["evaluate", str(model), "--data", str(DATA), "--out", str(out), "--limit", "16"]
    assert main([*command, "--update-card", "--conditions", "dim,low_angle"]) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for key in (
        "hand_ap50_hands_test",
        "hand_ap50_signs_held_out",
        "classifier_accuracy",
        "gesture_map50_hands_test",
    ):
        assert isinstance(metrics[key], float), (key, metrics[key])
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["speed"]["savedmodel_batch16_fps"] > 0
    # What production sees, per data set and per held-out person.
    for part in ("hands_test", "signs_held_out"):
        figures = metrics["production"][part]
        assert figures["frames"] > 0 and 0.0 <= figures["hands_found"] <= 1.0, part
        assert figures["false_gestures_per_100_frames"] >= 0.0, part
    assert metrics["peer"] is None  # only with --peer-python
    # The same held-out frames again, as cameras in other rooms would send them.
    assert set(metrics["conditions"]) == {"dim", "low_angle"}
    for room in metrics["conditions"].values():
        assert room["peer"] is None
        for part in ("hands_test", "signs_held_out"):
            figures = room["ours"][part]
            assert figures["frames"] == metrics["production"][part]["frames"], part
            assert 0.0 <= figures["hands_found"] <= 1.0, part
    # The face stage joined to the model: its labels are scored on their own data, and
    # face boxes never count as hands or gestures.
    faces = metrics["faces"]
    assert faces["smile_genki_held_out"]["crops"] == 16
    assert faces["found_signs"]["face_found"] > 0.5
    assert 0.0 <= faces["smile_genki_held_out"]["accuracy_all_crops"] <= 1.0
    poses = metrics["poses"]["overall"]
    assert set(poses) == {"thinking", "raise_hand"}
    assert sum(poses["raise_hand"]["false_per_100"]["frames"].values()) > 0
    for chart in metrics["charts"].values():
        assert (out / chart).read_bytes().startswith(b"\x89PNG")
    card = (model / "MODEL_CARD.md").read_text(encoding="utf-8")
    results = card.split("## Results")[1].split("Through the worker's")[0]
    assert "hand AP@0.5" in results and "n/a" not in results
    rooms = card.split("## In other rooms")[1]
    assert "| as recorded | ours |" in rooms and "| low angle | ours |" in rooms
    assert "hand AP@0.5, hands/test" in capsys.readouterr().out


def test_stage_one_variants_are_compared_in_each_room(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = run_dir / MODEL_SUBDIR
    figures = tmp_path / "stage_one.json"
    command = [str(model), "--data", str(DATA), "--limit", "4", "--json", str(figures)]
    assert stage_one.main([*command, "--variants", "lite,full-aliased", "--conditions", "dim"]) == 0
    results = json.loads(figures.read_text(encoding="utf-8"))
    assert set(results) == {"lite", "full-aliased"}
    for rooms in results.values():
        assert list(rooms) == ["as_recorded", "dim"]
        for room in rooms.values():
            assert 0.0 <= room["hands_test_hands_found"] <= 1.0
    assert "| dim | full-aliased |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        stage_one.main([*command, "--variants", "huge"])
    assert "unknown variant huge: choose from lite" in capsys.readouterr().err


def test_the_cpu_workers_file_is_scored_beside_the_savedmodel(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = run_dir / MODEL_SUBDIR
    figures = tmp_path / "runtimes.json"
    command = [str(model), "--data", str(DATA), "--limit", "4", "--json", str(figures)]
    assert runtimes.main([*command, "--variants", "savedmodel,tflite", "--conditions", "dim"]) == 0
    results = json.loads(figures.read_text(encoding="utf-8"))
    assert list(results) == ["savedmodel", "tflite"]
    for rooms in results.values():
        assert list(rooms) == ["as_recorded", "dim"]
        for room in rooms.values():
            assert room["signs"]["frames"] > 0 and room["hands_test"]["frames"] == 4
            assert 0.0 <= room["hands_test"]["hands_found"] <= 1.0
    # The smoke model's file holds int8 landmark networks: the file the workers run
    # finds the hands the SavedModel finds on these frames.
    meta = json.loads((model / "model.json").read_text(encoding="utf-8"))
    assert meta["config"]["tflite_landmarks"] == "int8"
    found = [results[v]["as_recorded"]["hands_test"]["hands_found"] for v in results]
    assert found[0] == found[1]
    assert "| dim | tflite |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        runtimes.main([*command, "--variants", "huge"])
    assert "unknown variant huge: choose from savedmodel" in capsys.readouterr().err


def test_evaluate_leaves_the_model_card_alone_unless_asked(run_dir: Path, tmp_path: Path) -> None:
    model = run_dir / MODEL_SUBDIR
    card = (model / "MODEL_CARD.md").read_bytes()
    out = tmp_path / "report"
    command = ["evaluate", str(model), "--data", str(DATA), "--out", str(out), "--limit", "4"]
    assert main(command) == 0
    assert (out / "metrics.json").is_file()
    assert (model / "MODEL_CARD.md").read_bytes() == card


def test_export_copies_a_model_the_worker_can_load(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "default"
    assert main(["export", str(run_dir), str(out)]) == 0
    assert (out / "saved_model.pb").is_file() and (out / "model.tflite").is_file()


def test_a_missing_data_folder_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tmp_path / "run"), "--data", str(tmp_path)]) == 2
    assert "hands/train: missing" in capsys.readouterr().err


def test_export_never_replaces_a_folder_that_is_not_a_model(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = tmp_path / "notes.txt"
    keep.write_text("precious", encoding="utf-8")
    assert main(["export", str(run_dir), str(tmp_path)]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert keep.read_text(encoding="utf-8") == "precious"


def test_evaluate_explains_a_folder_that_is_not_a_gesture_model(
    tmp_path: Path, colour_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(tmp_path), "--data", str(DATA)]) == 2
    assert "not an exported model" in capsys.readouterr().err
    assert main(["evaluate", str(colour_model_dir), "--data", str(DATA)]) == 2
    assert "not a gesture model" in capsys.readouterr().err


def test_crops_without_a_none_class_are_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    for part in ("hands/train", "hands/test", "signs"):
        (data / part).parent.mkdir(parents=True, exist_ok=True)
        (data / part).symlink_to(DATA / part, target_is_directory=True)
    (data / "hagrid-crops").mkdir()
    (data / "hagrid-crops" / "like").symlink_to(DATA / "hagrid-crops" / "like")
    assert main(["train", str(tmp_path / "run"), "--data", str(data)]) == 2
    assert "no 'none' folder" in capsys.readouterr().err


def test_rebuild_serves_the_trained_head_with_this_versions_graph(
    run_dir: Path, tmp_path: Path
) -> None:
    import numpy as np
    import tensorflow as tf

    source = run_dir / MODEL_SUBDIR
    out = tmp_path / "rebuilt"
    # Float landmark networks: the int8 path through export is the smoke run's.
    command = [str(source), str(out), "--version", "r1", "--no-faces"]
    assert main(["rebuild", *command, "--tflite-landmarks", "float"]) == 0
    meta = json.loads((out / "model.json").read_text(encoding="utf-8"))
    before = json.loads((source / "model.json").read_text(encoding="utf-8"))
    assert meta["version"] == "r1" and meta["rebuilt_from"]["version"] == "smoke"
    # The head's figures travel with it; the graph's parts are written afresh.
    assert meta["thresholds"] == before["thresholds"]
    assert meta["train_config"] == before["train_config"]
    assert meta["faces"] is None and "smile" not in (out / "label_map.pbtxt").read_text()
    crops = tf.constant(np.random.default_rng(0).integers(0, 255, (2, 224, 224, 3), np.uint8))
    probabilities = [
        tf.saved_model.load(str(d))
        .signatures["classify_crops"](crops=crops)["gesture_probabilities"]
        .numpy()
        for d in (source, out)
    ]
    np.testing.assert_allclose(probabilities[0], probabilities[1], atol=1e-6)
    assert meta["config"]["tflite_landmarks"] == "float"
    # and never over a folder that holds something
    assert main(["rebuild", str(source), str(out)]) == 2
    # int8 landmark networks are calibrated on data: without it, one clear error
    with pytest.raises(RebuildError, match="give the data folder"):
        rebuild(source, tmp_path / "int8", version="r2", faces=False, data_root=None)


def test_rebuild_refuses_what_is_not_a_gesture_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rebuild", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memelearning rebuild: ") and "model.json: cannot read" in err
    assert len(err.strip().splitlines()) == 1


def test_an_ensemble_of_no_heads_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"head_members must be at least 1 \(--head-members\)"):
        train(DATA, tmp_path / "run", replace(SMOKE, head_members=0))


def test_a_recorded_recipe_reads_back_whatever_version_wrote_it() -> None:
    recorded = {"seed": 3, "input_size": [360, 480], "retired_setting": 1}
    config = TrainConfig.from_record(recorded)
    assert config.seed == 3 and config.input_size == (360, 480)
    assert config.head_epochs == TrainConfig().head_epochs  # missing: today's default
    assert TrainConfig.from_record(json.loads(json.dumps(asdict(SMOKE)))) == SMOKE
