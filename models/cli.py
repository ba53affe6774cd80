"""``memelearning models …``: model tooling. For now only the plumbing model used by
tests and by the demo until a trained gesture detector ships."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("models", help="model tooling")
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    plumbing = sub.add_parser(
        "export-plumbing",
        help="export the colour plumbing model (NOT a gesture detector) to a directory",
        description="Export a small deterministic SavedModel that follows the TensorFlow "
        "Object Detection API contract and labels frames red/green/blue by their dominant "
        "colour. It exercises the whole pipeline; it does not detect gestures.",
    )
    plumbing.add_argument("export_dir", type=Path)
    plumbing.add_argument(
        "--batch-size", type=int, choices=[1], help="fix the batch dimension (stock zoo style)"
    )
    plumbing.set_defaults(func=_export_plumbing)


def _export_plumbing(args: argparse.Namespace) -> int:
    from models.contract_model import export_colour_model

    path = export_colour_model(args.export_dir, batch_size=args.batch_size)
    print(path)
    return 0
