"""``memelearning publish``: simulate meeting participants from a video file or a folder
of images and publish their frames (a thin wrapper over :mod:`publisher.streaming`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from contextlib import suppress
from pathlib import Path

from tqdm import tqdm

from memelearning.settings import load_settings
from publisher.errors import PublishError
from publisher.publishing import FramePublisher, PublisherStats
from publisher.settings import PublisherSettings
from publisher.simulation import ParticipantSimulator, participant_names
from publisher.sources import (
    DEFAULT_QUALITY,
    ImageFolderSource,
    SourceError,
    VideoSource,
    open_source,
)
from publisher.streaming import stream_frames

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="publish simulated participants' frames from a video or image folder",
        description=(
            "Simulate meeting participants, each sampled at --fps from SOURCE (a video "
            "file or a folder of .jpg/.png images), and publish their frames to RabbitMQ. "
            "The broker is configured with MEMELEARNING_PUBLISHER_* variables "
            "(MEMELEARNING_PUBLISHER_AMQP_URL, …). Images that cannot be read are skipped, "
            "pictures over the worker's pixel limit are downscaled and frames over its "
            "byte limit left out, each with a warning and a count in the summary. Ctrl-C "
            "stops after the frames in flight are confirmed; a second Ctrl-C stops at once."
        ),
    )
    parser.add_argument("source", type=Path, metavar="SOURCE", help="video file or image folder")
    parser.add_argument("--meeting", required=True, help="meeting id")
    parser.add_argument(
        "--participant",
        action="append",
        default=[],
        metavar="ID",
        help="a participant id (repeat for several)",
    )
    parser.add_argument(
        "--participants",
        type=int,
        metavar="M",
        help="simulate M participants, named p1..pM unless --participant names them",
    )
    parser.add_argument(
        "--fps", type=float, default=2.0, help="frames per second per participant (default 2)"
    )
    until = parser.add_mutually_exclusive_group()
    until.add_argument("--count", type=int, metavar="N", help="stop after N frames per participant")
    until.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--loop", action="store_true", help="start the source over at its end")
    parser.add_argument(
        "--hold",
        type=_positive_int,
        default=1,
        metavar="N",
        help="image folders: send each image N times in a row, like a participant "
        "holding a pose (default 1)",
    )
    parser.add_argument(
        "--max-side", type=int, metavar="PX", help="downscale frames to at most PX a side"
    )
    parser.add_argument(
        "--quality",
        type=int,
        default=DEFAULT_QUALITY,
        help=f"JPEG quality of re-encoded frames (default {DEFAULT_QUALITY})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(PublisherSettings)
    try:
        source, simulator = _simulator(args)
    except (SourceError, ValueError) as exc:
        return _error(str(exc), EXIT_USAGE)
    return asyncio.run(_publish(settings, source, simulator, progress=not args.no_progress))


def _simulator(
    args: argparse.Namespace,
) -> tuple[ImageFolderSource | VideoSource, ParticipantSimulator]:
    names: list[str] = args.participant
    if names and args.participants is not None and args.participants != len(names):
        raise ValueError(
            f"--participants {args.participants} does not match the "
            f"{len(names)} --participant name(s) given"
        )
    participants = names or participant_names(args.participants or 1)
    source = open_source(
        args.source,
        fps=args.fps,
        max_side=args.max_side,
        quality=args.quality,
        loop=args.loop,
        hold=args.hold,
    )
    return source, ParticipantSimulator(
        source,
        meeting_id=args.meeting,
        participants=participants,
        fps=args.fps,
        count=args.count,
        duration_s=args.duration,
    )


async def _publish(
    settings: PublisherSettings,
    source: ImageFolderSource | VideoSource,
    simulator: ParticipantSimulator,
    *,
    progress: bool,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_sigint() -> None:
        stop.set()
        # Back to the default handler: a second Ctrl-C raises KeyboardInterrupt.
        loop.remove_signal_handler(signal.SIGINT)

    with suppress(NotImplementedError, RuntimeError):  # no signals outside the main thread
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    # disable=None: no bar when stderr is not a terminal (logs, CI).
    bar = tqdm(unit="frame", desc="confirmed", disable=None if progress else True)

    def show(stats: PublisherStats) -> None:
        bar.update(stats.confirmed - bar.n)

    publisher = FramePublisher(settings)
    started = time.monotonic()
    code = EXIT_FAILED
    try:
        await publisher.start()
        stopped = await stream_frames(publisher, simulator, stop=stop, on_progress=show)
        code = EXIT_INTERRUPTED if stopped else EXIT_OK
    except (PublishError, SourceError) as exc:
        bar.clear()
        _error(str(exc), EXIT_FAILED)
    finally:
        with suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        await publisher.close()
        show(publisher.stats)
        bar.close()
        print(_summary(publisher.stats, time.monotonic() - started))
        # Frames the worker would refuse are fitted or left out before sending: say so.
        report = source.report()
        if report is not None:
            print(f"source: {report}")
    return code


def _summary(stats: PublisherStats, elapsed_s: float) -> str:
    rate = stats.confirmed / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"published {stats.published}, confirmed {stats.confirmed}, failed {stats.failed} "
        f"(nacked {stats.nacked}, unroutable {stats.returned}, other errors {stats.errored}, "
        f"dropped stale {stats.dropped_stale}, abandoned {stats.abandoned}), "
        f"re-sent {stats.retried}; {elapsed_s:.1f} s, {rate:.1f} frames/s"
    )


def _error(message: str, code: int) -> int:
    print(f"memelearning publish: {message}", file=sys.stderr)
    return code


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
