"""The rules beyond one held gesture, as pure logic on a fake clock: two-handed
reactions, a wave seen as motion, reactions a meeting switches on or off, the active
speaker, a raised hand, and each reaction's own hold in the packaged catalog. (The same
rules through the broker and the service: test_reactions_service_rules.py.)"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reactions.catalog import Catalog, Motion
from reactions.decide import Decider, Decision
from reactions.dedup import Deduplicator
from reactions.limits import OptOuts, RateLimiter
from reactions.metrics import Metrics
from reactions.motion import SideToSide
from reactions.speakers import ActiveSpeakers
from reactions.testing import make_detections, make_event, make_hand
from reactions.two_hands import two_handed_reactions
from worker.events import Hand

T0 = 1_750_000_000_000
PACKAGED = Catalog.load()
# Left and right hand of one person, well apart.
LEFT, RIGHT = 0.25, 0.75


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def decider_for(clock: Clock, *, burst: int = 100) -> Decider:
    return Decider(
        PACKAGED,
        dedup=Deduplicator(10_000, 600, clock),
        optouts=OptOuts(enabled_by_default=True),
        rate_limiter=RateLimiter(per_minute=600, burst=burst, clock=clock),
        metrics=Metrics(),
        speakers=ActiveSpeakers(5.0, clock),
        clock=clock,
    )


def suppressed(d: Decider, reason: str) -> float:
    return d.metrics.value("memelearning_reactions_suppressed_total", reason=reason)


def frame(
    d: Decider, sequence: int, *hands: Hand, step_ms: int = 500, participant: str = "alice"
) -> tuple[list[Decision], list[Decision]]:
    """One frame as the worker sends it: an event per label (the best hand), then the
    frame's detections. Returns (event decisions, frame decisions)."""
    at = T0 + sequence * step_ms
    labels = sorted({h.label for h in hands})
    events = [
        d.decide(
            make_event(
                label=label,
                sequence=sequence,
                capture_ms=at,
                participant_id=participant,
                frame_id=f"{participant}-{sequence}",
            )
        )
        for label in labels
    ]
    found = make_detections(*hands, sequence=sequence, capture_ms=at, participant_id=participant)
    return events, d.decide_frame(found)


def shown(decisions: list[Decision]) -> list[str]:
    return [d.reaction for d in decisions if d.show and d.reaction is not None]


# -- the packaged catalog


def test_every_packaged_reaction_has_a_hold_of_its_own_and_sensible_defaults() -> None:
    reactions = PACKAGED.reactions
    assert all(r.confirm is not None for r in reactions.values())
    k = {name: PACKAGED.confirm_for(name).k for name in reactions}
    # longer for what hurts when it fires by mistake, and for the two-handed ones
    assert k["thumbs_down"] > k["thumbs_up"]
    assert min(k["fireworks"], k["rain"], k["confetti"]) > k["thumbs_up"]
    assert k["rain"] > k["fireworks"]
    assert k["smile"] > k["thumbs_up"]
    # the model's labels, as the model side names them
    assert PACKAGED.reaction_for("smile") == "smile"
    assert PACKAGED.reaction_for("neutral") is None
    assert PACKAGED.reaction_for("thinking") == "thinking"
    assert PACKAGED.reaction_for("raise_hand") == "raise_hand"
    assert PACKAGED.two_hands == {"like": "fireworks", "dislike": "rain", "peace": "confetti"}
    # a hand at the face is how people sit: off unless a meeting turns it on
    assert not reactions["thinking"].enabled_by_default
    assert reactions["raise_hand"].action == "raise_hand"
    assert reactions["raise_hand"].while_speaking
    assert [n for n, r in reactions.items() if r.while_speaking] == ["raise_hand"]
    assert PACKAGED.motion_reactions() == {"wave": Motion()}


def test_a_reaction_shows_media_or_does_an_action() -> None:
    with pytest.raises(ValidationError, match="at least one GIF"):
        Catalog.model_validate({"labels": {}, "reactions": {"x": {}}})
    with pytest.raises(ValidationError, match="shows no media"):
        Catalog.model_validate(
            {
                "labels": {},
                "reactions": {"x": {"action": "raise_hand", "gifs": [{"url": "a.gif"}]}},
            }
        )
    with pytest.raises(ValidationError, match="lacks: nope"):
        Catalog.model_validate(
            {
                "labels": {},
                "two_hands": {"like": "nope"},
                "reactions": {"x": {"gifs": [{"url": "a.gif"}]}},
            }
        )


# -- two hands


def test_two_distinct_hands_of_one_gesture_make_a_two_handed_reaction() -> None:
    pairs = PACKAGED.two_hands
    two = [make_hand("like", x=LEFT), make_hand("like", x=RIGHT)]
    assert two_handed_reactions(two, pairs) == ["fireworks"]
    assert two_handed_reactions(two[:1], pairs) == []
    # one hand found twice (boxes on top of each other) is one hand
    assert two_handed_reactions([make_hand("like"), make_hand("like", x=0.31)], pairs) == []
    # two different gestures, or a gesture with no two-handed reaction, are not a pair
    assert two_handed_reactions([make_hand("like", x=LEFT), make_hand("dislike")], pairs) == []
    assert two_handed_reactions([make_hand("ok", x=LEFT), make_hand("ok", x=RIGHT)], pairs) == []
    # faces and other hands in the frame do not matter
    with_face = [*two, make_hand("smile", x=0.5, width=0.3), make_hand("fist", x=0.5)]
    assert two_handed_reactions(with_face, pairs) == ["fireworks"]


