"""A client for the eyeson-style meeting REST API subset that shows reactions.

- ``GET /rooms/{access_key}``: room state; ``ready`` is true once the room (and the
  user the access key belongs to) can take layers. A layer set before that is lost.
- ``POST /rooms/{access_key}/layers`` (form ``url``, ``z-index``): show an overlay.
  The form also names the participant whose gesture it answers (``participant_id``),
  for a meeting view that puts the GIF on that person's video (the simulator does);
  a platform without per-participant overlays shows it over the room.
- ``DELETE /rooms/{access_key}/layers/{z-index}``: clear it.
- ``POST /rooms/{access_key}/playbacks`` (JSON ``url``, ``play_id``, ``loop_count``):
  play a video, for platforms that do not animate GIF overlays.
- ``PUT /rooms/{access_key}/hands/{participant_id}``, ``DELETE`` the same: raise and
  lower a participant's hand (the ✋ beside their name). This project's addition to the
  eyeson subset, for platforms with a raise-hand feature: both are idempotent, and
  lowering a hand that is down is no error.

Every request has a timeout. 5xx answers, 429, timeouts and connection errors are
retried with exponential backoff and full jitter (so a fleet does not retry in step);
other 4xx answers are not, because sending the same request again cannot succeed.
Access keys and the API key are credentials: they never appear in logs or errors.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

logger = logging.getLogger(__name__)


class MeetingApiError(Exception):
    """A meeting API operation that did not succeed. ``reason`` is a short stable code
    (a metric label)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class PermanentError(MeetingApiError):
    """The API refused the request (4xx): retrying the same request cannot help."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__("gone" if status == 410 else f"http_{status}", detail)
        self.status = status


class TransientError(MeetingApiError):
    """5xx, 429, timeout or connection failure, still failing after every attempt."""


class RoomNotReady(MeetingApiError):
    """The room did not become ready within the wait."""

    def __init__(self, detail: str) -> None:
        super().__init__("room_not_ready", detail)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_s: float = 0.2
    max_s: float = 5.0

    def delay(self, retry: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base·2^retry)]."""
        return rng.uniform(0.0, min(self.max_s, self.base_s * 2**retry))


class MeetingApi:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 3.0,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers: Mapping[str, str] = {"Authorization": api_key} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._on_retry = on_retry

    async def room_ready(self, access_key: str) -> bool:
        body = await self._request("GET", _room(access_key), "room")
        return isinstance(body, dict) and body.get("ready") is True

    async def wait_until_ready(
        self,
        access_key: str,
        timeout_s: float,
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        deadline = clock() + timeout_s
        while not await self.room_ready(access_key):
            if clock() + poll_s > deadline:
                raise RoomNotReady(f"room not ready after {timeout_s:g}s")
            await self._sleep(poll_s)

    async def set_layer(
        self, access_key: str, url: str, z_index: int, participant_id: str | None = None
    ) -> None:
        form = {"url": url, "z-index": str(z_index)}
        if participant_id is not None:
            form["participant_id"] = participant_id
        await self._request("POST", _room(access_key) + "/layers", "layers", data=form)

    async def clear_layer(self, access_key: str, z_index: int) -> None:
        await self._request("DELETE", f"{_room(access_key)}/layers/{z_index}", "layers")

    async def raise_hand(self, access_key: str, participant_id: str) -> None:
        await self._request("PUT", _hand(access_key, participant_id), "hands")

    async def lower_hand(self, access_key: str, participant_id: str) -> None:
        try:
            await self._request("DELETE", _hand(access_key, participant_id), "hands")
        except PermanentError as exc:
            if exc.status != 404:
                raise
            # Already down (lowered by the participant, or never raised): done.

    async def start_playback(self, access_key: str, url: str, play_id: str) -> None:
        body = {"url": url, "play_id": play_id, "loop_count": 0, "audio": False}
        await self._request("POST", _room(access_key) + "/playbacks", "playbacks", json=body)

    async def _request(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """``what`` names the endpoint in logs and errors instead of the path, which
        holds the access key."""
        attempts = self._retry.max_attempts
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                async with self._session.request(
                    method,
                    self._base + path,
                    headers=self._headers,
                    timeout=self._timeout,
                    **kwargs,
                ) as response:
                    status = response.status
                    if status < 300:
                        if response.content_type == "application/json":
                            return await response.json()
                        await response.read()
                        return None
                    await response.read()
            except TimeoutError:
                if _being_cancelled():
                    # aiohttp can turn our own cancellation into a timeout: never retry it.
                    raise asyncio.CancelledError from None
                failure = TransientError("timeout", f"{method} {what} timed out")
            except aiohttp.ClientError as exc:
                if _being_cancelled():
                    # A cancelled request can surface as a connection error too.
                    raise asyncio.CancelledError from None
                failure = TransientError("connection", f"{method} {what}: {type(exc).__name__}")
            else:
                if 400 <= status < 500 and status != 429:
                    raise PermanentError(status, f"{method} {what} answered {status}")
                # 429 is the one 4xx worth retrying: the same request succeeds later.
                failure = TransientError(f"http_{status}", f"{method} {what} answered {status}")
            if last:
                raise failure
            delay = self._retry.delay(attempt, self._rng)
            logger.info(
                "%s; retrying in %.2fs (attempt %d of %d)", failure, delay, attempt + 2, attempts
            )
            if self._on_retry is not None:
                self._on_retry()
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _room(access_key: str) -> str:
    return "/rooms/" + quote(access_key, safe="")


def _hand(access_key: str, participant_id: str) -> str:
    return f"{_room(access_key)}/hands/{quote(participant_id, safe='')}"
