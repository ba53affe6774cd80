"""The peer baseline: MediaPipe's stock Gesture Recognizer on the frames our model is
scored on, for ``memelearning evaluate`` to report side by side (evaluation only).

MediaPipe 1.2.x cannot share the project's environment, so it lives in its own
(``scripts/peer-env.sh`` makes ``.peer-venv``) and :mod:`models.evaluate.peer` runs there as a
script; this module starts it, feeds it the frame paths and reads back, per frame, each
hand's box, gesture and scores. Frames go to it as paths only: it decodes them itself,
the way the worker does.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tqdm import tqdm

from models.dataset.voc import Annotation
from models.evaluate import conditions
from models.evaluate.evaluation import Box, Prediction
from models.evaluate.frame_scores import ScoredFrame, frame_truths

PEER_SCRIPT: Final = Path(__file__).with_name("peer.py")
DEFAULT_PEER_PYTHON: Final = Path(__file__).resolve().parents[2] / ".peer-venv" / "bin" / "python"
"""Where ``scripts/peer-env.sh`` puts the environment's interpreter by default."""
DEFAULT_GROWTH: Final = 1.3
"""How much each side of a peer hand box is grown, about its centre.

The peer's boxes are the tight bounds of 21 landmarks, which sit on joints and
fingertips: they stop short of the skin around the fingers and end at the wrist joint,
while a LabelImg box is drawn around the whole hand with some margin and takes in part
of the wrist. Ungrown, they are too small to match at IoU 0.5. Measured on 30 frames
each (2026-11-28), the mean best IoU with the truth boxes was 0.68 / 0.81 / 0.86 /
0.82 / 0.74 on hands/test and 0.50 / 0.60 / 0.68 / 0.73 / 0.73 on signs/sniiitik for
growth 1.0 / 1.1 / 1.2 / 1.3 / 1.4; 1.3 suits both (all and 83 % of truths matched at
IoU >= 0.5, against 94 % and 57 % ungrown)."""
REPORT_SCORE: Final = 0.5
"""The score at or above which a peer gesture counts as reported."""
PEER_GESTURES: Final = frozenset({"like", "dislike", "peace", "palm", "fist", "one"})
"""Our gestures the peer has a class for (``models.evaluate.peer.TO_OURS``, which this module
does not import: that one runs in the peer's own environment)."""
HAND: Final = "hand"


class PeerUnavailable(Exception):
    """The peer environment is not there (``scripts/peer-env.sh`` makes it)."""


class PeerFailed(Exception):
    """The peer script ran and failed; the message ends with what it said."""


@dataclass(frozen=True, slots=True)
class PeerHand:
    """One hand the peer found. ``box`` is normalized ``(ymin, xmin, ymax, xmax)``,
    grown and clipped to the frame."""

    box: Box
    label: str | None
    """Our gesture, or ``None`` (MediaPipe's ``None``, ``ILoveYou`` or unmapped)."""
    gesture: str | None
    """MediaPipe's own name of the gesture."""
    score: float
    """The gesture's score (the winning class's probability)."""
    handedness: str | None
    handedness_score: float


@dataclass(frozen=True, slots=True)
class PeerFrame:
    path: Path
    seconds: float
    """The recognizer's time on this frame (decoding not included)."""
    hands: tuple[PeerHand, ...]

    def predictions(self) -> tuple[Prediction, ...]:
        """The hands named one of our gestures, as evaluation predictions."""
        return tuple(Prediction(h.label, h.score, h.box) for h in self.hands if h.label)

    def hand_predictions(self) -> tuple[Prediction, ...]:
        """Every hand, labelled ``hand`` and scored by its handedness score (the only
        per-hand confidence the recognizer reports; hands below its default presence
        and detection confidences of 0.5 are already dropped)."""
        return tuple(Prediction(HAND, h.handedness_score, h.box) for h in self.hands)


def grow_box(box: Sequence[float], factor: float) -> Box:
    """``box`` (ymin, xmin, ymax, xmax, normalized) with each side scaled by ``factor``
    about its centre, clipped to the frame."""
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    cy, cx = (ymin + ymax) / 2, (xmin + xmax) / 2
    hh, hw = (ymax - ymin) * factor / 2, (xmax - xmin) * factor / 2

    def clip(v: float) -> float:
        return min(max(v, 0.0), 1.0)

    return (clip(cy - hh), clip(cx - hw), clip(cy + hh), clip(cx + hw))


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _hand(raw: Any, growth: float) -> PeerHand:
    return PeerHand(
        box=grow_box([float(v) for v in raw["box"]], growth),
        label=_optional_str(raw.get("label")),
        gesture=_optional_str(raw.get("gesture")),
        score=float(raw["score"]),
        handedness=_optional_str(raw.get("handedness")),
        handedness_score=float(raw["handedness_score"]),
    )


