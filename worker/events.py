"""The wire contract of what the worker publishes. The worker produces these messages,
so it owns their schemas; the API side imports them from here.

Two messages share one topic exchange, told apart by the first word of the routing key:

- reaction events, ``reaction.<meeting>.<label>``: one gesture seen in one frame
  (:class:`ReactionEvent`), so a consumer can bind to one meeting (``reaction.m1.*``),
  one gesture everywhere (``reaction.*.thumbs_up``) or all;
- frame detections, ``detections.<meeting>.<participant>``: every hand and face the
  model found in one frame, for every frame it processed (:class:`FrameDetections`).

Both are JSON: they are small, and many languages consume them.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from publisher.protocol import ID_PATTERN

EVENT_SCHEMA_VERSION: Final = 1
DETECTIONS_SCHEMA_VERSION: Final = 2
"""2 adds ``faces``; a version-1 message (no faces) still parses, with none."""
FACE_LABELS: Final = frozenset({"smile", "neutral"})
"""Labels of faces, not hands: the face stage's (``models.dataset.labels.FACE_LABELS``). They go
to :attr:`FrameDetections.faces`, never to its ``hands``."""
NOT_REACTIONS: Final = frozenset({"neutral"})
"""Labels that describe a state, not something a participant does: a face at rest is
in nearly every frame, so it gets no reaction event (its box stays in the frame's
detections)."""
EVENTS_EXCHANGE: Final = "memelearning.reactions"
CONTENT_TYPE: Final = "application/json"
# A valid event is under 1 KiB. Anything far bigger is not parsed at all: validating a
# 12 MB object of a million unknown keys took 18 s of CPU and 2.4 GB (one error each).
MAX_EVENT_BYTES: Final = 64 * 1024

# Namespace for event ids: uuid5(namespace, "<frame message id>/<label>") is the same
# on every worker, so a frame redelivered to another worker yields the same event ids
# and consumers can drop the duplicates.
_EVENT_NAMESPACE: Final = uuid.UUID("5f1d6a3e-4b0e-4c8e-9d8e-6d656d656c72")
# The same for frame detections: uuid5(namespace, "<frame message id>"). A namespace of
# its own, so no frame id can give a detections id equal to some event's id.
_DETECTIONS_NAMESPACE: Final = uuid.UUID("0b7c1f52-93d4-4e0a-a6f1-6d656d656c72")
# Hands reported per frame at most: the detector keeps a few per frame, and a bound
# keeps a message far under MAX_EVENT_BYTES whatever model is served.
MAX_HANDS: Final = 64

# Labels also end up in routing keys: same safe alphabet as meeting ids. Anchored,
# because pydantic's `pattern` otherwise matches anywhere in the string.
_WHOLE_ID = rf"^{ID_PATTERN.pattern}$"
Label = Annotated[str, StringConstraints(pattern=_WHOLE_ID)]
Identifier = Annotated[str, StringConstraints(pattern=_WHOLE_ID)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class Box(BaseModel):
    """A box in normalized image coordinates (0..1), Object Detection API order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ymin: Unit
    xmin: Unit
    ymax: Unit
    xmax: Unit

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if self.ymin > self.ymax or self.xmin > self.xmax:
            raise ValueError("box corners are out of order (need ymin <= ymax, xmin <= xmax)")
        return self


class ModelRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ReactionEvent(BaseModel):
    """One gesture seen in one frame of one participant."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = EVENT_SCHEMA_VERSION
    event_id: uuid.UUID
    frame_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    meeting_id: Identifier
    participant_id: Identifier
    sequence: Annotated[int, Field(ge=0)]
    label: Label
    score: Unit
    box: Box
    capture_ms: Annotated[int, Field(gt=0)]
    detected_ms: Annotated[int, Field(gt=0)]
    model: ModelRef
    worker_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]

    @property
    def routing_key(self) -> str:
        return routing_key(self.meeting_id, self.label)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ReactionEvent:
        """Parse and validate a body; raises :class:`pydantic.ValidationError` for
        anything that is not a valid event, including one over ``MAX_EVENT_BYTES``."""
        _refuse_oversized(cls.__name__, data)
        return cls.model_validate_json(data)


class Hand(BaseModel):
    """One detection in a frame: a hand and its gesture, or (in ``faces``) a face and
    its expression."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: Label
    score: Unit
    box: Box


class FrameDetections(BaseModel):
    """Every hand the model found in one frame of one participant, best score first.

    Published for every frame the worker ran through the model, an empty ``hands``
    included ("looked, found nothing"), so a consumer can tell a hand that went down
    from a frame that never arrived. Reaction events keep one event per label; this
    is the message for whoever needs the whole frame (boxes on a meeting view, a
    gesture made with two hands)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1, 2] = DETECTIONS_SCHEMA_VERSION
    frame_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    meeting_id: Identifier
    participant_id: Identifier
    sequence: Annotated[int, Field(ge=0)]
    capture_ms: Annotated[int, Field(gt=0)]
    detected_ms: Annotated[int, Field(gt=0)]
    model: ModelRef
    worker_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    hands: Annotated[tuple[Hand, ...], Field(max_length=MAX_HANDS)]
    faces: Annotated[tuple[Hand, ...], Field(max_length=MAX_HANDS)] = ()
    """Since schema 2: every face, labelled with its expression (:data:`FACE_LABELS`)."""

    @model_validator(mode="after")
    def _faces_only_since_2(self) -> FrameDetections:
        if self.schema_version == 1 and self.faces:
            raise ValueError("faces need schema_version 2")
        return self

    @property
    def message_id(self) -> uuid.UUID:
        return detections_id(self.frame_id)

    @property
    def routing_key(self) -> str:
        return detections_routing_key(self.meeting_id, self.participant_id)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> FrameDetections:
        """Parse and validate a body, like :meth:`ReactionEvent.from_json`."""
        _refuse_oversized(cls.__name__, data)
        return cls.model_validate_json(data)


def _refuse_oversized(title: str, data: bytes | str) -> None:
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_EVENT_BYTES:
        error = PydanticCustomError(
            "event_too_large",
            "the body is {size} bytes, an event is at most {limit}",
            {"size": size, "limit": MAX_EVENT_BYTES},
        )
        raise ValidationError.from_exception_data(
            title, [{"type": error, "loc": (), "input": f"<{size} bytes>"}]
        )


def event_id(frame_id: str, label: str) -> uuid.UUID:
    return uuid.uuid5(_EVENT_NAMESPACE, f"{frame_id}/{label}")


def routing_key(meeting_id: str, label: str) -> str:
    return f"reaction.{meeting_id}.{label}"


def binding_key(meeting_id: str | None = None, label: str | None = None) -> str:
    """The topic pattern that selects one meeting and/or label (``*`` for any)."""
    return f"reaction.{meeting_id or '*'}.{label or '*'}"


def detections_id(frame_id: str) -> uuid.UUID:
    """The message id of a frame's detections: the same on every worker and every
    redelivery of the frame, like event ids."""
    return uuid.uuid5(_DETECTIONS_NAMESPACE, frame_id)


def detections_routing_key(meeting_id: str, participant_id: str) -> str:
    return f"detections.{meeting_id}.{participant_id}"


def detections_binding_key(meeting_id: str | None = None, participant_id: str | None = None) -> str:
    """The topic pattern that selects one meeting's and/or participant's detections."""
    return f"detections.{meeting_id or '*'}.{participant_id or '*'}"
