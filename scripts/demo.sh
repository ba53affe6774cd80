#!/usr/bin/env bash
# The demo: a local broker, a worker, simulated participants streaming real webcam
# frames, and the reaction events as they come out. Ctrl-C stops everything.
#   DEMO_SOURCE        image folder or video to stream (default: ../shared/data/signs/<person>)
#   DEMO_PARTICIPANTS  simulated participants (default 3)   DEMO_FPS  per participant (default 2)
#   MEMELEARNING_WORKER_MODEL_DIR  the model to serve (default: the shipped one)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
EXTRAS=tf bash scripts/bootstrap.sh
export PATH="$ROOT/.venv/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=2

SOURCE="${DEMO_SOURCE:-$ROOT/../shared/data/signs/Condzi}"
PARTICIPANTS="${DEMO_PARTICIPANTS:-3}"
FPS="${DEMO_FPS:-2}"
PORT="${MEMELEARNING_WORKER_HTTP_PORT:-9100}"
export MEMELEARNING_WORKER_HTTP_PORT="$PORT"

MODEL_DIR="${MEMELEARNING_WORKER_MODEL_DIR:-$ROOT/models/default}"
if [ ! -f "$MODEL_DIR/saved_model.pb" ]; then
  # No trained gesture detector ships yet: say so plainly and use the plumbing model.
  MODEL_DIR="$ROOT/var/models/colour-plumbing"
  [ -f "$MODEL_DIR/saved_model.pb" ] || memelearning --log-level WARNING models export-plumbing "$MODEL_DIR" >/dev/null
  echo "NOTE: no trained gesture model is installed at models/default." >&2
  echo "      Serving the COLOUR PLUMBING model ($MODEL_DIR): it labels frames" >&2
  echo "      red/green/blue by dominant colour. It is NOT a gesture detector." >&2
  # Its score is the share of pixels of that colour; webcam frames rarely reach 0.5.
  export MEMELEARNING_WORKER_SCORE_THRESHOLD="${MEMELEARNING_WORKER_SCORE_THRESHOLD:-0.3}"
fi
export MEMELEARNING_WORKER_MODEL_DIR="$MODEL_DIR"

# Each child runs in its own session: a terminal's Ctrl-C then reaches only this
# script, which sends each child exactly one SIGTERM (a second signal would make the
# worker exit without draining).
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo "stopping…" >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
}
trap cleanup INT TERM EXIT

setsid memelearning --log-level WARNING worker &
pids+=($!)
echo "waiting for the worker to load and warm up its model…" >&2
until memelearning worker check --port "$PORT" >/dev/null 2>&1; do
  kill -0 "${pids[0]}" 2>/dev/null || { echo "the worker exited" >&2; exit 1; }
  sleep 1
done
echo "worker ready; metrics on http://127.0.0.1:$PORT/metrics" >&2

setsid memelearning --log-level WARNING reactions tail --meeting demo &
pids+=($!)
sleep 1
setsid memelearning --log-level WARNING publish --meeting demo --participants "$PARTICIPANTS" \
  --fps "$FPS" --loop "$@" "$SOURCE" &
pids+=($!)
wait "${pids[2]}"
