"""Hostile frames and reaction events, and the checks every one of them must pass.

Shared by the hypothesis tests (tests/test_fuzz.py), the end-to-end burst test and the
coverage-guided harness (fuzz/), so all three hold the product to the same rules:
each input is either accepted or rejected with a documented reason, never crashes
anything, and costs bounded time and memory.
"""

from __future__ import annotations

import gc
import io
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
from aio_pika.abc import AbstractIncomingMessage
from PIL import Image
from pydantic import ValidationError

from publisher.protocol import (
    CONTENT_TYPE,
    HEADER_CAPTURE_MS,
    HEADER_MEETING,
    HEADER_PARTICIPANT,
    HEADER_SCHEMA,
    HEADER_SEQUENCE,
    SCHEMA_VERSION,
    FrameMeta,
)
from reactions.decide import Decision
from reactions.service import ReactionService
from reactions.settings import ReactionsSettings
from reactions.tail import format_event
from worker.decode import FRAME_FITS, FrameFit
from worker.events import ReactionEvent
from worker.outcomes import FrameRejected, FrameStale
from worker.service import Worker, _Item
from worker.settings import WorkerSettings

ROOT: Final = Path(__file__).resolve().parent.parent
DATA: Final = ROOT.parent / "shared" / "data"
PROTOCOL_DOC: Final = ROOT / "docs" / "protocol.md"

# The model input the decoder resizes into (the detectors' ~320 px).
INPUT_SIZE: Final = (320, 320)
# CPU seconds of the calling thread (wall time on a shared 2-core machine measures the
# neighbours); generous, the measured worst cases are in docs/reliability.md.
DECODE_LIMIT_S: Final = 2.0
PARSE_LIMIT_S: Final = 0.5
# Header names the contract reads, and a few it does not.
HEADER_NAMES: Final = (
    HEADER_SCHEMA,
    HEADER_MEETING,
    HEADER_PARTICIPANT,
    HEADER_CAPTURE_MS,
    HEADER_SEQUENCE,
)


def documented_reasons() -> frozenset[str]:
    """The reject reasons of docs/protocol.md §2.4: the vocabulary the worker
    dead-letters with. Read from the document so code and docs cannot drift apart."""
    text = PROTOCOL_DOC.read_text()
    section = text.split("### 2.4 Reject reasons", 1)[1].split("These are **not**", 1)[0]
    return frozenset(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


# -- seeds: real JPEGs and other formats made from them -------------------------------


def real_jpegs() -> list[bytes]:
    """A handful of real webcam frames and hand crops, byte for byte as stored, plus a
    progressive and a restart-marker re-encode (other libjpeg code paths)."""
    paths = [
        *sorted((DATA / "hagrid-crops" / "like").glob("*.jpg"))[:2],
        *sorted((DATA / "hagrid-crops" / "palm").glob("*.jpg"))[:1],
        *sorted((DATA / "signs").glob("*/*.jpg"))[:1],
    ]
    if len(paths) < 4:
        raise RuntimeError(f"the fuzz seeds need ../shared/data; found {len(paths)} images")
    seeds = [path.read_bytes() for path in paths]
    with Image.open(io.BytesIO(seeds[0])) as image:
        rgb = image.convert("RGB")
    for options in ({"progressive": True}, {"restart_marker_blocks": 1}, {"subsampling": 0}):
        buffer = io.BytesIO()
        rgb.save(buffer, "JPEG", quality=80, **options)
        seeds.append(buffer.getvalue())
    return seeds


def other_formats(jpeg: bytes) -> list[bytes]:
    """The same picture as PNG, GIF, BMP, WebP, TIFF and ICO: what a misconfigured
    publisher would send with a JPEG content type."""
    with Image.open(io.BytesIO(jpeg)) as image:
        rgb = image.convert("RGB")
    out = []
    for fmt in ("PNG", "GIF", "BMP", "WEBP", "TIFF", "ICO"):
        buffer = io.BytesIO()
        rgb.save(buffer, fmt)
        out.append(buffer.getvalue())
    return out


_SOF_MARKERS: Final = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)


def with_dimensions(jpeg: bytes, height: int, width: int) -> bytes:
    """``jpeg`` with its start-of-frame header claiming ``height`` x ``width``: a
    decompression bomb when large (the data stays that of the small image)."""
    i = 2
    while i + 4 <= len(jpeg):
        if jpeg[i] != 0xFF:
            break
        marker = jpeg[i + 1]
        (length,) = struct.unpack(">H", jpeg[i + 2 : i + 4])
        if marker in _SOF_MARKERS:
            start = i + 5  # marker (2), length (2), precision (1)
            return jpeg[:start] + struct.pack(">HH", height, width) + jpeg[start + 4 :]
        i += 2 + length
    raise ValueError("no start-of-frame segment found")


# -- the worker's per-message path ---------------------------------------------------


@dataclass
class FakeMessage:
    """What the worker reads of a delivered message. Property and header values are
    limited to what the AMQP decoder (pamqp) can hand over: str or None for the
    properties; None, bool, int, float, Decimal, str, bytes, datetime, list and dict
    for header values."""

    body: bytes
    content_type: str | None = CONTENT_TYPE
    message_id: str | None = "frame-1"
    headers: dict[str, Any] = field(default_factory=dict)


