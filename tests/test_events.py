"""The reaction-event contract: ids, routing keys, validation."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from worker.events import (
    MAX_HANDS,
    FrameDetections,
    ReactionEvent,
    binding_key,
    detections_binding_key,
    detections_id,
    event_id,
    routing_key,
)


def event(**changes: object) -> ReactionEvent:
    fields: dict[str, object] = {
        "event_id": event_id("frame-1", "like"),
        "frame_id": "frame-1",
        "meeting_id": "m1",
        "participant_id": "alice",
        "sequence": 3,
        "label": "like",
        "score": 0.9,
        "box": {"ymin": 0.1, "xmin": 0.2, "ymax": 0.5, "xmax": 0.6},
        "capture_ms": 1_795_000_000_000,
        "detected_ms": 1_795_000_000_050,
        "model": {"name": "gestures", "version": "1"},
        "worker_id": "w1",
    }
    fields.update(changes)
    return ReactionEvent.model_validate(fields)


def test_event_ids_are_the_same_for_the_same_frame_and_label_on_any_worker() -> None:
    assert event_id("frame-1", "like") == event_id("frame-1", "like")
    assert event_id("frame-1", "like") != event_id("frame-1", "palm")
    assert event_id("frame-1", "like") != event_id("frame-2", "like")
    assert event_id("frame-1", "like").version == 5


def test_an_event_survives_the_json_round_trip() -> None:
    original = event()
    assert ReactionEvent.from_json(original.to_json()) == original
    assert original.routing_key == "reaction.m1.like" == routing_key("m1", "like")


@pytest.mark.parametrize(
    "changes",
    [
        {"meeting_id": "a.b"},
        {"meeting_id": "m1#"},
        {"meeting_id": "x" * 65},
        {"label": "thumbs.up"},
        {"label": "like*"},
        {"participant_id": ""},
        {"score": 1.5},
        {"box": {"ymin": 0.6, "xmin": 0.2, "ymax": 0.5, "xmax": 0.6}},
        {"box": {"ymin": -0.1, "xmin": 0.2, "ymax": 0.5, "xmax": 0.6}},
        {"event_id": "not-a-uuid"},
        {"extra": 1},
    ],
)
def test_events_that_would_break_routing_or_the_schema_are_refused(
    changes: dict[str, object],
) -> None:
    with pytest.raises(ValidationError):
        event(**changes)


def test_binding_keys_select_a_meeting_a_label_or_all() -> None:
    assert binding_key() == "reaction.*.*"
    assert binding_key("m1") == "reaction.m1.*"
    assert binding_key(label="like") == "reaction.*.like"
    assert isinstance(event().event_id, uuid.UUID)


_FACE = {
    "label": "smile",
    "score": 0.9,
    "box": {"ymin": 0.1, "xmin": 0.3, "ymax": 0.6, "xmax": 0.7},
}


def detections(**changes: object) -> FrameDetections:
    hand = {
        "label": "peace",
        "score": 0.8,
        "box": {"ymin": 0.1, "xmin": 0.2, "ymax": 0.5, "xmax": 0.6},
    }
    fields: dict[str, object] = {
        "frame_id": "frame-1",
        "meeting_id": "m1",
        "participant_id": "alice",
        "sequence": 3,
        "capture_ms": 1_795_000_000_000,
        "detected_ms": 1_795_000_000_050,
        "model": {"name": "gestures", "version": "1"},
        "worker_id": "w1",
        "hands": [hand, dict(hand, label="fist", score=0.6)],
    }
    fields.update(changes)
    return FrameDetections.model_validate(fields)


def test_frame_detections_survive_the_json_round_trip_under_their_own_routing_word() -> None:
    original = detections()
    assert FrameDetections.from_json(original.to_json()) == original
    assert [hand.label for hand in original.hands] == ["peace", "fist"]
    assert original.routing_key == "detections.m1.alice"
    # never matched by a reaction-event binding, and the same id on any worker
    assert not original.routing_key.startswith("reaction.")
    assert original.message_id == detections_id("frame-1") != event_id("frame-1", "detections")
    assert detections_binding_key("m1") == "detections.m1.*"
    assert detections(hands=[]).hands == ()


@pytest.mark.parametrize(
    "changes",
    [
        {"participant_id": "a.b"},
        {
            "hands": [
                {"label": "x*", "score": 0.5, "box": {"ymin": 0, "xmin": 0, "ymax": 1, "xmax": 1}}
            ]
        },
        {
            "hands": [
                {"label": "x", "score": 0.5, "box": {"ymin": 0, "xmin": 0, "ymax": 1, "xmax": 1}}
            ]
            * (MAX_HANDS + 1)
        },
        {"schema_version": 3},
        {"schema_version": 1, "faces": [_FACE]},
        {"label": "like"},
    ],
)
def test_frame_detections_that_break_routing_or_the_schema_are_refused(
    changes: dict[str, object],
) -> None:
    with pytest.raises(ValidationError):
        detections(**changes)


def test_a_reaction_event_is_not_a_frame_detections_message_nor_the_other_way() -> None:
    with pytest.raises(ValidationError):
        FrameDetections.from_json(event().to_json())
    with pytest.raises(ValidationError):
        ReactionEvent.from_json(detections().to_json())


def test_frame_detections_of_schema_1_still_parse_and_2_carries_faces() -> None:
    old = detections(schema_version=1)
    assert old.faces == () and [h.label for h in old.hands] == ["peace", "fist"]
    new = FrameDetections.from_json(detections(faces=[_FACE]).to_json())
    assert new.schema_version == 2 and [f.label for f in new.faces] == ["smile"]


def test_the_worker_puts_faces_apart_and_sends_no_event_for_a_face_at_rest() -> None:
    from publisher.protocol import FrameMeta
    from worker.detector import Detection
    from worker.events import ModelRef
    from worker.service import build_events, build_frame_detections

    meta = FrameMeta(
        message_id="frame-9",
        meeting_id="m1",
        participant_id="alice",
        sequence=9,
        capture_ms=1_795_000_000_000,
    )
    found = [
        Detection("neutral", 14, 0.97, (0.1, 0.3, 0.6, 0.7)),
        Detection("like", 4, 0.8, (0.5, 0.1, 0.9, 0.3)),
        Detection("smile", 13, 0.6, (0.1, 0.6, 0.4, 0.9)),
    ]
    model = ModelRef(name="gestures", version="4")
    events = build_events(meta, found, detected_ms=1_795_000_000_050, model=model, worker_id="w")
    assert [e.label for e in events] == ["like", "smile"]
    frame = build_frame_detections(
        meta, found, detected_ms=1_795_000_000_050, model=model, worker_id="w"
    )
    assert [h.label for h in frame.hands] == ["like"]
    assert [f.label for f in frame.faces] == ["neutral", "smile"]
