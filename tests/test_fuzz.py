"""Hostile input, generated: frames through the worker's per-message path (contract
check, then JPEG decode) and reaction events through the API side's parser.

Each test states how many inputs it generates; together they are over 10,000 frames
and 1,000 events, derandomized, so CI runs the same inputs every time. Each input
must be accepted or rejected with a documented reason and a detail, within a time
limit, and the whole run must stay within a memory bound.
Scale up locally with MEMELEARNING_FUZZ_SCALE=10 (ten times the examples, random).
"""

from __future__ import annotations

import json
import math
import os
import resource
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.protocol import (
    CONTENT_TYPE,
    HEADER_CAPTURE_MS,
    HEADER_MEETING,
    HEADER_PARTICIPANT,
    HEADER_SCHEMA,
    HEADER_SEQUENCE,
)
from reactions.testing import make_event
from tests.hostile import (
    HEADER_NAMES,
    EventChecker,
    FakeMessage,
    FrameChecker,
    documented_reasons,
    idle_worker,
    other_formats,
    real_jpegs,
    valid_headers,
    with_dimensions,
)

SCALE: Final = int(os.environ.get("MEMELEARNING_FUZZ_SCALE", "1"))
NOW_MS: Final = 1_800_000_000_000
# A small body limit keeps "oversized" cheap to generate; the check is the same code.
MAX_BYTES: Final = 256 * 1024
# Peak RSS may grow by this much per test: a bomb that got decoded (65000 x 65000 RGB
# is 12 GiB) or a leak of 100 kB per frame would blow through it. Not tighter: the
# peak is process-wide, and in a full run other tests' threads and allocator arenas
# move it too (287 MB was seen once on a loaded machine, 43 MB alone).
RSS_GROWTH_LIMIT_MB: Final = 1024


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        derandomize=SCALE == 1,
        database=None,
        deadline=None,  # time per input is asserted by the checker instead
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


SEEDS: Final = real_jpegs()
FOREIGN: Final = other_formats(SEEDS[0])
WORKER: Final = idle_worker(max_frame_bytes=MAX_BYTES)
FRAMES: Final = FrameChecker(WORKER)
EVENTS: Final = EventChecker()
BOMB_CHECKERS: Final = {
    limit: FrameChecker(idle_worker(max_frame_pixels=limit))
    for limit in (320 * 240, 640 * 480, 4096 * 4096)
}


@pytest.fixture(autouse=True)
def bounded_memory(request: pytest.FixtureRequest) -> Iterator[None]:
    before = peak_rss_mb()
    yield
    grown = peak_rss_mb() - before
    print(f"\n{request.node.name}: peak RSS {before:.0f} MB before, grew {grown:.0f} MB")
    assert grown < RSS_GROWTH_LIMIT_MB


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    checkers = [FRAMES, *BOMB_CHECKERS.values()]
    counts: dict[str, int] = {}
    for checker in checkers:
        for key, n in checker.counts.items():
            counts[key] = counts.get(key, 0) + n
    print(
        f"\nframes: {sum(counts.values())} {dict(sorted(counts.items()))}; "
        f"slowest check {max(c.slowest_check_s for c in checkers) * 1000:.1f} ms CPU, "
        f"slowest decode {max(c.slowest_decode_s for c in checkers) * 1000:.1f} ms CPU; "
        f"events: {EVENTS.counts}, slowest {EVENTS.slowest_s * 1000:.1f} ms CPU"
    )


# -- bodies ---------------------------------------------------------------------------


