"""The model repository: numbered versions of a model and which of them serve.

Layout (as NVIDIA Triton's and TF Serving's model repositories)::

    MODELS_DIR/
      gestures/                 a model: its name is the folder's name
        serving.json            which versions serve (written by `memelearning models
                                promote|rollback`; absent until the first promote)
        3/                      a version: a complete exported model folder
          saved_model.pb  variables/  model.tflite  label_map.pbtxt  model.json
        4/

A version folder's name is a number and is the version; ``model.json``, when it names
a name or a version, must agree with the folders (otherwise events would carry one
version and the repository another). Folders whose names are not numbers (``4.tmp``
while a copy is in progress) are not versions: copy a new version under another name,
then rename it, and no worker ever sees half of it.

``serving.json`` holds a :class:`ServingState`: the default version, an optional
candidate with the share of participants it serves (the canary), the earlier defaults
(for rollback) and a revision that grows with every change. A worker resolves it with
its version policy into a :class:`ServingPlan`: ``latest`` serves what ``serving.json``
says, or the highest version while there is no ``serving.json``; a version number
pins the worker to that version whatever ``serving.json`` says.

A plain model folder (``models/default``) is not a repository: the worker serves it as
it is, as before.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from worker.detector import SAVED_MODEL_FILE, ModelError, read_model_dir
from worker.litert import TFLITE_FILE

SERVING_FILE: Final = "serving.json"
LATEST: Final = "latest"
# Versions are numbers (compared as numbers: 10 is newer than 9).
VERSION_PATTERN: Final = re.compile(r"[0-9]{1,18}")
# Earlier defaults kept for rollback.
HISTORY_LIMIT: Final = 20

Version = Annotated[str, StringConstraints(pattern=rf"^{VERSION_PATTERN.pattern}$")]
Percent = Annotated[float, Field(ge=0, le=100)]


class RepositoryError(Exception):
    """A repository, a version or a change to what serves that cannot be used; the
    message is one line saying what is wrong and what to do."""


class ServingState(BaseModel):
    """``serving.json``: which versions of one model serve."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    revision: Annotated[int, Field(ge=0)] = 0
    default: Version
    candidate: Version | None = None
    canary_percent: Percent = 0.0
    history: tuple[Version, ...] = ()
    """Earlier defaults, oldest first; rollback returns to the last one."""
    updated_ms: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _consistent(self) -> ServingState:
        if self.candidate is None and self.canary_percent != 0:
            raise ValueError("canary_percent is set without a candidate")
        if self.candidate is not None:
            if self.candidate == self.default:
                raise ValueError(f"candidate {self.candidate} is also the default")
            if not 0 < self.canary_percent < 100:
                raise ValueError("a candidate needs a canary_percent between 0 and 100 (exclusive)")
        return self

    def same_serving(self, other: ServingState) -> bool:
        return (self.default, self.candidate, self.canary_percent) == (
            other.default,
            other.candidate,
            other.canary_percent,
        )


@dataclass(frozen=True)
class ServingPlan:
    """What one worker should serve: versions of its model and the canary share."""

    default: str
    candidate: str | None = None
    canary_percent: float = 0.0
    revision: int = 0
    """Of the serving state it came from; 0 without one."""

    def describe(self) -> str:
        if self.candidate is None:
            return f"version {self.default}"
        return (
            f"version {self.default} with version {self.candidate} for "
            f"{self.canary_percent:g}% of participants"
        )


@dataclass(frozen=True)
class VersionInfo:
    """What a quick look at a version folder found (no model is loaded)."""

    version: str
    labels: frozenset[str]
    runtimes: tuple[str, ...]
    """"tensorflow" when it has a SavedModel, "litert" when it has a TFLite export."""


def check_policy(policy: str) -> str:
    """``latest`` or a version number; raises ValueError otherwise."""
    if policy != LATEST and not VERSION_PATTERN.fullmatch(policy):
        raise ValueError(f"must be {LATEST!r} or a version number, got {policy!r}")
    return policy


def is_model_folder(path: Path) -> bool:
    return any((path / name).is_file() for name in (SAVED_MODEL_FILE, TFLITE_FILE))


