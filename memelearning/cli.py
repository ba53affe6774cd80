"""The ``memelearning`` command. Each component contributes its subcommands through a
``register(subparsers)`` function in its own ``cli`` module, which stays a thin wrapper
over that component's library; heavy imports (TensorFlow) happen only inside the
subcommand that needs them."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from memelearning import __version__
from memelearning.amqp import BrokerConnectError
from memelearning.listening import ListenError
from memelearning.logs import setup_logging
from memelearning.settings import SettingsError

# Modules that define `register(subparsers)`; each keeps its heavy imports inside
# the functions that run a subcommand.
_COMPONENT_CLIS = (
    "worker.cli",
    "publisher.cli",
    "reactions.cli",
    "models.cli",
    "memelearning.variables",  # `memelearning settings`: the table of every setting
)
# Commands a component adds to another component's command: `memelearning models`
# comes from models/ (training tools), but the model repository's commands (list,
# promote, rollback) are serving's, so they live with the worker.
_SUBCOMMAND_EXTENSIONS = {"models": "worker.repository_cli"}

# For people running the command (the module docstring above is for developers).
DESCRIPTION = (
    "Gesture reactions for video meetings: publish participants' camera frames to "
    "RabbitMQ, detect gestures in them with a fleet of workers, and show a GIF in the "
    "meeting for each confirmed gesture. Run `memelearning COMMAND --help` for a "
    "command's options."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memelearning", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"memelearning {__version__}")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in _COMPONENT_CLIS:
        importlib.import_module(module_name).register(subparsers)
    for command, module_name in _SUBCOMMAND_EXTENSIONS.items():
        importlib.import_module(module_name).register(_subcommands(subparsers.choices[command]))
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any]:
    """The subcommands of ``parser`` (argparse offers no public way to reach them)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(f"{parser.prog} has no subcommands")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        result: int = args.func(args)
    except SettingsError as exc:
        print(f"memelearning {args.command}: {exc}", file=sys.stderr)
        return 2
    except BrokerConnectError as exc:
        # The broker is not there or refused us (login, virtual host, TLS): one line
        # naming the URL and what to check, not a traceback (docs/operations.md, exit
        # statuses).
        print(f"memelearning {args.command}: {exc}", file=sys.stderr)
        return 1
    except ListenError as exc:
        # Its port is taken (say by another worker): one line, not a traceback.
        print(f"memelearning {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
