"""A local meeting-room simulator: the eyeson REST subset the reactions service uses,
recording every call, plus a live web page for the demo.

Tests drive it in-process (``set_ready``, ``fail``, ``delay``, ``wait_for_call``);
``memelearning reactions meeting-sim`` runs it standalone. When given a broker URL it
also follows the reaction events, so its page shows each participant's current
gesture next to the overlay currently shown in each room (server-sent events).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import web
from pydantic import ValidationError

from memelearning.amqp import AmqpSettings
from reactions.catalog import MEDIA_DIR, Catalog
from reactions.subscription import binding_keys, connect, subscribe
from worker.events import ReactionEvent

logger = logging.getLogger(__name__)

PAGE: Final = Path(__file__).resolve().parent / "page" / "index.html"
# Calls kept for the page and for inspection; tests of a long demo must not grow forever.
MAX_CALLS: Final = 10_000
# How long the page keeps showing a participant's gesture after its last event: the
# worker sends events only for frames where a gesture is seen, so silence means the
# hand went down. A few frames at the publisher's 2-4 fps.
GESTURE_SHOWN_S: Final = 1.5


@dataclass
class Call:
    """One request the simulator answered."""

    method: str
    endpoint: str  # room | layers | playbacks
    access_key: str
    params: dict[str, Any]
    status: int
    # A layer set while the room was not ready: accepted, and lost, as on the real API.
    lost: bool = False
    authorized: bool = True
    at: float = field(default_factory=time.time)


@dataclass
class Room:
    access_key: str
    ready: bool
    created: float = field(default_factory=time.monotonic)
    layers: dict[int, str] = field(default_factory=dict)
    playbacks: list[str] = field(default_factory=list)
    # Test controls: answer the next calls with these statuses; delay every call.
    failures: list[int] = field(default_factory=list)
    delay_s: float = 0.0


@dataclass
class Gesture:
    label: str
    reaction: str | None
    score: float
    seen_ms: int


class MeetingSimulator:
    def __init__(
        self,
        *,
        rooms_ready: bool = True,
        ready_after_s: float = 0.0,
        api_key: str | None = None,
        catalog: Catalog | None = None,
        gesture_shown_s: float = GESTURE_SHOWN_S,
    ) -> None:
        """``rooms_ready``: whether a room is ready when first seen; ``ready_after_s``:
        otherwise it becomes ready this long after (0 = only via ``set_ready``).
        ``gesture_shown_s``: how long the page shows a gesture after its last event
        (sent to the page with the state); a test that looks at the page sets it
        longer than the test runs, so a slow browser cannot see the gesture fade."""
        if gesture_shown_s <= 0:
            raise ValueError("gesture_shown_s must be positive")
        self.rooms_ready = rooms_ready
        self.ready_after_s = ready_after_s
        self.gesture_shown_s = gesture_shown_s
        self.api_key = api_key
        self.catalog = catalog or Catalog.load()
        self.rooms: dict[str, Room] = {}
        self.calls: list[Call] = []
        self.gestures: dict[str, dict[str, Gesture]] = {}
        self._changed = asyncio.Condition()
        self._listeners: set[asyncio.Queue[str]] = set()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._connection: AbstractRobustConnection | None = None
        self.port = 0

    # -- test controls

    def room(self, access_key: str) -> Room:
        room = self.rooms.get(access_key)
        if room is None:
            room = self.rooms[access_key] = Room(access_key, ready=self.rooms_ready)
        if (
            not room.ready
            and self.ready_after_s
            and (time.monotonic() - room.created >= self.ready_after_s)
        ):
            room.ready = True
        return room

    def set_ready(self, access_key: str, ready: bool = True) -> None:
        self.room(access_key).ready = ready
        self._notify()

    def fail(self, access_key: str, *statuses: int) -> None:
        """Answer the room's next calls with these statuses, in order."""
        self.room(access_key).failures.extend(statuses)

    def delay(self, access_key: str, seconds: float) -> None:
        self.room(access_key).delay_s = seconds

    def calls_to(self, access_key: str, endpoint: str | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.access_key == access_key and (endpoint is None or c.endpoint == endpoint)
        ]

    async def wait_for_call(self, predicate: Callable[[Call], bool], timeout: float = 30) -> Call:
        """The first recorded call (past or future) matching ``predicate``."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for call in self.calls:
                    if predicate(call):
                        return call
                await self._changed.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = getattr(site, "_server", None)
        assert server is not None and server.sockets
        self.port = int(server.sockets[0].getsockname()[1])

    async def follow_events(
        self, amqp_url: str, ready: asyncio.Event | None = None, tls: AmqpSettings | None = None
    ) -> None:
        """Track participants' gestures from the events exchange until cancelled."""
        self._connection = await connect(amqp_url, "memelearning-meeting-sim", tls)
        try:
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=200)
            queue = await subscribe(channel, binding_keys())
            if ready is not None:
                ready.set()
            await queue.consume(self._on_event)
            await asyncio.Future()
        finally:
            await self._connection.close()

    async def stop(self) -> None:
        self._closing.set()
        for listener in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                listener.put_nowait("")  # wakes the stream so it can end
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()

    # -- state for the page

    def state(self) -> dict[str, Any]:
        meetings = sorted(set(self.rooms) | set(self.gestures))
        return {
            "server_ms": int(time.time() * 1000),
            "gesture_shown_ms": round(self.gesture_shown_s * 1000),
            "meetings": [
                {
                    "id": m,
                    "ready": self.room(m).ready if m in self.rooms else None,
                    "overlay": self.rooms[m].layers.get(1) if m in self.rooms else None,
                    "playbacks": self.rooms[m].playbacks[-3:] if m in self.rooms else [],
                    "participants": [
                        {"id": p, **asdict(g)} for p, g in sorted(self.gestures.get(m, {}).items())
                    ],
                }
                for m in meetings
            ],
            "log": [
                {
                    "method": c.method,
                    "endpoint": c.endpoint,
                    "room": c.access_key,
                    "url": c.params.get("url"),
                    "status": c.status,
                    "lost": c.lost,
                    "at_ms": int(c.at * 1000),
                }
                for c in self.calls[-8:]
                if c.endpoint != "room"
            ],
        }

    def _notify(self) -> None:
        payload = json.dumps(self.state())
        for listener in list(self._listeners):
            if listener.full():
                # A slow page gets the newest state, not a backlog.
                with contextlib.suppress(asyncio.QueueEmpty):
                    listener.get_nowait()
            listener.put_nowait(payload)

        async def _wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(_wake())

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            try:
                event = ReactionEvent.from_json(message.body)
            except ValidationError:
                logger.warning("ignoring a message that is not a reaction event")
                return
            self.observe(event)

    def observe(self, event: ReactionEvent) -> None:
        self.gestures.setdefault(event.meeting_id, {})[event.participant_id] = Gesture(
            label=event.label,
            reaction=self.catalog.reaction_for(event.label),
            score=round(event.score, 3),
            seen_ms=int(time.time() * 1000),
        )
        self._notify()

    # -- HTTP

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/rooms/{key}", self._get_room)
        app.router.add_post("/rooms/{key}/layers", self._post_layer)
        app.router.add_delete("/rooms/{key}/layers/{z}", self._delete_layer)
        app.router.add_post("/rooms/{key}/playbacks", self._post_playback)
        app.router.add_get("/", self._page)
        app.router.add_get("/state", self._state)
        app.router.add_get("/events", self._events)
        app.router.add_static("/media/", MEDIA_DIR, follow_symlinks=False)
        return app

    async def _enter(self, request: web.Request, endpoint: str) -> tuple[Room, Call]:
        key = request.match_info["key"]
        room = self.room(key)
        if room.delay_s:
            # A slow API; stop() cuts the wait short so shutdown is never held up.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), room.delay_s)
        params: dict[str, Any] = {}
        if request.method == "POST":
            if request.content_type == "application/json":
                params = dict(await request.json())
            else:
                params = dict(await request.post())
        authorized = self.api_key is None or request.headers.get("Authorization") == self.api_key
        status = 401 if not authorized else (room.failures.pop(0) if room.failures else 0)
        call = Call(request.method, endpoint, key, params, status, authorized=authorized)
        return room, call

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        del self.calls[:-MAX_CALLS]
        self._notify()

    def _fail(self, call: Call) -> web.Response:
        self._record(call)
        return web.json_response({"error": "simulated"}, status=call.status)

    async def _get_room(self, request: web.Request) -> web.Response:
        room, call = await self._enter(request, "room")
        if call.status:
            return self._fail(call)
        call.status = 200
        self._record(call)
        return web.json_response(
            {
                "access_key": room.access_key,
                "ready": room.ready,
                "room": {"id": room.access_key, "ready": room.ready, "shutdown": False},
                "links": {"self": f"/rooms/{room.access_key}"},
            }
        )

    async def _post_layer(self, request: web.Request) -> web.Response:
        room, call = await self._enter(request, "layers")
        if call.status:
            return self._fail(call)
        url = call.params.get("url")
        try:
            z = int(call.params.get("z-index", 1))
        except ValueError:
            z = 0
        if not url or z not in (-1, 1):
            call.status = 400
            return self._fail(call)
        call.status = 201
        if room.ready:
            room.layers[z] = str(url)
        else:
            call.lost = True
        self._record(call)
        return web.Response(status=201)

    async def _delete_layer(self, request: web.Request) -> web.Response:
        room, call = await self._enter(request, "layers")
        if call.status:
            return self._fail(call)
        z = int(request.match_info["z"]) if request.match_info["z"] in ("-1", "1") else 0
        if z == 0:
            call.status = 404
            return self._fail(call)
        room.layers.pop(z, None)
        call.params = {"z-index": z}
        call.status = 200
        self._record(call)
        return web.Response(status=200)

    async def _post_playback(self, request: web.Request) -> web.Response:
        room, call = await self._enter(request, "playbacks")
        if call.status:
            return self._fail(call)
        if not call.params.get("url"):
            call.status = 400
            return self._fail(call)
        call.status = 201
        if room.ready:
            room.playbacks.append(str(call.params["url"]))
        else:
            call.lost = True
        self._record(call)
        return web.Response(status=201)

    async def _page(self, request: web.Request) -> web.Response:
        # "</" escaped so no string in the state can close the script element.
        state = json.dumps(self.state()).replace("</", "<\\/")
        html = PAGE.read_text(encoding="utf-8").replace("/*INITIAL_STATE*/null", state, 1)
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=8)
        queue.put_nowait(json.dumps(self.state()))
        self._listeners.add(queue)
        try:
            while True:
                try:
                    payload = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if not payload:
                    break
                await response.write(f"event: state\ndata: {payload}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._listeners.discard(queue)
        return response


async def run_simulator(
    host: str,
    port: int,
    amqp_url: str | None,
    rooms_ready: bool,
    ready_after_s: float,
    tls: AmqpSettings | None = None,
) -> int:
    import signal

    sim = MeetingSimulator(rooms_ready=rooms_ready, ready_after_s=ready_after_s)
    await sim.start(host, port)
    logger.info("meeting simulator on http://%s:%d/ (page), /rooms/{key}/… (API)", host, sim.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    follower = asyncio.create_task(sim.follow_events(amqp_url, tls=tls)) if amqp_url else None
    try:
        await stop.wait()
    finally:
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await follower
        await sim.stop()
    return 0
