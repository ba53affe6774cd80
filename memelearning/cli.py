"""The ``memelearning`` command. Each component contributes its subcommands through a
``register(subparsers)`` function in its own ``cli`` module, which stays a thin wrapper
over that component's library; heavy imports (TensorFlow) happen only inside the
subcommand that needs them."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from memelearning import __version__
from memelearning.amqp import BrokerTlsError
from memelearning.logs import setup_logging
from memelearning.settings import SettingsError

# Modules that define `register(subparsers)`; each keeps its heavy imports inside
# the functions that run a subcommand.
_COMPONENT_CLIS = ("worker.cli", "publisher.cli", "reactions.cli", "models.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memelearning", description=__doc__)
    parser.add_argument("--version", action="version", version=f"memelearning {__version__}")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in _COMPONENT_CLIS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        result: int = args.func(args)
    except SettingsError as exc:
        print(f"memelearning {args.command}: {exc}", file=sys.stderr)
        return 2
    except BrokerTlsError as exc:
        # A configuration problem on one side or the other, not a crash: no traceback.
        print(f"memelearning {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
