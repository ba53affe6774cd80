"""``memelearning reactions …``: thin wrappers over the reactions library."""

from __future__ import annotations

import argparse
import asyncio
import sys

from memelearning.settings import load_settings
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
    tail.add_argument("--url", help="broker URL (default: MEMELEARNING_REACTIONS_AMQP_URL)")
    tail.set_defaults(func=_tail)


def _tail(args: argparse.Namespace) -> int:
    from reactions.tail import tail

    overrides = {"amqp_url": args.url} if args.url else {}
    settings = load_settings(ReactionsSettings, **overrides)

    def write_line(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        asyncio.run(
            tail(str(settings.amqp_url), write_line, meeting=args.meeting, label=args.label)
        )
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # `… | head` closed the pipe: a normal way to stop a tail.
        return 0
    return 0