def test_two_thumbs_up_held_become_fireworks_and_not_a_thumbs_up_first() -> None:
    d = decider_for(Clock())
    both = (make_hand("like", x=LEFT), make_hand("like", x=RIGHT))
    results = [frame(d, s, *both) for s in range(1, 5)]
    # the one-handed thumbs up confirms on the third frame and gives way
    assert [shown(events) for events, _ in results] == [[], [], [], []]
    assert suppressed(d, "two_handed") == 1
    # the two-handed hold (4 frames in the packaged catalog) confirms on the fourth
    assert [shown(found) for _, found in results] == [[], [], [], ["fireworks"]]
    assert results[3][1][0].media is not None
    assert results[3][1][0].media.url.startswith("gifs/fireworks_")


def test_one_thumb_up_is_still_a_thumbs_up() -> None:
    d = decider_for(Clock())
    results = [frame(d, s, make_hand("like"), make_hand("fist", x=RIGHT)) for s in (1, 2, 3)]
    assert [shown(events) for events, _ in results] == [[], [], ["thumbs_up"]]
    assert all(found == [] for _, found in results)


def test_a_two_handed_reaction_switched_off_leaves_the_one_handed_one() -> None:
    d = decider_for(Clock())
    d.optouts.set_reaction("m1", "fireworks", False)
    both = (make_hand("like", x=LEFT), make_hand("like", x=RIGHT))
    results = [frame(d, s, *both) for s in (1, 2, 3)]
    assert [shown(events) for events, _ in results] == [[], [], ["thumbs_up"]]
    assert suppressed(d, "disabled") == 3


def test_a_frames_detections_delivered_twice_count_once() -> None:
    d = decider_for(Clock())
    both = (make_hand("peace", x=LEFT), make_hand("peace", x=RIGHT))
    for s in (1, 2, 3):
        again = make_detections(*both, sequence=s, capture_ms=T0 + s * 500)
        d.decide_frame(again)
        assert [x.reason for x in d.decide_frame(again)] == ["duplicate"]
    found = d.decide_frame(make_detections(*both, sequence=4, capture_ms=T0 + 2000))
    assert shown(found) == ["confetti"]


# -- per-reaction holds


def test_thumbs_down_needs_a_longer_hold_than_thumbs_up() -> None:
    d = decider_for(Clock())
    down = [shown(frame(d, s, make_hand("dislike"))[0]) for s in (1, 2, 3, 4)]
    up = [shown(frame(d, s, make_hand("like"), participant="bob")[0]) for s in (1, 2, 3)]
    assert down == [[], [], [], ["thumbs_down"]]
    assert up == [[], [], ["thumbs_up"]]


# -- reactions a meeting switches


def test_thinking_is_off_until_a_meeting_turns_it_on() -> None:
    d = decider_for(Clock())
    off = [shown(frame(d, s, make_hand("thinking"))[0]) for s in range(1, 6)]
    assert off == [[]] * 5 and suppressed(d, "disabled") == 5
    # when the meeting turns it on, a new hold shows it; other meetings stay off
    d.optouts.set_reaction("m1", "thinking", True)
    on = [shown(frame(d, s, make_hand("thinking"))[0]) for s in range(6, 10)]
    assert on == [[], [], [], ["thinking"]]
    assert not d.optouts.reaction_enabled("m2", "thinking", False)
    # and back to the catalog's default
    d.optouts.reset_reaction("m1", "thinking")
    assert d.decide(make_event(label="thinking", sequence=20)).reason == "disabled"


def test_the_meetings_own_switch_comes_first() -> None:
    d = decider_for(Clock())
    d.optouts.set_reaction("m1", "thinking", True)
    d.optouts.set("m1", False)
    assert d.decide(make_event(label="thinking", sequence=1)).reason == "opt_out"


# -- the active speaker


def test_speaker_marks_expire_unless_refreshed() -> None:
    clock = Clock()
    speakers = ActiveSpeakers(5.0, clock)
    assert speakers.mark("m1", "alice")  # a new turn
    clock.now += 4
    assert not speakers.mark("m1", "alice")  # a refresh
    clock.now += 4.9
    assert speakers.speaking("m1", "alice") and speakers.speakers("m1") == ["alice"]
    clock.now += 0.2
    assert not speakers.speaking("m1", "alice") and speakers.speakers("m1") == []
    assert speakers.mark("m1", "alice")  # speaking again is a new turn
    speakers.unmark("m1", "alice")
    assert not speakers.speaking("m1", "alice")


