"""The reaction catalog: which model labels mean which reaction (alone, or shown by two
hands at once), how long each must be held to count, its cooldown, whether meetings
get it unless they switch it off, and the GIFs and videos to show or the meeting
action to take.

It is configuration, not code: a JSON file the operator can replace
(``MEMELEARNING_REACTIONS_CATALOG``); the packaged default is ``catalog.json`` next to
this module. See docs/reactions.md for the format.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

DEFAULT_CATALOG: Final = Path(__file__).resolve().parent / "catalog.json"
MEDIA_DIR: Final = Path(__file__).resolve().parent / "media"

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Confirm(BaseModel):
    """Hold to confirm: at least ``k`` of the participant's last ``n`` frames show the
    gesture, all within ``window_ms`` of capture time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: Annotated[int, Field(ge=1)] = 3
    n: Annotated[int, Field(ge=1)] = 5
    window_ms: Annotated[int, Field(gt=0)] = 1500

    @model_validator(mode="after")
    def _k_within_n(self) -> Confirm:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) must not exceed n ({self.n})")
        return self


class Media(BaseModel):
    """One GIF or video: a URL, absolute or relative to the media base URL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    weight: Annotated[float, Field(gt=0)] = 1.0


class Defaults(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    confirm: Confirm = Confirm()
    cooldown_s: Annotated[float, Field(ge=0)] = 10.0


class Motion(BaseModel):
    """Side to side: a hand whose label maps to the reaction, moving back and forth
    across consecutive frames, confirms it without the static hold. Only where the
    participant's frames come at ``min_fps`` or more: slower, a hand moves too far
    between two frames to tell a wave from a hand passing by."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_fps: Annotated[float, Field(gt=0)] = 6.0
    # Changes of direction: 1 is over and back, 2 is over, back and over again.
    reversals: Annotated[int, Field(ge=1)] = 1
    # Each stroke must move the box centre this many box widths.
    min_amplitude: Annotated[float, Field(gt=0)] = 0.5
    window_ms: Annotated[int, Field(gt=0)] = 1500


class Reaction(BaseModel):
    """Something shown (``gifs``, ``videos``) or done (``action``) when a gesture is
    confirmed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Unset fields take the catalog's defaults.
    confirm: Confirm | None = None
    cooldown_s: Annotated[float, Field(ge=0)] | None = None
    gifs: tuple[Media, ...] = ()
    videos: tuple[Media, ...] = ()
    # A meeting API call instead of media: "raise_hand" raises the participant's hand.
    action: Literal["raise_hand"] | None = None
    # Off = only in meetings that switch it on (hand-at-face poses are how people sit).
    enabled_by_default: bool = True
    # Shown while its participant is the active speaker; others wait until they stop.
    while_speaking: bool = False
    motion: Motion | None = None

    @model_validator(mode="after")
    def _shows_or_acts(self) -> Reaction:
        if self.action is None and not self.gifs:
            raise ValueError('a reaction needs at least one GIF ("gifs") or an "action"')
        if self.action is not None and (self.gifs or self.videos):
            raise ValueError(f'the "{self.action}" action shows no media: drop its gifs/videos')
        return self


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    # model label → reaction name; a label not listed is not a reaction (e.g. "fist").
    labels: dict[Name, Name]
    # model label → reaction shown when two hands of one frame show it (FaceTime's two
    # thumbs up: fireworks); read from the worker's per-frame detections.
    two_hands: dict[Name, Name] = {}
    defaults: Defaults = Defaults()
    reactions: dict[Name, Reaction]

    @model_validator(mode="after")
    def _labels_known(self) -> Catalog:
        mapped = {*self.labels.values(), *self.two_hands.values()}
        unknown = sorted(r for r in mapped if r not in self.reactions)
        if unknown:
            raise ValueError(f"labels map to reactions the catalog lacks: {', '.join(unknown)}")
        return self

    @classmethod
    def load(cls, path: Path | None = None) -> Catalog:
        return cls.model_validate_json((path or DEFAULT_CATALOG).read_bytes())

    def reaction_for(self, label: str) -> str | None:
        return self.labels.get(label)

    def confirm_for(self, reaction: str) -> Confirm:
        return self.reactions[reaction].confirm or self.defaults.confirm

    def cooldown_for(self, reaction: str) -> float:
        cooldown = self.reactions[reaction].cooldown_s
        return self.defaults.cooldown_s if cooldown is None else cooldown

    def two_handed_for(self, label: str) -> str | None:
        return self.two_hands.get(label)

    def motion_reactions(self) -> dict[str, Motion]:
        return {name: r.motion for name, r in self.reactions.items() if r.motion is not None}


class MediaPicker:
    """Weighted random choice of a reaction's media that never repeats, per meeting and
    reaction, the item shown last time (when there is another to show)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._last: dict[tuple[str, str, str], str] = {}

    def pick(self, meeting_id: str, reaction: str, kind: str, items: Sequence[Media]) -> Media:
        if not items:
            raise ValueError(f"reaction {reaction!r} has no {kind}")
        key = (meeting_id, reaction, kind)
        last = self._last.get(key)
        candidates = [m for m in items if m.url != last] or list(items)
        chosen = self._rng.choices(candidates, weights=[m.weight for m in candidates])[0]
        self._last[key] = chosen.url
        return chosen

    def forget(self, meeting_id: str) -> None:
        for key in [k for k in self._last if k[0] == meeting_id]:
            del self._last[key]
