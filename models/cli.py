"""``memelearning models …``: model tooling: the dataset report, and the plumbing
model used by tests and by the demo until a trained gesture detector ships."""

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

    report = sub.add_parser(
        "dataset-report",
        help="validate a LabelImg (Pascal VOC) folder, split it, chart labels per split",
    )
    report.add_argument("root", type=Path, help="folder of images with their .xml files")
    report.add_argument(
        "--labels",
        choices=["signs", "hands", "any"],
        default="any",
        help="label normalisation (signs: sign words, hands: N-hand; default: as typed)",
    )
    report.add_argument("--seed", type=int, default=0)
    report.add_argument("--test-fraction", type=float, default=0.2)
    report.add_argument(
        "--hold-out-groups",
        action="store_true",
        help="hold out whole sub-folders (people in signs/) rather than random images",
    )
    report.add_argument("--chart", type=Path, help="write the label-distribution PNG here")
    report.add_argument("--strict", action="store_true", help="exit 1 if any error is found")
    report.set_defaults(func=_dataset_report)


def _export_plumbing(args: argparse.Namespace) -> int:
    from models.contract_model import export_colour_model

    path = export_colour_model(args.export_dir, batch_size=args.batch_size)
    print(path)
    return 0


def _dataset_report(args: argparse.Namespace) -> int:
    from models.dataset_report import dataset_report

    result = dataset_report(
        args.root,
        labels=args.labels,
        seed=args.seed,
        test_fraction=args.test_fraction,
        hold_out_groups=args.hold_out_groups,
        chart=args.chart,
    )
    print(result.text)
    return 1 if args.strict and result.dataset.errors else 0
