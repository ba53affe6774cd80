"""The benchmark's physical limit: what the networks alone allow for the frames used,
and every stage's share of it. Arithmetic on given timings: nothing here is timed."""

from __future__ import annotations

from typing import Any

import pytest

from bench.networks import NetworkTiming, network_files, physical_limit
from bench.pipeline import add_limit_ratios


def timing(file: str, cpu_ms: float) -> NetworkTiming:
    return NetworkTiming(file, [1, 1, 1, 3], calls=20, cpu_ms=cpu_ms, ms=cpu_ms, ms_min=cpu_ms)


PALM = timing("palm_detection_lite.tflite", 10.0)
LANDMARKS = timing("hand_landmark_lite.tflite", 5.0)


def test_the_limit_counts_the_palm_detector_per_frame_and_two_landmark_passes_per_hand() -> None:
    # Given frames with 1, 1 and 2 hands on 2 cores
    limit = physical_limit([PALM, LANDMARKS], [1, 1, 2], cores=2)

    # Then a frame costs 10 ms + 2 passes x 5 ms x 4/3 hands of one core
    assert limit["network_ms_per_frame"] == pytest.approx(10 + 2 * 5 * 4 / 3, abs=0.01)
    assert limit["frames_per_s"] == pytest.approx(2 * 1000 / (10 + 40 / 3), abs=0.1)
    # ... and the arithmetic, one landmark pass per hand, is given beside it
    assert limit["one_landmark_pass_ms_per_frame"] == pytest.approx(10 + 5 * 4 / 3, abs=0.01)
    assert limit["faces_per_frame"] == 0


def test_with_a_full_landmark_network_in_stage_one_each_runs_once_per_hand() -> None:
    # Given a v6 model: hand-landmark-full places the joints, lite reads the gesture crop
    full = timing("hand_landmark_full.tflite", 8.0)
    limit = physical_limit([PALM, LANDMARKS, full], [1, 2], cores=1)

    # Then a hand costs one pass of each, and stage 1b alone is the full one
    assert limit["network_ms_per_frame"] == pytest.approx(10 + (5 + 8) * 1.5, abs=0.01)
    assert limit["one_landmark_pass_ms_per_frame"] == pytest.approx(10 + 8 * 1.5, abs=0.01)


def test_face_networks_count_once_per_frame_when_the_model_has_them() -> None:
    faces = [timing("face_detector.tflite", 1.0), timing("face_landmarks_detector.tflite", 2.0)]
    limit = physical_limit([PALM, LANDMARKS, *faces], [1], cores=1)
    assert limit["faces_per_frame"] == 1
    assert limit["network_ms_per_frame"] == pytest.approx(10 + 2 * 5 + 1 + 2)


def test_only_networks_the_model_json_names_are_timed() -> None:
    metadata = {"base_models": {"files": {"hand_landmark_lite.tflite": "x", "other": "y"}}}
    assert network_files(metadata) == ["hand_landmark_lite.tflite"]
    assert network_files({}) == []


def result_with(limit: dict[str, Any]) -> dict[str, Any]:
    return {
        "limit": limit,
        "bare": [{"frames_per_s": 50.0}],
        "in_process": [{"frames_per_s": 40.0}],
        "end_to_end": [{"frames_per_s": 30.0}],
        "layouts": [],
        "latency": [{"achieved_fps": 10.0}],
        "baseline": {"frames_per_s": 20.0},
        "scaling": None,
    }


def test_every_stage_gets_its_share_of_the_limit() -> None:
    result = result_with({"frames_per_s": 100.0})
    add_limit_ratios(result)
    assert result["bare"][0]["ratio_to_limit"] == 0.5
    assert result["end_to_end"][0]["ratio_to_limit"] == 0.3
    assert result["baseline"]["ratio_to_limit"] == 0.2
    assert result["latency"][0]["ratio_to_limit"] == 0.1


def test_an_unknown_limit_gives_no_ratios_rather_than_a_guess() -> None:
    result = result_with({"frames_per_s": None, "unknown": "no networks cached"})
    add_limit_ratios(result)
    assert result["in_process"][0]["ratio_to_limit"] is None
    assert result["baseline"]["ratio_to_limit"] is None


def test_faces_found_in_the_frames_replace_the_one_face_assumed() -> None:
    faces = [timing("face_detector.tflite", 1.0), timing("face_landmark.tflite", 2.0)]
    limit = physical_limit([PALM, LANDMARKS, *faces], [1, 1], cores=1, faces=[0, 2])
    assert limit["faces_per_frame"] == 1
    assert limit["network_ms_per_frame"] == pytest.approx(10 + 2 * 5 + 1 + 2 * 1)
