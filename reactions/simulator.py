"""A local meeting-room simulator: the eyeson REST subset the reactions service uses
(and raised hands, this project's addition), recording every call, plus a live web page
for the demo.

Tests drive it in-process (``set_ready``, ``fail``, ``delay``, ``wait_for_call``);
``memelearning reactions meeting-sim`` runs it standalone. When given a broker URL its
page is a meeting view (server-sent events): each participant's latest frame with the
hands the worker found in it, their current gesture and hold-to-confirm progress, and
the overlay on the participant whose gesture it answers. It follows the reaction
events, the worker's per-frame detections, and a copy of the frames through a small
queue of its own (:mod:`reactions.meeting_view` holds them, in memory only). With a
camera bridge it also takes a browser's camera as a participant (``/camera``).
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

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import web
from pydantic import ValidationError

from memelearning.amqp import AmqpSettings
from publisher.camera import CameraBridge
from publisher.protocol import (
    FRAME_ROUTING_KEY,
    FRAMES_EXCHANGE,
    FRAMES_EXCHANGE_DURABLE,
    FRAMES_EXCHANGE_TYPE,
    ID_PATTERN,
    WORKER_MAX_FRAME_BYTES,
    FrameError,
    parse_frame,
)
from publisher.settings import PublisherSettings
from reactions.catalog import MEDIA_DIR, Catalog
from reactions.meeting_view import FRAME_KEPT_S, MeetingView
from reactions.subscription import binding_keys, connect, subscribe
from reactions.two_hands import two_handed_reactions
from worker.events import FrameDetections, ReactionEvent, detections_binding_key

logger = logging.getLogger(__name__)

PAGE: Final = Path(__file__).resolve().parent / "page" / "index.html"
# Calls kept for the page and for inspection; tests of a long demo must not grow forever.
MAX_CALLS: Final = 10_000
# How long the page keeps showing a participant's gesture after its last event: the
# worker sends events only for frames where a gesture is seen, so silence means the
# hand went down. A few frames at the publisher's 2-4 fps.
GESTURE_SHOWN_S: Final = 1.5
# The page's copy of the frames: a private queue that lives and dies with the
# simulator's connection, holds a few seconds of the newest frames (the oldest are
# dropped first) and is never persisted. Frames older than a live view shows are no use.
FRAME_COPY_ARGUMENTS: Final = {
    "x-max-length": 32,
    "x-max-length-bytes": 16 * 1024 * 1024,
    "x-message-ttl": 5000,
    "x-overflow": "drop-head",
}
FRAME_COPY_PREFETCH: Final = 8
# Frames come several times a second per participant: the page gets at most one state
# per this many seconds for them, instead of one per frame.
FRAME_NOTIFY_S: Final = 0.05


@dataclass
class Call:
    """One request the simulator answered."""

    method: str
    endpoint: str  # room | layers | playbacks | hands
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
    # Whose gesture each layer answers (the layer call's participant_id) and since when.
    layer_participants: dict[int, str | None] = field(default_factory=dict)
    layer_since_ms: dict[int, int] = field(default_factory=dict)
    playbacks: list[str] = field(default_factory=list)
    # Raised hands: participant → when it was raised (ms since the epoch), in order.
    hands: dict[str, int] = field(default_factory=dict)
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
        camera: CameraBridge | None = None,
        frame_kept_s: float = FRAME_KEPT_S,
    ) -> None:
        """``rooms_ready``: whether a room is ready when first seen; ``ready_after_s``:
        otherwise it becomes ready this long after (0 = only via ``set_ready``).
        ``gesture_shown_s``: how long the page shows a gesture after its last event
        (sent to the page with the state); a test that looks at the page sets it
        longer than the test runs, so a slow browser cannot see the gesture fade.
        ``camera``: serve ``/camera`` for a browser's camera (closed by :meth:`stop`).
        ``frame_kept_s``: how long a participant's frames are kept after their last
        one (a test of the page sets it longer than the test, like the gestures')."""
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
        self.view = MeetingView(self.catalog, frame_kept_s=frame_kept_s)
        self.camera = camera
        self._notify_pending = False
        self._changed = asyncio.Condition()
        self._listeners: set[asyncio.Queue[str]] = set()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._connection: AbstractRobustConnection | None = None
        self._frames_channel: AbstractChannel | None = None
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
        """Track participants' gestures, the worker's per-frame detections and the
        frames themselves (for the page) until cancelled."""
        self._connection = await connect(amqp_url, "memelearning-meeting-sim", tls)
        try:
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=200)
            queue = await subscribe(channel, [*binding_keys(), detections_binding_key()])
            await self._follow_frames(self._connection)
            if ready is not None:
                ready.set()
            await queue.consume(self._on_event)
            await asyncio.Future()
        finally:
            await self._connection.close()

    async def _follow_frames(self, connection: AbstractRobustConnection) -> None:
        """Bind a queue of the page's own to the frames exchange (see
        ``FRAME_COPY_ARGUMENTS``); without read permission there, the page shows no
        video and everything else works."""
        channel = await connection.channel()
        # Held for the simulator's life: a robust connection keeps its channels only
        # weakly, and one collected while the broker is down is never restored (the
        # page would show no video after an outage; docs/reliability.md).
        self._frames_channel = channel
        try:
            await channel.set_qos(prefetch_count=FRAME_COPY_PREFETCH)
            exchange = await channel.declare_exchange(
                FRAMES_EXCHANGE,
                aio_pika.ExchangeType(FRAMES_EXCHANGE_TYPE),
                durable=FRAMES_EXCHANGE_DURABLE,
            )
            queue = await channel.declare_queue(
                exclusive=True, auto_delete=True, arguments=FRAME_COPY_ARGUMENTS
            )
            await queue.bind(exchange, routing_key=FRAME_ROUTING_KEY)
            await queue.consume(self._on_frame)
        except aiormq.exceptions.ChannelAccessRefused as exc:
            logger.warning(
                "the page shows no video: this broker user may not read %s (%s); grant it "
                "read on %s to see the participants' frames",
                FRAMES_EXCHANGE,
                exc,
                FRAMES_EXCHANGE,
            )
            with contextlib.suppress(Exception):
                await channel.close()

    async def stop(self) -> None:
        self._closing.set()
        if self.camera is not None:
            await self.camera.close()
        for listener in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                listener.put_nowait("")  # wakes the stream so it can end
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()

    # -- state for the page

    def state(self) -> dict[str, Any]:
        meetings = sorted(set(self.rooms) | set(self.gestures) | self.view.meetings())
        return {
            "server_ms": int(time.time() * 1000),
            "gesture_shown_ms": round(self.gesture_shown_s * 1000),
            "camera": self.camera is not None,
            "meetings": [self._meeting_state(m) for m in meetings],
            "log": [
                {
                    "method": c.method,
                    "endpoint": c.endpoint,
                    "room": c.access_key,
                    "url": c.params.get("url"),
                    "participant": c.params.get("participant_id"),
                    "status": c.status,
                    "lost": c.lost,
                    "at_ms": int(c.at * 1000),
                }
                for c in self.calls[-8:]
                if c.endpoint != "room"
            ],
        }

    def _meeting_state(self, meeting: str) -> dict[str, Any]:
        room = self.rooms.get(meeting)
        overlay = room.layers.get(1) if room is not None else None
        overlay_for = room.layer_participants.get(1) if room is not None and overlay else None
        gestures = self.gestures.get(meeting, {})
        hands = room.hands if room is not None else {}
        people = set(gestures) | set(self.view.participants(meeting)) | set(hands)
        if overlay_for is not None:
            people.add(overlay_for)
        no_gesture = {"label": None, "reaction": None, "score": None, "seen_ms": None}
        return {
            "id": meeting,
            "ready": self.room(meeting).ready if room is not None else None,
            "overlay": overlay,
            "overlay_participant": overlay_for,
            "overlay_since_ms": room.layer_since_ms.get(1) if room is not None else None,
            "playbacks": room.playbacks[-3:] if room is not None else [],
            # In the order they went up, as a meeting app lists them.
            "raised_hands": sorted(hands, key=lambda p: hands[p]),
            "participants": [
                {
                    "id": p,
                    **(asdict(gestures[p]) if p in gestures else no_gesture),
                    **self.view.state(meeting, p),
                    "hand_raised_ms": hands.get(p),
                }
                for p in sorted(people)
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

    def _notify_soon(self) -> None:
        if self._notify_pending:
            return
        self._notify_pending = True

        def flush() -> None:
            self._notify_pending = False
            self._notify()

        asyncio.get_running_loop().call_later(FRAME_NOTIFY_S, flush)

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            if (message.routing_key or "").startswith("detections."):
                try:
                    found = FrameDetections.from_json(message.body)
                except ValidationError:
                    logger.warning("ignoring a message that is not a frame's detections")
                    return
                self.view.add_detections(found)
                self._two_handed(found)
                self._notify_soon()
                return
            try:
                event = ReactionEvent.from_json(message.body)
            except ValidationError:
                logger.warning("ignoring a message that is not a reaction event")
                return
            self.observe(event)

    async def _on_frame(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            try:
                meta = parse_frame(
                    body=message.body,
                    content_type=message.content_type,
                    message_id=message.message_id,
                    headers=message.headers,
                    max_bytes=WORKER_MAX_FRAME_BYTES,
                )
            except FrameError:
                return  # the worker dead-letters it; the page just does not show it
            self.view.add_frame(
                meta.meeting_id, meta.participant_id, meta.sequence, meta.capture_ms, message.body
            )
            self._notify_soon()

    def _two_handed(self, found: FrameDetections) -> None:
        """Two hands of one gesture are the participant's gesture, as the service sees
        it (their single-hand event came just before)."""
        for reaction in two_handed_reactions(found.hands, self.catalog.two_hands):
            label = next(
                h.label for h in found.hands if self.catalog.two_handed_for(h.label) == reaction
            )
            score = min(h.score for h in found.hands if h.label == label)
            self.gestures.setdefault(found.meeting_id, {})[found.participant_id] = Gesture(
                label=f"{label} + {label}",
                reaction=reaction,
                score=round(score, 3),
                seen_ms=int(time.time() * 1000),
            )

    def observe(self, event: ReactionEvent) -> None:
        self.gestures.setdefault(event.meeting_id, {})[event.participant_id] = Gesture(
            label=event.label,
            reaction=self.catalog.reaction_for(event.label),
            score=round(event.score, 3),
            seen_ms=int(time.time() * 1000),
        )
        self.view.observe(event)
        self._notify()

    # -- HTTP

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/rooms/{key}", self._get_room)
        app.router.add_post("/rooms/{key}/layers", self._post_layer)
        app.router.add_delete("/rooms/{key}/layers/{z}", self._delete_layer)
        app.router.add_post("/rooms/{key}/playbacks", self._post_playback)
        app.router.add_put("/rooms/{key}/hands/{participant}", self._put_hand)
        app.router.add_delete("/rooms/{key}/hands/{participant}", self._delete_hand)
        app.router.add_get("/", self._page)
        app.router.add_get("/state", self._state)
        app.router.add_get("/events", self._events)
        app.router.add_get(
            "/frames/{meeting}/{participant}/{sequence:[0-9]{1,18}}.jpg", self._frame
        )
        if self.camera is not None:
            app.router.add_get("/camera", self.camera.handle)
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
        participant = call.params.get("participant_id")
        if participant is not None and not ID_PATTERN.fullmatch(str(participant)):
            call.status = 400
            return self._fail(call)
        call.status = 201
        if room.ready:
            room.layers[z] = str(url)
            room.layer_participants[z] = None if participant is None else str(participant)
            room.layer_since_ms[z] = int(call.at * 1000)
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
        room.layer_participants.pop(z, None)
        room.layer_since_ms.pop(z, None)
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

    async def _put_hand(self, request: web.Request) -> web.Response:
        room, call = await self._enter(request, "hands")
        participant = request.match_info["participant"]
        call.params = {"participant_id": participant}
        if call.status:
            return self._fail(call)
        if not ID_PATTERN.fullmatch(participant):
            call.status = 400
            return self._fail(call)
        call.status = 200
        # Raising a raised hand keeps its place in the queue.
        room.hands.setdefault(participant, int(call.at * 1000))
        self._record(call)
        return web.json_response({"participant_id": participant, "raised": True})

    async def _delete_hand(self, request: web.Request) -> web.Response:
        room, call = await self._enter(request, "hands")
        participant = request.match_info["participant"]
        call.params = {"participant_id": participant}
        if call.status:
            return self._fail(call)
        call.status = 200
        room.hands.pop(participant, None)  # lowering a lowered hand is no error
        self._record(call)
        return web.json_response({"participant_id": participant, "raised": False})

    async def _page(self, request: web.Request) -> web.Response:
        # "</" escaped so no string in the state can close the script element.
        state = json.dumps(self.state()).replace("</", "<\\/")
        html = PAGE.read_text(encoding="utf-8").replace("/*INITIAL_STATE*/null", state, 1)
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _frame(self, request: web.Request) -> web.Response:
        jpeg = self.view.frame_jpeg(
            request.match_info["meeting"],
            request.match_info["participant"],
            int(request.match_info["sequence"]),
        )
        if jpeg is None:
            raise web.HTTPNotFound(text="no such frame (any more)")
        # A frame of a person: never kept by the browser's cache or a proxy.
        return web.Response(
            body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"}
        )

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

    camera = None
    if amqp_url:
        camera = CameraBridge(_camera_settings(amqp_url, tls))
    sim = MeetingSimulator(rooms_ready=rooms_ready, ready_after_s=ready_after_s, camera=camera)
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


def _camera_settings(amqp_url: str, tls: AmqpSettings | None) -> PublisherSettings:
    """The camera publishes as the MCU does, over the simulator's broker connection
    settings (TLS included); other publisher settings come from
    ``MEMELEARNING_PUBLISHER_*``."""
    values: dict[str, Any] = {"amqp_url": amqp_url, "connection_name": "memelearning-camera"}
    if tls is not None:
        values.update(tls.model_dump(include=set(AmqpSettings.model_fields) - {"amqp_url"}))
    return PublisherSettings(**values)
