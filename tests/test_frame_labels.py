"""Our own labels of shared frames (models/dataset/frame_labels.py) against the real files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from models.dataset.frame_labels import SIGN_GESTURES, gesture_frames, relabel, sign_gesture
from models.dataset.voc import read_voc_dir

SIGNS = Path(__file__).resolve().parents[2] / "shared" / "data" / "signs"


def test_a_word_names_a_gesture_only_for_the_people_who_sign_it_that_way() -> None:
    assert sign_gesture("Mocktic", "Yes") == "like"  # his "yes" is a thumbs up
    assert sign_gesture("Condzi", "yes") == "fist"
    assert sign_gesture("aniket-singh-01", "Ok") == "like"  # not the OK sign
    assert sign_gesture("aniket-singh-01", "Correct") == "ok"
    assert sign_gesture("mikeandino", "Please") is None
    assert sign_gesture("Condzi", "not a sign") is None


def test_every_labelled_entry_exists_and_the_counts_are_those_we_looked_at() -> None:
    annotations = read_voc_dir(SIGNS).annotations
    frames = gesture_frames(annotations)
    boxes = Counter(box.label for frame in frames for box in frame.boxes)
    assert boxes == {"fist": 100, "palm": 83, "like": 37, "ok": 15, "call": 15, "one": 15}
    used = {
        (frame.group, box.raw_label.casefold().replace(" ", ""))
        for frame in frames
        for box in frame.boxes
    }
    assert {person for person, _ in used} == {person for person, _ in SIGN_GESTURES}
    # relabel keeps every frame and names the boxes that are no gesture of ours
    everything = relabel(annotations, "unknown")
    assert len(everything) == len(annotations)
    labels = Counter(box.label for frame in everything for box in frame.boxes)
    assert labels["unknown"] == sum(len(a.boxes) for a in annotations) - sum(boxes.values())
