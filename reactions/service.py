"""``memelearning reactions serve``: reaction events in, GIFs injected into meetings out.

One process: an AMQP consumer of reaction events and of the worker's per-frame
detections (decisions are microseconds of pure Python on the event loop), an injection
lane per meeting (:mod:`reactions.injector`), raised hands (:mod:`reactions.hands`),
and an HTTP server for metrics, health, the meeting side's controls
(:mod:`reactions.controls`) and the packaged media.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable
from urllib.parse import urljoin

import aiohttp
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from memelearning.listening import listen_error
from memelearning.logs import redact_url
from reactions.catalog import MEDIA_DIR, Catalog
from reactions.controls import MeetingControls
from reactions.decide import Decider, Decision
from reactions.dedup import Deduplicator
from reactions.hands import RaisedHands
from reactions.injector import Injection, Injector, InjectorConfig
from reactions.limits import OptOuts, RateLimiter
from reactions.meeting_api import MeetingApi, RetryPolicy
from reactions.metrics import Metrics
from reactions.settings import ReactionsSettings
from reactions.speakers import ActiveSpeakers
from reactions.subscription import binding_keys, connect, detection_keys, subscribe
from worker.events import FrameDetections, ReactionEvent

logger = logging.getLogger(__name__)


class ReactionService:
    def __init__(
        self,
        settings: ReactionsSettings,
        catalog: Catalog | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog.load(settings.catalog)
        self.metrics = Metrics()
        self.optouts = OptOuts(settings.enabled_by_default)
        self.speakers = ActiveSpeakers(settings.speaker_ttl_s, clock)
        self._clock = clock
        self._rng = rng or random.Random()
        self.decider = Decider(
            self.catalog,
            dedup=Deduplicator(settings.dedup_size, settings.dedup_ttl_s, clock),
            optouts=self.optouts,
            rate_limiter=RateLimiter(
                settings.rate_limit_per_minute, settings.rate_limit_burst, clock
            ),
            metrics=self.metrics,
            speakers=self.speakers,
            media_kind="videos" if settings.injection_mode == "playback" else "gifs",
            clock=clock,
        )
        self.controls = MeetingControls(
            self.catalog, self.optouts, self.speakers, on_speaking=self._lower_hand_of_speaker
        )
        self._session: aiohttp.ClientSession | None = None
        self._injector: Injector | None = None
        self.hands: RaisedHands | None = None
        self._runner: web.AppRunner | None = None
        self._connection: AbstractRobustConnection | None = None
        self._consumer_tag: str | None = None
        self._ready = False
        self.http_port = 0

    # -- lifecycle

    async def start(self) -> None:
        s = self.settings
        self._session = aiohttp.ClientSession()
        api = MeetingApi(
            self._session,
            str(s.meeting_api_url),
            api_key=s.api_key.get_secret_value() if s.api_key else None,
            timeout_s=s.request_timeout_s,
            retry=RetryPolicy(s.max_attempts, s.backoff_base_s, s.backoff_max_s),
            rng=self._rng,
            on_retry=self.metrics.injection_retries.inc,
        )
        self._injector = Injector(
            api,
            InjectorConfig(
                mode=s.injection_mode,
                z_index=s.layer_z_index,
                display_s=s.display_s,
                queue_size=s.meeting_queue_size,
                idle_s=s.meeting_idle_s,
                stale_after_s=s.stale_after_s,
                ready_timeout_s=s.ready_timeout_s,
                ready_poll_s=s.ready_poll_s,
                ready_cache_s=s.ready_cache_s,
            ),
            self.metrics,
            self._clock,
        )
        self.hands = RaisedHands(api, self.metrics, s.hand_timeout_s, self._clock)
        self._runner = web.AppRunner(self._http_app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.http_host, s.http_port)
        try:
            await site.start()
        except OSError as exc:
            raise listen_error(
                exc,
                host=s.http_host,
                port=s.http_port,
                serves="metrics, health and media",
                env_prefix="MEMELEARNING_REACTIONS_",
            ) from None
        self.http_port = _bound_port(self._runner)
        logger.info("http on %s:%d", s.http_host, self.http_port)

        self._connection = await connect(str(s.amqp_url), s.connection_name, s)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=s.prefetch)
        # Reaction events, and every hand of every frame (two hands, waving hands).
        queue = await subscribe(channel, [*binding_keys(s.meetings), *detection_keys(s.meetings)])
        self._consumer_tag = await queue.consume(self._on_message)
        self._queue = queue
        self._ready = True
        logger.info(
            "consuming reaction events and frame detections from %s", redact_url(str(s.amqp_url))
        )

    async def stop(self) -> None:
        """Stop consuming, let the lanes finish (bounded), close everything."""
        self._ready = False
        if self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        if self._injector is not None:
            await self._injector.close(self.settings.drain_timeout_s)
        if self.hands is not None:
            await self.hands.close(self.settings.drain_timeout_s)
        if self._connection is not None:
            await self._connection.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- events

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            # The first routing word tells the two messages of the exchange apart.
            if (message.routing_key or "").startswith("detections."):
                try:
                    found = FrameDetections.from_json(message.body)
                except ValidationError as exc:
                    self._invalid("frame detections", exc)
                    return
                self.handle_frame(found)
                return
            try:
                event = ReactionEvent.from_json(message.body)
            except ValidationError as exc:
                self._invalid("reaction event", exc)
                return
            self.handle(event)

    def _invalid(self, what: str, exc: ValidationError) -> None:
        self.metrics.invalid_events.inc()
        logger.warning("dropping an invalid %s (%d problem(s))", what, exc.error_count())

    def handle(self, event: ReactionEvent) -> Decision:
        """Decide on one event and carry out what it confirmed."""
        access_key = self.settings.access_key_for(event.meeting_id)
        if access_key is None:
            return self.decider.suppress("no_room")
        decision = self.decider.decide(event)
        return self._carry_out(
            decision, event.meeting_id, event.participant_id, access_key, event.event_id.hex
        )

    def handle_frame(self, found: FrameDetections) -> list[Decision]:
        """Decide on every hand of one frame (two-handed reactions, waves)."""
        access_key = self.settings.access_key_for(found.meeting_id)
        decisions = self.decider.decide_frame(found, room=access_key is not None)
        if access_key is None:
            return decisions
        return [
            self._carry_out(
                d, found.meeting_id, found.participant_id, access_key, found.message_id.hex
            )
            for d in decisions
        ]

    def _carry_out(
        self, decision: Decision, meeting_id: str, participant_id: str, access_key: str, uid: str
    ) -> Decision:
        if not decision.show or decision.reaction is None:
            return decision
        assert self._injector is not None and self.hands is not None, "start() first"
        if decision.action == "raise_hand":
            if not self.hands.raise_hand(
                meeting_id,
                access_key,
                participant_id,
                reaction=decision.reaction,
                confirmed_at=self._clock(),
            ):
                return self.decider.suppress("backlog", decision.reaction)
            return decision
        assert decision.media is not None
        injection = Injection(
            meeting_id=meeting_id,
            access_key=access_key,
            reaction=decision.reaction,
            url=urljoin(self.media_base_url, decision.media.url),
            play_id=f"reaction-{uid[:12]}",
            confirmed_at=self._clock(),
            participant_id=participant_id,
        )
        if not self._injector.submit(injection):
            return self.decider.suppress("backlog", decision.reaction)
        return decision

    def _lower_hand_of_speaker(self, meeting_id: str, participant_id: str) -> None:
        # As Google Meet does: a raised hand has been answered once its owner speaks.
        if self.hands is not None:
            self.hands.lower(meeting_id, participant_id, "speaking")

    @property
    def media_base_url(self) -> str:
        if self.settings.media_base_url is not None:
            return str(self.settings.media_base_url).rstrip("/") + "/"
        host = self.settings.http_host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.http_port}/media/"

    # -- http

    def _http_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        self.controls.add_routes(app)
        app.router.add_static("/media/", MEDIA_DIR, follow_symlinks=False)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        connected = self._connection is not None and not self._connection.is_closed
        ok = self._ready and connected
        return web.json_response({"ready": ok}, status=200 if ok else 503)


def _bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("the HTTP server has no socket")


async def run_service(settings: ReactionsSettings) -> int:
    """Run until SIGINT/SIGTERM; a second signal exits at once."""
    service = ReactionService(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def _signal() -> None:
        if stop.is_set():
            raise SystemExit(130)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _signal)
    try:
        await service.start()
        await stop.wait()
        logger.info("stopping")
    finally:
        await service.stop()
    return 0