class ModelRepository:
    """One model of a repository: the ``MODELS_DIR/<name>`` folder of its versions."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"ModelRepository({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def state_path(self) -> Path:
        return self.path / SERVING_FILE

    def versions(self) -> list[str]:
        """Version folders, oldest first."""
        try:
            entries = list(self.path.iterdir())
        except OSError as exc:
            raise RepositoryError(f"{self.path}: cannot list versions: {exc.strerror}") from None
        found = [e.name for e in entries if VERSION_PATTERN.fullmatch(e.name) and e.is_dir()]
        return sorted(found, key=int)

    def version_dir(self, version: str) -> Path:
        return self.path / version

    def latest(self) -> str:
        versions = self.versions()
        if not versions:
            raise RepositoryError(
                f"{self.path}: no versions (folders named by a number, e.g. {self.path / '1'})"
            )
        return versions[-1]

    def check(self, version: str) -> VersionInfo:
        """Look at a version folder without loading the model: it exists, holds a model
        and a label map the worker can read, and its ``model.json`` agrees with the
        folder names. Raises :class:`RepositoryError` naming the problem."""
        path = self.version_dir(version)
        if not VERSION_PATTERN.fullmatch(version) or not path.is_dir():
            shown = ", ".join(self.versions()) or "none"
            raise RepositoryError(f"{self.path}: no version {version} (versions: {shown})")
        runtimes = tuple(
            runtime
            for runtime, file in (("tensorflow", SAVED_MODEL_FILE), ("litert", TFLITE_FILE))
            if (path / file).is_file()
        )
        if not runtimes:
            raise RepositoryError(f"{path}: no {SAVED_MODEL_FILE} or {TFLITE_FILE} (not a model)")
        model_file = SAVED_MODEL_FILE if "tensorflow" in runtimes else TFLITE_FILE
        try:
            labels, metadata, _ = read_model_dir(
                path,
                model_file,
                "not a model",
                default_threshold=0.5,
                thresholds={},
                ignore_labels=(),
            )
        except ModelError as exc:
            raise RepositoryError(str(exc)) from None
        for what, said, folder in (
            ("name", metadata.name, self.name),
            ("version", metadata.version, version),
        ):
            if said is not None and said != folder:
                raise RepositoryError(
                    f"{path / 'model.json'}: {what} {said!r} disagrees with the folder "
                    f"({folder!r}); the folders name the model and the version: set "
                    f"{what} to {folder!r} or remove it"
                )
        return VersionInfo(version=version, labels=frozenset(labels.names), runtimes=runtimes)

    def labels(self, version: str) -> frozenset[str]:
        return self.check(version).labels

    # -- serving.json

    def read_state(self) -> ServingState | None:
        """The serving state, or None before the first promote."""
        try:
            data = self.state_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RepositoryError(f"{self.state_path}: cannot read: {exc.strerror}") from None
        try:
            return ServingState.model_validate_json(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors()
            )
            raise RepositoryError(f"{self.state_path}: {problems}") from None

    def write_state(self, state: ServingState) -> None:
        """Replace ``serving.json`` atomically (a reader sees the old or the new file,
        never half of one)."""
        text = state.model_dump_json(indent=2) + "\n"
        try:
            fd, tmp = tempfile.mkstemp(prefix=".serving-", suffix=".tmp", dir=self.path)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.state_path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise RepositoryError(f"{self.state_path}: cannot write: {exc.strerror}") from None

    def current_state(self) -> ServingState:
        """``serving.json``, or the state a ``latest`` worker is in without one."""
        return self.read_state() or ServingState(default=self.latest())

    def plan(self, policy: str = LATEST, state: ServingState | None = None) -> ServingPlan:
        """What a worker with this version policy serves, from ``state`` (default: the
        one on disk). Versions that are not on disk are an error."""
        if policy != LATEST:
            self.check_exists(policy)
            return ServingPlan(default=policy)
        if state is None:
            state = self.read_state()
        if state is None:
            return ServingPlan(default=self.latest())
        self.check_exists(state.default)
        if state.candidate is not None:
            self.check_exists(state.candidate)
        return ServingPlan(
            default=state.default,
            candidate=state.candidate,
            canary_percent=state.canary_percent,
            revision=state.revision,
        )

    def check_exists(self, version: str) -> None:
        if not self.version_dir(version).is_dir():
            shown = ", ".join(self.versions()) or "none"
            raise RepositoryError(f"{self.path}: no version {version} (versions: {shown})")


def open_repository(path: Path) -> ModelRepository | None:
    """The model repository ``path`` points at, or None when it is a plain model folder
    (or nothing the repository knows: the loader then says what is missing).

    ``path`` may be a model's folder of versions (``MODELS_DIR/gestures``) or the
    repository itself when it holds exactly one model (``MODELS_DIR``)."""
    if not path.is_dir() or is_model_folder(path):
        return None
    repository = ModelRepository(path)
    if repository.versions():
        return repository
    models = find_models(path)
    if len(models) == 1:
        return models[0]
    if len(models) > 1:
        names = ", ".join(str(m.path) for m in models)
        raise RepositoryError(f"{path} holds several models; point at one of them: {names}")
    return None


def find_models(root: Path) -> list[ModelRepository]:
    """The models of a repository root (folders holding version folders), by name."""
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError as exc:
        raise RepositoryError(f"{root}: cannot list: {exc.strerror}") from None
    return [ModelRepository(child) for child in children if ModelRepository(child).versions()]


def dropped_labels(
    serving: Collection[str], candidate: Collection[str], catalog: Collection[str]
) -> list[str]:
    """Labels the reactions catalog maps and the serving version reports that
    ``candidate`` would no longer report: a swap would silently stop those reactions."""
    return sorted((set(serving) & set(catalog)) - set(candidate))


def catalog_labels(path: Path | None) -> frozenset[str]:
    """The model labels the reactions catalog maps to reactions (``path`` None: the
    packaged catalog)."""
    from reactions.catalog import DEFAULT_CATALOG, Catalog

    source = path or DEFAULT_CATALOG
    try:
        return frozenset(Catalog.load(source).labels)
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise RepositoryError(f"{source}: cannot read the reactions catalog: {detail}") from None


# -- changes an operator makes (memelearning models promote|rollback)


def promote(
    repository: ModelRepository,
    version: str | None,
    *,
    canary_percent: float | None = None,
    catalog: Collection[str] = (),
) -> tuple[ServingState, bool]:
    """The serving state after promoting ``version``: with ``canary_percent``, it
    becomes the candidate for that share of participants; without, the default (None:
    the candidate becomes the default). Returns the state and whether it changed;
    writes nothing. Raises :class:`RepositoryError` for a version that cannot serve."""
    state = repository.current_state()
    if version is None:
        if state.candidate is None:
            shown = ", ".join(repository.versions())
            raise RepositoryError(
                f"{repository.path}: no candidate to promote; name a version (versions: {shown})"
            )
        version = state.candidate
    new = repository.check(version)
    if canary_percent is not None:
        if not 0 < canary_percent < 100:
            raise RepositoryError(
                "--canary must be a share of participants between 0 and 100, "
                f"got {canary_percent:g}"
            )
        default = state.default
        if repository.read_state() is None and version == default:
            # Before the first promote a `latest` fleet serves the highest version it
            # found when it started, which is not this new one.
            older = [v for v in repository.versions() if int(v) < int(version)]
            if not older:
                raise RepositoryError(
                    f"{repository.path}: version {version} is the only version; promote it "
                    "without --canary"
                )
            default = older[-1]
        if version == default:
            raise RepositoryError(f"version {version} is already the default")
        _check_labels(repository, default, new, catalog)
        changed = ServingState(
            revision=state.revision,
            default=default,
            candidate=version,
            canary_percent=canary_percent,
            history=state.history,
        )
    else:
        _check_labels(repository, state.default, new, catalog)
        history = state.history
        if version != state.default:
            history = (*history, state.default)[-HISTORY_LIMIT:]
        changed = ServingState(revision=state.revision, default=version, history=history)
    return _next(repository, changed)


def rollback(repository: ModelRepository) -> tuple[ServingState, bool]:
    """The serving state after a rollback: a canary is called off (its participants go
    back to the default); without one, the default returns to the previous default.
    Returns the state and whether it changed; writes nothing."""
    state = repository.read_state()
    if state is None:
        raise RepositoryError(
            f"{repository.path}: nothing to roll back to ({SERVING_FILE} is absent: "
            "no version was ever promoted)"
        )
    if state.candidate is not None:
        changed = ServingState(
            revision=state.revision, default=state.default, history=state.history
        )
    else:
        if not state.history:
            raise RepositoryError(
                f"{repository.path}: nothing to roll back to (version {state.default} has "
                "no earlier default)"
            )
        *rest, previous = state.history
        repository.check(previous)
        changed = ServingState(revision=state.revision, default=previous, history=tuple(rest))
    return _next(repository, changed)


def _check_labels(
    repository: ModelRepository, serving: str, new: VersionInfo, catalog: Collection[str]
) -> None:
    try:
        old = repository.labels(serving)
    except RepositoryError:
        # The serving version's folder is gone or broken: nothing to compare with.
        return
    lost = dropped_labels(old, new.labels, catalog)
    if lost:
        raise RepositoryError(
            f"version {new.version} lacks labels the reactions catalog uses and version "
            f"{serving} reports: {', '.join(lost)} (remove them from the catalog first if "
            "that is intended)"
        )


def _next(repository: ModelRepository, changed: ServingState) -> tuple[ServingState, bool]:
    current = repository.read_state()
    if current is not None and current.same_serving(changed) and current.history == changed.history:
        return current, False
    revision = (current.revision if current is not None else 0) + 1
    stamped = changed.model_copy(
        update={"revision": revision, "updated_ms": int(time.time() * 1000)}
    )
    return stamped, True


def describe_versions(
    repository: ModelRepository, state: ServingState | None
) -> Iterable[tuple[str, str, str]]:
    """Rows for ``memelearning models list``: version, role, what a quick check found."""
    versions = repository.versions()
    effective = state or (ServingState(default=versions[-1]) if versions else None)
    for version in versions:
        role = "-"
        if effective is not None:
            if version == effective.default:
                role = "default" if state is not None else "default (latest)"
            elif version == effective.candidate:
                role = f"candidate {effective.canary_percent:g}%"
            elif version in effective.history:
                role = "earlier default"
        try:
            info = repository.check(version)
        except RepositoryError as exc:
            yield version, role, f"broken: {exc}"
            continue
        yield version, role, f"{'+'.join(info.runtimes)}; {len(info.labels)} labels"