def run_peer(
    peer_python: Path,
    paths: Sequence[Path],
    input_size: tuple[int, int],
    *,
    growth: float = DEFAULT_GROWTH,
    desc: str | None = None,
    script: Path = PEER_SCRIPT,
    condition: str | None = None,
    fit: str = "stretch",
) -> list[PeerFrame]:
    """Run the stock recognizer (``script`` under ``peer_python``) on the JPEGs at
    ``paths`` (as a camera in room ``condition`` would have sent them, when given),
    each fitted into ``input_size`` (H, W) as the worker fits frames for our model
    (``fit``: stretched, or whole at their own shape). Returns one
    :class:`PeerFrame` per path, in order. ``desc`` shows a progress bar."""
    if not peer_python.is_file() or not os.access(peer_python, os.X_OK):
        raise PeerUnavailable(f"no peer environment at {peer_python}: run bash scripts/peer-env.sh")
    wanted = [str(p.resolve()) for p in paths]
    request: dict[str, Any] = {"paths": wanted, "size": list(input_size), "fit": fit}
    if condition is not None:
        request["condition"] = conditions.check(condition)
    frames: list[PeerFrame] = []
    # MediaPipe logs plenty to stderr; it goes to a file (no pipe to fill and stall)
    # and is shown only when the script fails. It never holds frame data.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        with subprocess.Popen(
            [str(peer_python), str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"},
        ) as process:
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(json.dumps(request))
                process.stdin.close()
            except BrokenPipeError:
                pass  # it stopped before reading: its exit status and log say why
            bar = tqdm(total=len(paths), desc=desc, unit="frame", disable=desc is None)
            with bar:
                for line in process.stdout:
                    record = json.loads(line)
                    if "peer" in record:
                        continue
                    frames.append(
                        PeerFrame(
                            Path(record["path"]),
                            float(record["seconds"]),
                            tuple(_hand(h, growth) for h in record["hands"]),
                        )
                    )
                    bar.update()
        if process.returncode != 0:
            log.seek(0)
            said = [line.rstrip() for line in log if line.strip()]
            peer_lines = [line for line in said if line.startswith("peer:")]
            tail = "; ".join(peer_lines[-1:] or said[-3:])
            raise PeerFailed(f"{script.name} exited with {process.returncode}: {tail}")
    if [f.path for f in frames] != [Path(p) for p in wanted]:
        raise PeerFailed(f"{script.name} answered {len(frames)} frames for {len(paths)} paths")
    return frames


def peer_predictions(
    peer_python: Path,
    paths: Sequence[Path],
    input_size: tuple[int, int],
    *,
    growth: float = DEFAULT_GROWTH,
    script: Path = PEER_SCRIPT,
) -> list[tuple[Prediction, ...]]:
    """The peer's gestures on each frame, as evaluation predictions (label, score, box)."""
    frames = run_peer(peer_python, paths, input_size, growth=growth, script=script)
    return [f.predictions() for f in frames]


def peer_frames(
    peer_python: Path,
    annotations: Sequence[Annotation],
    label_of: Callable[[str], str],
    input_size: tuple[int, int],
    *,
    group_of: Callable[[Annotation], str] | None = None,
    growth: float = DEFAULT_GROWTH,
    script: Path = PEER_SCRIPT,
    condition: str | None = None,
    fit: str = "stretch",
) -> list[ScoredFrame]:
    """The peer scored like our model: one :class:`ScoredFrame` per annotation, truths
    labelled by ``label_of``, grouped by ``group_of`` (default: the annotation's
    group), gestures reported at score >= :data:`REPORT_SCORE`; frames and truths as
    in room ``condition`` when one is given."""
    frames = run_peer(
        peer_python,
        [a.image_path for a in annotations],
        input_size,
        growth=growth,
        desc="peer (MediaPipe)" + (f", {condition}" if condition else ""),
        script=script,
        condition=condition,
        fit=fit,
    )
    out = []
    for annotation, frame in zip(annotations, frames, strict=True):
        gestures = frame.predictions()
        out.append(
            ScoredFrame(
                (group_of or _group)(annotation),
                frame_truths(annotation, label_of, condition),
                frame.hand_predictions(),
                gestures,
                tuple(g for g in gestures if g.score >= REPORT_SCORE),
            )
        )
    return out


def _group(annotation: Annotation) -> str:
    return annotation.group


def mean_seconds(frames: Sequence[PeerFrame]) -> float | None:
    """The recognizer's mean time per frame."""
    return sum(f.seconds for f in frames) / len(frames) if frames else None
