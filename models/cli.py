"""Model tooling: ``memelearning train``, ``export`` and ``evaluate`` for the gesture
model, and ``memelearning models …`` for the dataset report and the colour plumbing
model the tests use."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from models.dataset import DEFAULT_DATA
from models.serving import TFLITE_LANDMARKS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_gesture_commands(subparsers)
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
    plumbing.add_argument(
        "--tflite",
        action="store_true",
        help="also write model.tflite (320x320, batch 1) for the LiteRT runtime",
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
    from models.serving.contract_model import export_colour_model

    path = export_colour_model(args.export_dir, batch_size=args.batch_size, tflite=args.tflite)
    print(path)
    return 0


def _dataset_report(args: argparse.Namespace) -> int:
    from models.dataset.dataset_report import dataset_report

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


def _register_gesture_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    from models.train.training import TrainConfig

    defaults = TrainConfig()
    train = subparsers.add_parser(
        "train",
        help="train the two-stage gesture model and export it to RUN_DIR/model",
        description="Train the gesture head on hagrid-crops/ (and the out-of-vocabulary "
        "hands of hands/train), calibrate the hand box on the training people and the "
        "per-label thresholds on validation crops, export SavedModel + TFLite. Resumes "
        "from the checkpoints in RUN_DIR; the same seed gives the same splits and "
        "augmentation.",
    )
    train.add_argument("run_dir", type=Path, help="run directory (checkpoints, caches, model)")
    train.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--head-epochs", type=int, default=defaults.head_epochs)
    train.add_argument(
        "--feature-passes",
        type=int,
        default=defaults.feature_passes,
        help="augmented copies of each training crop",
    )
    train.add_argument(
        "--head-members",
        type=int,
        default=defaults.head_members,
        help="gesture heads trained with different seeds and averaged into one",
    )
    train.add_argument(
        "--tflite-landmarks",
        choices=TFLITE_LANDMARKS,
        default=defaults.tflite_landmarks,
        help="the TFLite export's landmark networks: float, or int8 calibrated on "
        "hands/train (stage one's alone: region-int8); docs/models.md says why float",
    )
    train.add_argument(
        "--far-hands",
        action=argparse.BooleanOptionalAction,
        default=defaults.far_hands,
        help="also learn from the training people's real hands shrunk as if they sat "
        "twice as far from the camera (default: no; docs/models.md says why)",
    )
    train.add_argument("--limit", type=int, help="at most N images per source (smoke runs)")
    train.add_argument("--version", default=defaults.version, help="model version to record")
    train.add_argument("--base-cache", type=Path, help="where the MediaPipe base models live")
    train.set_defaults(func=_train)

    export = subparsers.add_parser(
        "export",
        help="copy a trained model into a serving directory (e.g. models/default)",
        description="Copy RUN_DIR/model (SavedModel, TFLite, label map, model.json, card) "
        "to OUT after checking that the worker can load it.",
    )
    export.add_argument("run_dir", type=Path)
    export.add_argument("out", type=Path)
    export.set_defaults(func=_export)

    rebuild = subparsers.add_parser(
        "rebuild",
        help="serve a trained model's head with this version's graph (e.g. the face stage)",
        description="Read the trained gesture head of an exported model and export it "
        "again, SavedModel + TFLite, with this version's stage one and (unless --no-faces) "
        "the face stage; model.json keeps the source's thresholds and figures and records "
        "where the head came from. No training.",
    )
    rebuild.add_argument("source", type=Path, help="an exported gesture model (models/default)")
    rebuild.add_argument("out", type=Path, help="a new folder for the rebuilt model")
    rebuild.add_argument("--version", default=defaults.version, help="model version to record")
    rebuild.add_argument("--no-faces", action="store_true", help="hands only, no face stage")
    rebuild.add_argument("--base-cache", type=Path, help="where the base models live")
    rebuild.add_argument(
        "--tflite-landmarks",
        choices=TFLITE_LANDMARKS,
        help="the TFLite export's landmark networks (default: as in the source)",
    )
    rebuild.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="the shared data (int8 landmark networks are calibrated on its hands/train)",
    )
    rebuild.set_defaults(func=_rebuild)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="score an exported gesture model on held-out data, write report + model card",
    )
    evaluate.add_argument("model_dir", type=Path)
    evaluate.add_argument("--data", type=Path, default=DEFAULT_DATA)
    evaluate.add_argument(
        "--out",
        type=Path,
        help="report folder (default: var/evaluate/MODEL_DIR's name, never the model's own)",
    )
    evaluate.add_argument("--limit", type=int, help="at most N images per source (smoke runs)")
    evaluate.add_argument(
        "--update-card",
        action="store_true",
        help="also rewrite MODEL_CARD.md next to the model with these figures",
    )
    evaluate.add_argument(
        "--peer-python",
        type=Path,
        help="score MediaPipe's stock Gesture Recognizer on the same frames, run by this "
        "interpreter (bash scripts/peer-env.sh makes .peer-venv/bin/python)",
    )
    evaluate.add_argument(
        "--conditions",
        type=_room_names,
        default=(),
        metavar="NAMES",
        help="also score the held-out frames as cameras in other rooms would send them: "
        "'all' or a comma-separated list of dim, backlight, overexposed, warm_lamp, "
        "low_angle, motion_blur, webcam, wide (a 16:9 camera: the frame's top and bottom "
        "cut away), far (the person twice as far from the camera) (about a minute per "
        "condition, twice with the peer)",
    )
    evaluate.set_defaults(func=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from models.train.training import TrainConfig, TrainingError, train

    config = TrainConfig(
        seed=args.seed,
        head_epochs=args.head_epochs,
        feature_passes=args.feature_passes,
        head_members=args.head_members,
        tflite_landmarks=args.tflite_landmarks,
        far_hands=args.far_hands,
        limit=args.limit,
        version=args.version,
    )
    try:
        print(train(args.data, args.run_dir, config, base_cache=args.base_cache))
    except TrainingError as exc:
        print(f"memelearning train: {exc}", file=sys.stderr)
        return 2
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    from models.networks.base_models import BaseModelError
    from models.train.rebuild import RebuildError, rebuild

    if args.out.exists() and any(args.out.iterdir()):
        print(
            f"memelearning rebuild: {args.out} exists and is not empty; choose a new folder",
            file=sys.stderr,
        )
        return 2
    try:
        print(
            rebuild(
                args.source,
                args.out,
                version=args.version,
                faces=not args.no_faces,
                base_cache=args.base_cache,
                tflite_landmarks=args.tflite_landmarks,
                data_root=args.data,
            )
        )
    except (RebuildError, BaseModelError) as exc:
        print(f"memelearning rebuild: {exc}", file=sys.stderr)
        return 2
    return 0


def _export(args: argparse.Namespace) -> int:
    from models.train.training import MODEL_SUBDIR
    from worker.detector import Detector, ModelError

    source = args.run_dir / MODEL_SUBDIR if (args.run_dir / MODEL_SUBDIR).is_dir() else args.run_dir
    try:
        Detector.load(source)
    except ModelError as exc:
        print(f"memelearning export: {exc}", file=sys.stderr)
        return 2
    if args.out.exists():
        # Only ever replace a previous model, never a folder that holds something else.
        if not (args.out / "saved_model.pb").is_file():
            print(
                f"memelearning export: {args.out} exists and holds no saved_model.pb; "
                "refusing to replace it (choose an empty or new path)",
                file=sys.stderr,
            )
            return 2
        shutil.rmtree(args.out)
    # The evaluation report travels with the model: the card quotes it.
    shutil.copytree(source, args.out)
    print(args.out)
    return 0


def _room_names(text: str) -> tuple[str, ...]:
    from models.evaluate.conditions import names_argument

    return tuple(names_argument()(text))


def _evaluate(args: argparse.Namespace) -> int:
    from models.evaluate.assessment import EvaluationError, evaluate, summary_markdown
    from models.evaluate.peer_baseline import PeerFailed, PeerUnavailable
    from models.train.training import TrainingError

    try:
        metrics = evaluate(
            args.model_dir,
            args.data,
            args.out or Path("var") / "evaluate" / args.model_dir.resolve().name,
            limit=args.limit,
            peer_python=args.peer_python,
            write_card=args.update_card,
            rooms=args.conditions,
        )
    except (EvaluationError, TrainingError, PeerUnavailable, PeerFailed) as exc:
        print(f"memelearning evaluate: {exc}", file=sys.stderr)
        return 2
    print(summary_markdown(metrics))
    return 0