def valid_headers(capture_ms: int) -> dict[str, Any]:
    return {
        HEADER_SCHEMA: SCHEMA_VERSION,
        HEADER_MEETING: "m1",
        HEADER_PARTICIPANT: "alice",
        HEADER_CAPTURE_MS: capture_ms,
        HEADER_SEQUENCE: 0,
    }


def idle_worker(**overrides: Any) -> Worker:
    """A Worker that is never started: its per-message checks need only settings and
    metrics, so the fuzz runs exactly the code a running worker runs per frame."""
    values: dict[str, Any] = {"amqp_url": "amqp://guest:guest@127.0.0.1:5672/", "http_port": 0}
    values.update(overrides)
    return Worker(WorkerSettings(**values))


@dataclass
class Outcome:
    kind: str  # "accepted", "stale", or "rejected"
    reason: str = ""


def _timed(call: Any, *args: Any) -> tuple[Any, float]:
    """``call(*args)`` and the CPU seconds it took, without a garbage collection
    (caused by the test harness's allocations, not by the input) in the middle."""
    gc.disable()
    try:
        started = time.thread_time()
        result = call(*args)
        return result, time.thread_time() - started
    finally:
        gc.enable()


class FrameChecker:
    """Runs one message through ``Worker._check`` then ``Worker._decode`` (what the
    worker does per frame) and enforces the rules; counts what happened."""

    def __init__(self, worker: Worker, reasons: frozenset[str] | None = None) -> None:
        self.worker = worker
        self.reasons = reasons if reasons is not None else documented_reasons()
        self.out = np.empty((*INPUT_SIZE, 3), dtype=np.uint8)
        self.counts: dict[str, int] = {}
        self.slowest_check_s = 0.0
        self.slowest_decode_s = 0.0
        self.decodes = 0

    def envelope(self, message: FakeMessage, now_ms: float) -> Outcome:
        outcome, seconds = _timed(self._envelope, message, now_ms)
        self.slowest_check_s = max(self.slowest_check_s, seconds)
        assert seconds < PARSE_LIMIT_S, f"envelope check took {seconds:.3f} s"
        assert isinstance(outcome, Outcome)
        return outcome

    def _envelope(self, message: FakeMessage, now_ms: float) -> Outcome:
        try:
            meta = self.worker._check(cast(AbstractIncomingMessage, message), now_ms)
        except FrameRejected as exc:
            return self._rejected(exc)
        except FrameStale:
            return Outcome("stale")
        assert isinstance(meta, FrameMeta)
        return Outcome("accepted")

    def decode(self, body: bytes) -> Outcome:
        # Both ways a model may ask for frames, in turn: a letterboxed frame writes
        # bands around a smaller resize, a stretched one fills the input.
        fit: FrameFit = FRAME_FITS[self.decodes % len(FRAME_FITS)]
        self.decodes += 1
        item = _Item(cast(AbstractIncomingMessage, FakeMessage(body)))
        error, seconds = _timed(self.worker._decode, item, self.out, fit)
        self.slowest_decode_s = max(self.slowest_decode_s, seconds)
        assert seconds < DECODE_LIMIT_S, f"decode took {seconds:.3f} s ({len(body)} bytes)"
        return Outcome("accepted") if error is None else self._rejected(error)

    def message(self, message: FakeMessage, now_ms: float) -> Outcome:
        outcome = self.envelope(message, now_ms)
        if outcome.kind != "accepted":
            return self._count(outcome)
        return self._count(self.decode(message.body))

    def _rejected(self, exc: FrameRejected) -> Outcome:
        assert exc.reason in self.reasons, f"undocumented reject reason {exc.reason!r}"
        assert exc.detail, f"reason {exc.reason!r} without a detail"
        return Outcome("rejected", exc.reason)

    def _count(self, outcome: Outcome) -> Outcome:
        key = outcome.reason or outcome.kind
        self.counts[key] = self.counts.get(key, 0) + 1
        return outcome


# -- the API side's event parser -----------------------------------------------------


class EventChecker:
    """Parses one body as the reactions service and the tail command do; an event that
    parses must then go through the decider without an exception."""

    def __init__(self) -> None:
        settings = ReactionsSettings(
            amqp_url="amqp://guest:guest@127.0.0.1:5672/", meeting_api_url="http://127.0.0.1:1"
        )
        self.service = ReactionService(settings)
        self.counts: dict[str, int] = {"valid": 0, "invalid": 0}
        self.slowest_s = 0.0

    def body(self, body: bytes) -> ReactionEvent | None:
        event, seconds = _timed(self._body, body)
        self.slowest_s = max(self.slowest_s, seconds)
        assert seconds < PARSE_LIMIT_S, f"event parse took {seconds:.3f} s ({len(body)} bytes)"
        self.counts["valid" if event is not None else "invalid"] += 1
        return cast(ReactionEvent | None, event)

    def _body(self, body: bytes) -> ReactionEvent | None:
        problems = 0
        try:
            event: ReactionEvent | None = ReactionEvent.from_json(body)
        except ValidationError as exc:
            problems = exc.error_count()
            event = None
        assert event is not None or problems > 0
        # The tail command logs the first error's location: it must be renderable too.
        line = format_event(body)
        assert (line is None) == (event is None)
        if event is not None:
            decision = self.service.decider.decide(event)
            assert isinstance(decision, Decision)
            assert decision.show or decision.reason
        return event
