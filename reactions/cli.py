"""``memelearning reactions …``: thin wrappers over the reactions library."""

from __future__ import annotations

import argparse
import asyncio
import sys
from urllib.parse import urlsplit

from memelearning.settings import SettingsError, load_settings
from reactions.settings import ReactionsSettings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "reactions",
        help="turn reaction events into GIFs injected into meetings",
        description="The API side: consume reaction events, decide, inject GIFs.",
    )
    commands = parser.add_subparsers(dest="reactions_command", required=True, metavar="COMMAND")

    tail = commands.add_parser("tail", help="print reaction events as JSON lines")
    tail.add_argument("--meeting", help="only this meeting (default: all)")
    tail.add_argument("--label", help="only this model label (default: all)")
    tail.add_argument(
        "--url",
        help="broker URL without a password (default: MEMELEARNING_REACTIONS_AMQP_URL)",
    )
    tail.set_defaults(func=_tail)

    serve = commands.add_parser(
        "serve", help="run the reactions service (settings: MEMELEARNING_REACTIONS_*)"
    )
    serve.set_defaults(func=_serve)

    sim = commands.add_parser(
        "meeting-sim",
        help="run the local meeting-room simulator (eyeson API subset + live demo page)",
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=8090, help="port (default 8090)")
    sim.add_argument(
        "--amqp-url",
        help="follow reaction events from this broker, for the page's gestures "
        "(default: MEMELEARNING_REACTIONS_AMQP_URL; 'none' to disable)",
    )
    sim.add_argument(
        "--ready-after",
        type=float,
        default=2.0,
        help="seconds before a new room becomes ready (default 2; 0 = ready at once)",
    )
    sim.set_defaults(func=_meeting_sim)


def _tail(args: argparse.Namespace) -> int:
    from reactions.tail import tail

    if args.url and urlsplit(args.url).password is not None:
        # Never echo the URL: it holds the password.
        raise SettingsError(
            "--url carries a password, which every user of this machine can read from "
            "the process list; set MEMELEARNING_REACTIONS_AMQP_URL instead"
        )
    overrides = {"amqp_url": args.url} if args.url else {}
    settings = load_settings(ReactionsSettings, **overrides)

    def write_line(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        asyncio.run(
            tail(
                str(settings.amqp_url),
                write_line,
                meeting=args.meeting,
                label=args.label,
                tls=settings,
            )
        )
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # `… | head` closed the pipe: a normal way to stop a tail.
        return 0
    return 0


def _serve(args: argparse.Namespace) -> int:
    from reactions.service import run_service

    settings = load_settings(ReactionsSettings)
    try:
        return asyncio.run(run_service(settings))
    except KeyboardInterrupt:
        return 130


def _meeting_sim(args: argparse.Namespace) -> int:
    from reactions.simulator import run_simulator

    tls = None
    if args.amqp_url == "none":
        amqp_url = None
    elif args.amqp_url:
        amqp_url = args.amqp_url
    else:
        tls = load_settings(ReactionsSettings)
        amqp_url = str(tls.amqp_url)
    try:
        return asyncio.run(
            run_simulator(
                args.host,
                args.port,
                amqp_url,
                rooms_ready=args.ready_after == 0,
                ready_after_s=args.ready_after,
                tls=tls,
            )
        )
    except KeyboardInterrupt:
        return 130