@st.composite
def mutated_jpeg(draw: st.DrawFn) -> bytes:
    """A real JPEG, damaged the ways transmission and hostile publishers damage them."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete", "splice"])
        )
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at : at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 256))]
        else:
            other = draw(st.sampled_from(SEEDS))
            data[at:] = other[draw(st.integers(0, len(other) - 1)) :]
    return bytes(data)


# Dimensions a JPEG header may claim: 65000 x 65000, just over the pixel limit, zero,
# thin and wide, or anything a 16-bit field holds.
bomb_dims = st.sampled_from(
    [(65000, 65000), (65535, 65535), (4097, 4096), (0, 640), (480, 0), (1, 65535)]
) | st.tuples(st.integers(0, 65535), st.integers(0, 65535))


@st.composite
def bomb(draw: st.DrawFn) -> bytes:
    """A real JPEG whose header claims other dimensions than its data has."""
    return with_dimensions(draw(st.sampled_from(SEEDS)), *draw(bomb_dims))


def bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        mutated_jpeg(),
        bomb(),
        st.sampled_from(FOREIGN),
        st.sampled_from(FOREIGN).map(lambda b: b"\xff\xd8\xff\xe0" + b[4:]),
        st.integers(1, 4096).map(bytes),  # zero bytes
        st.binary(max_size=2048),
        st.binary(max_size=512).map(lambda b: b"\xff\xd8" + b),  # SOI, then garbage
        st.sampled_from(SEEDS).map(lambda b: b[: len(b) // 2] + b"\xff\xd9"),
    )


# -- envelopes ------------------------------------------------------------------------

# What pamqp can decode a header value into (see tests.hostile.FakeMessage). Kept
# shallow: deep random structures cost generation time and test nothing new here.
wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.decimals(allow_nan=False, allow_infinity=False, places=2)
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.just(datetime(2026, 1, 1, tzinfo=UTC)),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=3,
)

hostile_ids = st.one_of(
    st.text(max_size=70),
    st.sampled_from(["", "a.b", "m#1", "*", "m 1", "x" * 65, "ünïcode", "m1\n", "m1\x00"]),
    st.binary(max_size=80),  # non-UTF-8 when it arrives as a long string
    st.sampled_from([b"\xff\xfe", b"m1\xc3(", b"\xed\xa0\x80"]),
    wire_values,
)

hostile_ints = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, 1, 2, 1_500_000_000, 1_500_000_000_000_000, True, False]),
    st.sampled_from(["1", "1800000000000", b"1", 1.0, 1.8e12, math.nan, math.inf]),
    wire_values,
)

_HEADER_STRATEGY: Final = {
    HEADER_SCHEMA: hostile_ints,
    HEADER_MEETING: hostile_ids,
    HEADER_PARTICIPANT: hostile_ids,
    HEADER_CAPTURE_MS: hostile_ints,
    HEADER_SEQUENCE: hostile_ints,
}


@st.composite
def headers(draw: st.DrawFn) -> dict[str, Any]:
    """Valid headers with some missing, replaced by hostile values, or joined by junk."""
    h: dict[str, Any] = valid_headers(NOW_MS)
    for name in HEADER_NAMES:
        action = draw(st.sampled_from(["keep", "keep", "drop", "replace"]))
        if action == "drop":
            del h[name]
        elif action == "replace":
            h[name] = draw(_HEADER_STRATEGY[name])
    extra = st.text(max_size=8) | st.sampled_from(["", "x" * 255, "x-meeting-id ", "X-MEETING-ID"])
    h.update(draw(st.dictionaries(extra, wire_values, max_size=2)))
    return h


content_types = st.one_of(
    st.just(CONTENT_TYPE),
    st.sampled_from(
        [None, "", "image/png", "IMAGE/JPEG", "image/jpeg ", "image/jpeg; q=1", "image/jpg"]
    ),
    st.text(max_size=40),
)
message_ids = st.one_of(
    st.just("frame-1"),
    st.sampled_from([None, "", "x" * 128, "x" * 129, "x" * 255]),
    st.text(max_size=40),
)


# -- frames ---------------------------------------------------------------------------


@fuzz_settings(3500)
@given(
    content_type=content_types,
    message_id=message_ids,
    headers=headers(),
    size=st.sampled_from([len(SEEDS[0]), 0]) | st.integers(MAX_BYTES - 2, MAX_BYTES + 2),
)
def test_hostile_envelopes_are_accepted_or_rejected_with_a_documented_reason(
    content_type: str | None, message_id: str | None, headers: dict[str, Any], size: int
) -> None:
    # Built here, not drawn: hypothesis keeps what it draws, and 10,000 oversized
    # bodies held by the test harness would hide the product's own memory use.
    body = {len(SEEDS[0]): SEEDS[0], 0: b""}.get(size) or b"\xff\xd8" + bytes(size)[2:]
    message = FakeMessage(body, content_type, message_id, headers)
    outcome = FRAMES.message(message, NOW_MS)
    if outcome.kind == "accepted":
        # Nothing broken gets through: everything the contract reads was valid.
        assert content_type == CONTENT_TYPE and message_id and len(message_id) <= 128
        assert 0 < len(body) <= MAX_BYTES
        assert headers[HEADER_SCHEMA] == 1 and type(headers[HEADER_SCHEMA]) is int
        for name in (HEADER_MEETING, HEADER_PARTICIPANT):
            value = headers[name]
            text = value.decode() if isinstance(value, bytes) else value
            assert isinstance(text, str) and text.isascii() and 1 <= len(text) <= 64


@fuzz_settings(5000)
@given(body=bodies())
def test_hostile_bodies_are_decoded_or_rejected_with_a_documented_reason(body: bytes) -> None:
    outcome = FRAMES.message(FakeMessage(body, headers=valid_headers(NOW_MS)), NOW_MS)
    if outcome.kind == "rejected":
        assert outcome.reason in {
            "empty_body",
            "not_jpeg",
            "corrupt_jpeg",
            "decompression_bomb",
        } | ({"too_large"} if len(body) > MAX_BYTES else set())


@fuzz_settings(1500)
@given(
    seed=st.sampled_from(SEEDS),
    dims=bomb_dims,
    limit=st.sampled_from([320 * 240, 640 * 480, 4096 * 4096]),
)
def test_declared_dimensions_over_the_pixel_limit_are_rejected_before_decoding(
    seed: bytes, dims: tuple[int, int], limit: int
) -> None:
    checker = BOMB_CHECKERS[limit]
    outcome = checker.message(
        FakeMessage(with_dimensions(seed, *dims), headers=valid_headers(NOW_MS)), NOW_MS
    )
    if dims[0] * dims[1] > limit:
        assert outcome.kind == "rejected"
        assert outcome.reason in {"decompression_bomb", "corrupt_jpeg"}


def test_the_known_bombs_are_rejected_as_bombs() -> None:
    for seed in SEEDS[:4]:
        for dims in [(65000, 65000), (65535, 65535), (4097, 4096)]:
            outcome = FRAMES.decode(with_dimensions(seed, *dims))
            assert (outcome.kind, outcome.reason) == ("rejected", "decompression_bomb")


def test_the_reason_vocabulary_is_read_from_the_protocol_document() -> None:
    # Guards the fuzz itself: an empty vocabulary would reject every reason.
    assert {"content_type", "not_jpeg", "corrupt_jpeg", "decompression_bomb"} <= (
        documented_reasons()
    )


# -- reaction events ------------------------------------------------------------------

_VALID: Final = json.loads(make_event().to_json())

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
hostile_event_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            "",
            "a.b",
            "m#1",
            "x" * 65,
            "x" * 129,
            "00000000-0000-0000-0000-00000000000g",
            -1,
            0,
            2**64,
            10**400,
            1.5,
            "0.9",
            [],
            {},
        ]
    ),
)
# JSON has no NaN or Infinity, but Python's json module (and some producers) write them.
NON_FINITE: Final = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "nan", "inf"]


@st.composite
def event_documents(draw: st.DrawFn) -> bytes:
    doc: dict[str, Any] = json.loads(json.dumps(_VALID))
    for key in draw(st.lists(st.sampled_from(sorted(doc)), max_size=4, unique=True)):
        action = draw(st.sampled_from(["drop", "replace", "replace"]))
        if action == "drop":
            del doc[key]
        else:
            doc[key] = draw(hostile_event_values)
    if draw(st.integers(0, 3)) == 0:
        doc["box"] = draw(
            st.fixed_dictionaries(
                {k: st.floats() | hostile_event_values for k in ("ymin", "xmin", "ymax", "xmax")}
            )
        )
    if draw(st.integers(0, 3)) == 0:
        doc.update(draw(st.dictionaries(st.text(max_size=20), json_values, max_size=2)))
    text = json.dumps(doc, allow_nan=True)
    if draw(st.integers(0, 3)) == 0:
        # A non-finite number where the score goes (json.dumps cannot write all of them).
        text = text.replace(
            json.dumps(doc.get("score")) if "score" in doc else "\x00",
            draw(st.sampled_from(NON_FINITE)),
            1,
        )
    return text.encode()


event_bodies = st.one_of(
    event_documents(),
    st.binary(max_size=512),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [
            b"",
            b"\xff\xfe{}",
            b'{"score": NaN}',
            json.dumps(_VALID).encode()[:-1],
            json.dumps(_VALID).encode() + b"garbage",
        ]
    ),
)


@fuzz_settings(1000)
@given(body=event_bodies)
def test_hostile_reaction_events_parse_or_are_rejected_as_invalid(body: bytes) -> None:
    event = EVENTS.body(body)
    if event is not None:
        assert 0.0 <= event.score <= 1.0 and math.isfinite(event.score)
        assert event.meeting_id.isascii() and event.label.isascii()


HUGE_EVENTS: Final = {
    "deep_list": b"[" * 100_000 + b"]" * 100_000,  # nesting far past any parser's stack
    "deep_object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "8 MB string": b'{"frame_id": "' + b"x" * 8_000_000 + b'"}',
    "8 MB escapes": b'{"frame_id": "' + b"\\u00e9" * 1_300_000 + b'"}',
    "1M keys": b"{" + b",".join(b'"k%d":1' % i for i in range(1_000_000)) + b"}",
    "huge number": b'{"sequence": 1' + b"0" * 1_000_000 + b"}",
    # Just under the size limit, so parsed: the worst case that is not refused unread.
    "64 KiB of keys": b"{" + b",".join(b'"k%d":1' % i for i in range(6_000)) + b"}",
    "64 KiB deep": b"[" * 32_000 + b"]" * 32_000,
}


@pytest.mark.parametrize("name", sorted(HUGE_EVENTS))
def test_huge_and_deep_reaction_events_are_rejected_in_bounded_time(name: str) -> None:
    assert EVENTS.body(HUGE_EVENTS[name]) is None


def test_the_event_fuzz_accepts_valid_events() -> None:
    # Guards the fuzz itself: a checker that rejected everything would pass the test above.
    assert EVENTS.body(make_event().to_json()) is not None
    assert EVENTS.body(make_event(capture_ms=int(datetime.now(UTC).timestamp() * 1000)).to_json())