def test_a_speakers_gestures_are_held_back_but_a_raised_hand_is_not() -> None:
    clock = Clock()
    d = decider_for(clock)
    d.speakers.mark("m1", "alice")
    # alice talks with her hands: no thumbs up, and those frames start no hold
    assert [shown(frame(d, s, make_hand("like"))[0]) for s in (1, 2, 3)] == [[], [], []]
    assert suppressed(d, "speaking") == 3
    # bob, listening, is not affected
    assert frame(d, 3, make_hand("like"), participant="bob")[0][0].reason == "not_confirmed"
    # a raised hand goes through while she speaks (raise_hand holds 4 frames)
    raised = [frame(d, s, make_hand("raise_hand"))[0] for s in (4, 5, 6, 7)]
    assert [r[0].action for r in raised] == [None, None, None, "raise_hand"]
    # once her mark runs out, a thumbs up needs a whole hold of its own
    clock.now += 5.1
    assert [shown(frame(d, s, make_hand("like"))[0]) for s in (8, 9, 10)] == [
        [],
        [],
        ["thumbs_up"],
    ]


def test_a_raised_hand_is_an_action_outside_the_meetings_gif_budget() -> None:
    clock = Clock()
    d = decider_for(clock, burst=1)
    assert shown(frame(d, 3, make_hand("like"))[0] + frame(d, 4, make_hand("like"))[0]) == []
    assert shown(frame(d, 5, make_hand("like"))[0]) == ["thumbs_up"]  # the one token
    results = [frame(d, s, make_hand("raise_hand"), participant="bob")[0] for s in range(1, 5)]
    decision = results[-1][0]
    assert (decision.reaction, decision.action, decision.media) == (
        "raise_hand",
        "raise_hand",
        None,
    )
    # its cooldown still applies
    again = [frame(d, s, make_hand("raise_hand"), participant="bob")[0] for s in range(5, 9)]
    assert again[-1][0].reason == "cooldown"


# -- a wave, seen as motion


def palm_at(x: float) -> Hand:
    return make_hand("palm", x=x, width=0.2)


def wave(d: Decider, xs: list[float | None], step_ms: int) -> list[list[str]]:
    """A participant's frames with an open palm at these centres (None: no palm)."""
    out = []
    for s, x in enumerate(xs, start=1):
        events, found = frame(d, s, *([] if x is None else [palm_at(x)]), step_ms=step_ms)
        out.append(shown(events) + shown(found))
    return out


def test_a_palm_waving_side_to_side_at_6_fps_is_a_wave_before_the_static_hold() -> None:
    d = decider_for(Clock())
    # over and back by 0.75 of the box's width each way, at 150 ms a frame (6.7 fps)
    assert wave(d, [0.30, 0.45, 0.30, 0.45], step_ms=150) == [[], [], ["wave"], []]
    m = d.metrics
    assert m.value("memelearning_reactions_motion_confirmed_total", reaction="wave") == 1
    # the static hold of the same palm starts over: it does not fire the frame after
    assert m.value("memelearning_reactions_confirmed_total", reaction="wave") == 1


def test_the_same_motion_at_2_fps_is_left_to_the_static_hold() -> None:
    d = decider_for(Clock())
    assert wave(d, [0.30, 0.45, 0.30, 0.45], step_ms=500) == [[], [], [], ["wave"]]
    assert d.metrics.value("memelearning_reactions_motion_confirmed_total", reaction="wave") == 0


@pytest.mark.parametrize(
    ("xs", "why"),
    [
        ([0.30, 0.32, 0.29, 0.31, 0.30, 0.32], "a still palm's box jitters: no stroke is long"),
        ([0.20, 0.30, 0.40, 0.50, 0.60, 0.70], "a palm moving across, never back"),
        ([0.30, 0.45, None, None, 0.30, 0.45], "two frames without the palm end a wave"),
    ],
)
def test_what_is_no_wave(xs: list[float | None], why: str) -> None:
    side_to_side = SideToSide()
    confirmed = [
        side_to_side.observe(
            "m1", "alice", "wave", s, T0 + s * 100, [] if x is None else [palm_at(x).box], Motion()
        )
        for s, x in enumerate(xs, start=1)
    ]
    assert not any(confirmed), why


def test_a_wave_survives_one_frame_the_model_missed() -> None:
    side_to_side = SideToSide()
    xs = [0.30, 0.45, None, 0.30]
    confirmed = [
        side_to_side.observe(
            "m1", "alice", "wave", s, T0 + s * 100, [] if x is None else [palm_at(x).box], Motion()
        )
        for s, x in enumerate(xs, start=1)
    ]
    assert confirmed == [False, False, False, True]


def test_only_hands_that_map_to_the_wave_make_one() -> None:
    d = decider_for(Clock())
    for s, x in enumerate([0.30, 0.45, 0.30, 0.45], start=1):
        found = make_detections(make_hand("fist", x=x), sequence=s, capture_ms=T0 + s * 150)
        assert d.decide_frame(found) == []


def test_a_speaker_waving_makes_no_wave() -> None:
    d = decider_for(Clock())
    d.speakers.mark("m1", "alice")
    assert wave(d, [0.30, 0.45, 0.30, 0.45, 0.30], step_ms=150) == [[]] * 5
