"""The reaction catalog: which model labels mean which reaction, how long a gesture
must be held to count, the cooldown, and the GIFs and videos to show.

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


class Reaction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Unset fields take the catalog's defaults.
    confirm: Confirm | None = None
    cooldown_s: Annotated[float, Field(ge=0)] | None = None
    gifs: Annotated[tuple[Media, ...], Field(min_length=1)]
    videos: tuple[Media, ...] = ()


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    # model label → reaction name; a label not listed is not a reaction (e.g. "fist").
    labels: dict[Name, Name]
    defaults: Defaults = Defaults()
    reactions: dict[Name, Reaction]

    @model_validator(mode="after")
    def _labels_known(self) -> Catalog:
        unknown = sorted({r for r in self.labels.values() if r not in self.reactions})
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
