"""What the meeting side tells the reactions service over HTTP, at run time: whether a
meeting shows reactions, which reactions it shows, and who is speaking.

::

    PUT|GET|DELETE /meetings/{meeting}/reactions              {"enabled": false}
    PUT|GET|DELETE /meetings/{meeting}/reactions/{reaction}   {"enabled": true}
    PUT|DELETE     /meetings/{meeting}/speakers/{participant}
    GET            /meetings/{meeting}/speakers

State lives in the process (lost on restart; the meeting platform, which owns it,
applies it again). Bad input is answered 400 (404 for a reaction the catalog lacks)
with one line that says what to send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from publisher.protocol import ID_PATTERN
from reactions.catalog import Catalog
from reactions.limits import OptOuts
from reactions.speakers import ActiveSpeakers

logger = logging.getLogger(__name__)

_ENABLED = 'expected JSON like {"enabled": false}'


class MeetingControls:
    def __init__(
        self,
        catalog: Catalog,
        optouts: OptOuts,
        speakers: ActiveSpeakers,
        *,
        on_speaking: Callable[[str, str], None] = lambda meeting, participant: None,
    ) -> None:
        """``on_speaking(meeting, participant)`` runs when a participant starts a turn
        (a mark that is not a refresh): it lowers their raised hand."""
        self.catalog = catalog
        self.optouts = optouts
        self.speakers = speakers
        self._on_speaking = on_speaking

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/meetings/{meeting}/reactions", self._get_meeting)
        r.add_put("/meetings/{meeting}/reactions", self._put_meeting)
        r.add_delete("/meetings/{meeting}/reactions", self._delete_meeting)
        r.add_get("/meetings/{meeting}/reactions/{reaction}", self._get_reaction)
        r.add_put("/meetings/{meeting}/reactions/{reaction}", self._put_reaction)
        r.add_delete("/meetings/{meeting}/reactions/{reaction}", self._delete_reaction)
        r.add_get("/meetings/{meeting}/speakers", self._get_speakers)
        r.add_put("/meetings/{meeting}/speakers/{participant}", self._put_speaker)
        r.add_delete("/meetings/{meeting}/speakers/{participant}", self._delete_speaker)

    # -- the meeting's switch

    def _meeting_state(self, meeting: str) -> dict[str, Any]:
        return {
            "meeting_id": meeting,
            "enabled": self.optouts.enabled(meeting),
            "reactions": {
                name: self.optouts.reaction_enabled(meeting, name, entry.enabled_by_default)
                for name, entry in sorted(self.catalog.reactions.items())
            },
        }

    async def _get_meeting(self, request: web.Request) -> web.Response:
        return web.json_response(self._meeting_state(_id(request, "meeting")))

    async def _put_meeting(self, request: web.Request) -> web.Response:
        meeting = _id(request, "meeting")
        enabled = await _enabled(request)
        self.optouts.set(meeting, enabled)
        logger.info("meeting %s: reactions %s", meeting, "on" if enabled else "off")
        return web.json_response({"meeting_id": meeting, "enabled": enabled})

    async def _delete_meeting(self, request: web.Request) -> web.Response:
        meeting = _id(request, "meeting")
        self.optouts.reset(meeting)
        return web.json_response({"meeting_id": meeting, "enabled": self.optouts.enabled(meeting)})

    # -- one reaction in the meeting

    def _reaction(self, request: web.Request) -> str:
        reaction = request.match_info["reaction"]
        if reaction not in self.catalog.reactions:
            known = ", ".join(sorted(self.catalog.reactions))
            raise web.HTTPNotFound(text=f"no reaction {reaction!r} in the catalog; it has: {known}")
        return reaction

    def _reaction_state(self, meeting: str, reaction: str) -> dict[str, Any]:
        default = self.catalog.reactions[reaction].enabled_by_default
        return {
            "meeting_id": meeting,
            "reaction": reaction,
            "enabled": self.optouts.reaction_enabled(meeting, reaction, default),
            "default": default,
        }

    async def _get_reaction(self, request: web.Request) -> web.Response:
        meeting, reaction = _id(request, "meeting"), self._reaction(request)
        return web.json_response(self._reaction_state(meeting, reaction))

    async def _put_reaction(self, request: web.Request) -> web.Response:
        meeting, reaction = _id(request, "meeting"), self._reaction(request)
        enabled = await _enabled(request)
        self.optouts.set_reaction(meeting, reaction, enabled)
        logger.info("meeting %s: %s %s", meeting, reaction, "on" if enabled else "off")
        return web.json_response(self._reaction_state(meeting, reaction))

    async def _delete_reaction(self, request: web.Request) -> web.Response:
        meeting, reaction = _id(request, "meeting"), self._reaction(request)
        self.optouts.reset_reaction(meeting, reaction)
        return web.json_response(self._reaction_state(meeting, reaction))

    # -- active speakers

    async def _get_speakers(self, request: web.Request) -> web.Response:
        meeting = _id(request, "meeting")
        return web.json_response(
            {"meeting_id": meeting, "speakers": self.speakers.speakers(meeting)}
        )

    async def _put_speaker(self, request: web.Request) -> web.Response:
        meeting, participant = _id(request, "meeting"), _id(request, "participant")
        if self.speakers.mark(meeting, participant):
            self._on_speaking(meeting, participant)
        return web.json_response(
            {
                "meeting_id": meeting,
                "participant_id": participant,
                "speaking": True,
                "expires_in_s": self.speakers.ttl_s,
            }
        )

    async def _delete_speaker(self, request: web.Request) -> web.Response:
        meeting, participant = _id(request, "meeting"), _id(request, "participant")
        self.speakers.unmark(meeting, participant)
        return web.json_response(
            {"meeting_id": meeting, "participant_id": participant, "speaking": False}
        )


def _id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID_PATTERN.fullmatch(value):
        raise web.HTTPBadRequest(
            text=f"invalid {name} id {value!r}: use 1-64 letters, digits, '_' or '-'"
        )
    return value


async def _enabled(request: web.Request) -> bool:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text=_ENABLED) from None
    if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
        raise web.HTTPBadRequest(text=_ENABLED)
    enabled: bool = body["enabled"]
    return enabled
