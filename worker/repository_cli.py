"""``memelearning models list|promote|rollback|notify``: the model repository from the
command line. A thin wrapper over :mod:`worker.repository` (what serves) and
:mod:`worker.control` (telling the workers); see docs/operations.md, "Rolling out a
model"."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from memelearning.amqp import BrokerConnectError
from memelearning.settings import load_settings
from worker.repository import (
    SERVING_FILE,
    ModelRepository,
    RepositoryError,
    ServingState,
    catalog_labels,
    describe_versions,
    find_models,
    open_repository,
    promote,
    rollback,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the repository commands to ``memelearning models``."""
    listing = sub.add_parser(
        "list",
        help="versions of each model in a repository, and which serve",
        description="List MODELS_DIR/<name>/<version>/ folders, what serving.json says "
        "serves (default, canary candidate and its share, earlier defaults) and a quick "
        "check of each version (files, label map, model.json); nothing is loaded.",
    )
    listing.add_argument("path", type=Path, help="MODELS_DIR, or one model's folder in it")
    listing.set_defaults(func=_list)

    promoting = sub.add_parser(
        "promote",
        help="make a version the default, or the canary for a share of participants",
        description="Write serving.json and tell every worker (control exchange, "
        "MEMELEARNING_MODELS_* settings). Without --canary, VERSION (default: the "
        "current candidate) becomes the default for everyone; with --canary PERCENT, "
        "VERSION serves that share of participants beside the default. A version that "
        "fails its checks, or lacks labels the reactions catalog uses and the default "
        "reports, is refused. Running it again re-sends the same state.",
    )
    promoting.add_argument("model", type=Path, help="the model's folder, MODELS_DIR/<name>")
    promoting.add_argument("version", nargs="?", help="the version folder (a number)")
    promoting.add_argument(
        "--canary",
        type=float,
        metavar="PERCENT",
        help="serve VERSION to this share of participants (0-100, exclusive)",
    )
    _common(promoting)
    promoting.set_defaults(func=_promote)

    rolling = sub.add_parser(
        "rollback",
        help="call off a canary, or return to the previous default",
        description="With a canary running, its participants go back to the default; "
        "without one, the previous default serves again. Writes serving.json and tells "
        "every worker.",
    )
    rolling.add_argument("model", type=Path, help="the model's folder, MODELS_DIR/<name>")
    _common(rolling)
    rolling.set_defaults(func=_rollback)

    notifying = sub.add_parser(
        "notify",
        help="send serving.json to every worker again (after a failed notification)",
    )
    notifying.add_argument("model", type=Path, help="the model's folder, MODELS_DIR/<name>")
    notifying.set_defaults(func=_notify_again)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog",
        type=Path,
        help="the reactions catalog whose labels a version must keep "
        "(default: the packaged reactions/catalog.json)",
    )
    parser.add_argument(
        "--no-notify",
        action="store_true",
        help="only write serving.json (workers polling the folder pick it up)",
    )


def _list(args: argparse.Namespace) -> int:
    try:
        single = open_repository(args.path)
        models = [single] if single is not None else find_models(args.path)
        if not models:
            raise RepositoryError(
                f"{args.path}: no models (a model is a folder of numbered version folders)"
            )
        for model in models:
            state = model.read_state()
            print(f"{model.name}  {_summary(model, state)}")
            for version, role, check in describe_versions(model, state):
                print(f"  {version:>8}  {role:<16}  {check}")
    except RepositoryError as exc:
        return _fail(exc)
    return 0


def _promote(args: argparse.Namespace) -> int:
    try:
        repository = _repository(args.model)
        catalog = catalog_labels(args.catalog)
        state, changed = promote(
            repository, args.version, canary_percent=args.canary, catalog=catalog
        )
    except RepositoryError as exc:
        return _fail(exc)
    return _write_and_notify(repository, state, changed, args.no_notify)


def _rollback(args: argparse.Namespace) -> int:
    try:
        repository = _repository(args.model)
        state, changed = rollback(repository)
    except RepositoryError as exc:
        return _fail(exc)
    return _write_and_notify(repository, state, changed, args.no_notify)


def _notify_again(args: argparse.Namespace) -> int:
    try:
        repository = _repository(args.model)
        state = repository.read_state()
    except RepositoryError as exc:
        return _fail(exc)
    if state is None:
        return _fail(RepositoryError(f"{repository.path}: no {SERVING_FILE} to send yet"))
    return _write_and_notify(repository, state, False, False)


def _repository(path: Path) -> ModelRepository:
    repository = open_repository(path)
    if repository is None:
        raise RepositoryError(
            f"{path}: not a model of a repository (a folder of numbered version folders)"
        )
    return repository


def _write_and_notify(
    repository: ModelRepository, state: ServingState, changed: bool, no_notify: bool
) -> int:
    if changed:
        try:
            repository.write_state(state)
        except RepositoryError as exc:
            return _fail(exc)
    what = "now serves" if changed else "already serves"
    print(f"{repository.name} {what} {_serving(state)} (revision {state.revision})")
    if no_notify:
        return 0
    from worker.control import notify_workers
    from worker.models_settings import ModelsSettings

    settings = load_settings(ModelsSettings)
    try:
        asyncio.run(notify_workers(settings, repository.name, state))
    except (BrokerConnectError, TimeoutError, OSError, RuntimeError) as exc:
        print(
            f"memelearning models: {SERVING_FILE} is written, but the workers were not told "
            f"({exc}); run `memelearning models notify {repository.path}` once the broker "
            "answers (workers that poll the folder pick it up on their own)",
            file=sys.stderr,
        )
        return 1
    print(f"workers told through the {settings.control_exchange} exchange")
    return 0


def _summary(model: ModelRepository, state: ServingState | None) -> str:
    if state is None:
        return f"(no {SERVING_FILE}: workers with policy latest serve the highest version)"
    return f"serves {_serving(state)} ({SERVING_FILE} revision {state.revision})"


def _serving(state: ServingState) -> str:
    if state.candidate is None:
        return f"version {state.default}"
    return (
        f"version {state.default}, and version {state.candidate} to "
        f"{state.canary_percent:g}% of participants"
    )


def _fail(exc: Exception) -> int:
    print(f"memelearning models: {exc}", file=sys.stderr)
    return 2
