"""Deciding whether a reaction is shown: confirm, cooldown, rate limit, opt-out,
de-duplication and the GIF pick. Pure logic on a fake clock."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from reactions.catalog import Catalog, Confirm, Media, MediaPicker
from reactions.confirm import HoldToConfirm
from reactions.decide import Decider
from reactions.dedup import Deduplicator
from reactions.limits import Cooldowns, OptOuts, RateLimiter
from reactions.metrics import Metrics
from reactions.testing import make_event

T0 = 1_750_000_000_000
RULE = Confirm(k=3, n=5, window_ms=1000)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hold(
    hc: HoldToConfirm, seqs: list[int], *, step_ms: int = 100, rule: Confirm = RULE
) -> list[bool]:
    return [hc.observe("m1", "alice", "thumbs_up", s, T0 + s * step_ms, rule) for s in seqs]


# -- hold to confirm


def test_confirms_on_the_kth_frame_of_a_hold() -> None:
    assert hold(HoldToConfirm(), [1, 2, 3]) == [False, False, True]


def test_k_of_n_tolerates_missed_frames_but_not_too_many() -> None:
    # given 3 of 5 required: frames 1, 3, 5 are within the last 5 frames
    assert hold(HoldToConfirm(), [1, 3, 5]) == [False, False, True]
    # but 1, 4, 7 never have 3 within any 5 consecutive frames
    assert hold(HoldToConfirm(), [1, 4, 7]) == [False, False, False]


def test_frames_outside_the_time_window_do_not_count() -> None:
    # given consecutive frames 600 ms apart: only 2 fit in a 1000 ms window
    assert hold(HoldToConfirm(), [1, 2, 3, 4], step_ms=600) == [False, False, False, False]


def test_the_hold_starts_over_after_a_confirmation() -> None:
    assert hold(HoldToConfirm(), [1, 2, 3, 4, 5, 6]) == [False, False, True, False, False, True]


def test_holds_are_per_participant() -> None:
    hc = HoldToConfirm()
    hc.observe("m1", "alice", "wave", 1, T0, RULE)
    hc.observe("m1", "alice", "wave", 2, T0 + 100, RULE)
    # a third frame from someone else does not complete alice's hold
    assert not hc.observe("m1", "bob", "wave", 3, T0 + 200, RULE)


def test_the_same_frame_counts_once() -> None:
    assert hold(HoldToConfirm(), [1, 1, 1, 2]) == [False, False, False, False]


def test_out_of_order_frames_still_count() -> None:
    assert hold(HoldToConfirm(), [3, 1, 2]) == [False, False, True]


def test_progress_of_a_hold_fades_as_frames_without_the_gesture_go_by() -> None:
    hc = HoldToConfirm()
    hold(hc, [1, 2])

    def held(sequence: int, capture_ms: int | None = None) -> int:
        at = T0 + sequence * 100 if capture_ms is None else capture_ms
        return hc.held("m1", "alice", "thumbs_up", RULE, sequence=sequence, capture_ms=at)

    # two of the three frames needed, while the newest frame is the second
    assert held(2) == 2
    # frames without the gesture push the held ones out of the last n, or out of time
    assert held(5) == 2
    assert held(6) == 1
    assert held(2, capture_ms=T0 + 1150) == 1
    # nobody else's progress, and looking changed nothing: one more frame confirms
    assert hc.held("m1", "bob", "thumbs_up", RULE, sequence=2, capture_ms=T0 + 200) == 0
    assert hold(hc, [3]) == [True]
    assert held(3) == 0


# -- cooldown, rate limit, opt-out, de-duplication


def test_cooldown_is_per_participant_and_reaction_and_expires() -> None:
    clock = Clock()
    cooldowns = Cooldowns(clock)
    assert cooldowns.allow("m1", "alice", "wave", 10)
    assert not cooldowns.allow("m1", "alice", "wave", 10)
    assert cooldowns.allow("m1", "alice", "heart", 10)
    assert cooldowns.allow("m1", "bob", "wave", 10)
    clock.now += 10.01
    assert cooldowns.allow("m1", "alice", "wave", 10)


def test_rate_limit_allows_a_burst_then_the_sustained_rate_per_meeting() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=6, burst=2, clock=clock)
    assert [limiter.allow("m1") for _ in range(3)] == [True, True, False]
    assert limiter.allow("m2")  # another meeting has its own bucket
    clock.now += 9.9
    assert not limiter.allow("m1")  # one token takes 10 s at 6/min
    clock.now += 0.2
    assert limiter.allow("m1")


def test_rate_limit_buckets_of_quiet_meetings_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    for i in range(1500):
        limiter.allow(f"old{i}")
    clock.now += 5  # every bucket has refilled: same as never seen
    for i in range(1500):
        limiter.allow(f"new{i}")
    assert len(limiter) < 2000
    # A meeting still limited keeps its bucket.
    clock.now += 0.001
    assert [limiter.allow("busy") for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize("default", [True, False])
def test_opt_out_follows_the_default_until_set(default: bool) -> None:
    optouts = OptOuts(enabled_by_default=default)
    assert optouts.enabled("m1") is default
    optouts.set("m1", not default)
    assert optouts.enabled("m1") is (not default)
    assert optouts.enabled("m2") is default
    optouts.reset("m1")
    assert optouts.enabled("m1") is default


def test_dedup_remembers_within_ttl_and_size() -> None:
    clock = Clock()
    dedup = Deduplicator(max_size=2, ttl_s=60, clock=clock)
    assert not dedup.seen_before("a")
    assert dedup.seen_before("a")
    assert not dedup.seen_before("b")
    assert not dedup.seen_before("c")  # evicts "a", the oldest
    assert len(dedup) == 2
    assert not dedup.seen_before("a")
    clock.now += 61
    assert not dedup.seen_before("c")  # expired
    assert len(dedup) == 1


# -- the GIF pick


MEDIA = (Media(url="a.gif", weight=6), Media(url="b.gif", weight=3), Media(url="c.gif", weight=1))


def test_pick_never_repeats_the_last_one() -> None:
    picker = MediaPicker(random.Random(1))
    picks = [picker.pick("m1", "wave", "gifs", MEDIA).url for _ in range(500)]
    assert all(a != b for a, b in itertools.pairwise(picks))


def test_pick_follows_the_weights() -> None:
    # given that a never follows a, b follows a with 3/4 and c with 1/4
    picker = MediaPicker(random.Random(7))
    picks = [picker.pick("m1", "wave", "gifs", MEDIA).url for _ in range(4000)]
    after_a = Counter(b for a, b in itertools.pairwise(picks) if a == "a.gif")
    share_b = after_a["b.gif"] / (after_a["b.gif"] + after_a["c.gif"])
    assert 0.70 < share_b < 0.80


def test_pick_repeats_when_there_is_only_one() -> None:
    picker = MediaPicker()
    only = (Media(url="x.gif"),)
    assert [picker.pick("m1", "ok", "gifs", only).url for _ in range(3)] == ["x.gif"] * 3


# -- the decider, in order


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.model_validate(
        {
            "labels": {"like": "thumbs_up", "palm": "wave"},
            "defaults": {"confirm": {"k": 2, "n": 3, "window_ms": 1000}, "cooldown_s": 5},
            "reactions": {
                "thumbs_up": {"gifs": [{"url": "gifs/up1.gif"}, {"url": "gifs/up2.gif"}]},
                "wave": {
                    "gifs": [{"url": "gifs/wave.gif"}],
                    "confirm": {"k": 1, "n": 1, "window_ms": 1000},
                },
            },
        }
    )


def decider_for(catalog: Catalog, clock: Clock, *, enabled: bool = True) -> Decider:
    return Decider(
        catalog,
        dedup=Deduplicator(1000, 60, clock),
        optouts=OptOuts(enabled),
        rate_limiter=RateLimiter(per_minute=60, burst=2, clock=clock),
        metrics=Metrics(),
        clock=clock,
    )


def test_decider_shows_a_confirmed_reaction_and_counts_each_reason(catalog: Catalog) -> None:
    clock = Clock()
    d = decider_for(catalog, clock)
    first = make_event(label="like", sequence=1, capture_ms=T0)
    assert d.decide(first).reason == "not_confirmed"
    assert d.decide(first).reason == "duplicate"
    shown = d.decide(make_event(label="like", sequence=2, capture_ms=T0 + 100))
    assert shown.show
    assert shown.reaction == "thumbs_up"
    assert shown.media is not None
    assert shown.media.url.startswith("gifs/up")
    assert d.decide(make_event(label="fist", sequence=3)).reason == "unmapped"
    d.decide(make_event(label="like", sequence=4, capture_ms=T0 + 300))
    assert d.decide(make_event(label="like", sequence=5, capture_ms=T0 + 400)).reason == "cooldown"
    m = d.metrics
    assert m.value("memelearning_reactions_confirmed_total", reaction="thumbs_up") == 2
    for reason, count in [("not_confirmed", 2), ("duplicate", 1), ("unmapped", 1), ("cooldown", 1)]:
        assert m.value("memelearning_reactions_suppressed_total", reason=reason) == count
    assert m.value("memelearning_reactions_events_total") == 6


def test_decider_rate_limits_a_meeting_across_participants(catalog: Catalog) -> None:
    d = decider_for(catalog, Clock())
    results = [
        d.decide(make_event(participant_id=p, label="palm", sequence=1)).reason
        for p in ("a", "b", "c")
    ]
    assert results == [None, None, "rate_limit"]


def test_decider_opt_out_is_checked_at_run_time(catalog: Catalog) -> None:
    d = decider_for(catalog, Clock(), enabled=True)
    d.optouts.set("m1", False)
    assert d.decide(make_event(label="palm", sequence=1)).reason == "opt_out"
    d.optouts.set("m1", True)
    assert d.decide(make_event(label="palm", sequence=2)).show


def test_catalog_rejects_labels_mapped_to_unknown_reactions() -> None:
    with pytest.raises(ValueError, match="lacks: nope"):
        Catalog.model_validate({"labels": {"x": "nope"}, "reactions": {}})


def test_packaged_catalog_loads_and_its_media_exist() -> None:
    from reactions.catalog import MEDIA_DIR

    catalog = Catalog.load()
    assert catalog.reaction_for("like") == "thumbs_up"
    assert catalog.reaction_for("palm") == "wave"
    assert catalog.reaction_for("ok") == "ok_hand"
    for reaction in catalog.reactions.values():
        for media in (*reaction.gifs, *reaction.videos):
            path = MEDIA_DIR / media.url
            assert path.is_file(), path
            assert path.stat().st_size < 20_000
