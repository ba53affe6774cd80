#!/usr/bin/env bash
# The demo: a local broker, a worker, the reactions service, a simulated meeting
# with a live page, and participants streaming real webcam frames into it.
# Ctrl-C stops everything. The page shows each participant's latest frame (held in
# memory only) with the worker's boxes, their hold-to-confirm progress and the GIF on
# whoever made the gesture, and a raised hand beside the name of whoever raised one;
# its "Join with my camera" button (or /?camera=NAME) adds your own camera as a
# participant (add &fps=8 for a wave the service sees moving).
#   By default three participants stream real webcam frames (README, "The demo"):
#     ana  ../shared/data/hands/test       fists, one finger, peace signs, open palms (wave),
#                                          and one frame of two peace signs (confetti)
#     bo   ../shared/data/signs/aniket-singh-01  ASL signs, among them OK and call-me
#     cy   ../shared/data/signs/sniiitik   ASL words only: some shapes read as gestures
#   DEMO_SOURCE        instead, one image folder or video for every participant
#   DEMO_PARTICIPANTS  participants streaming DEMO_SOURCE (default 3)
#   DEMO_FPS           frames per second per participant (default 2)
#   DEMO_HOLD          frames each still image is held for, like a held pose (default 4):
#                      the reactions service confirms a gesture over a few frames
#   MEMELEARNING_WORKER_MODEL_DIR  the model to serve (default: the shipped one)
#   DEMO_PAGE_PORT     where the meeting page is served (default 8090)
#   DEMO_TAIL=1        also print every reaction event as a JSON line
#   DEMO_VHOST         the demo's vhost on the local broker (default memelearning-demo,
#                      remade at each start; unused when a MEMELEARNING_*_AMQP_URL is set)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export VENV="${VENV:-$ROOT/.venv}"
EXTRAS=tf,litert,video bash scripts/bootstrap.sh
export PATH="$VENV/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=2

SOURCE="${DEMO_SOURCE:-}"
DATA="$ROOT/../shared/data"
PARTICIPANTS="${DEMO_PARTICIPANTS:-3}"
FPS="${DEMO_FPS:-2}"
HOLD="${DEMO_HOLD:-4}"
PORT="${MEMELEARNING_WORKER_HTTP_PORT:-9100}"
export MEMELEARNING_WORKER_HTTP_PORT="$PORT"

MODEL_DIR="${MEMELEARNING_WORKER_MODEL_DIR:-$ROOT/models/default}"
if [ ! -f "$MODEL_DIR/saved_model.pb" ]; then
  # The trained model is missing (a partial checkout): say so plainly and fall back
  # to the plumbing model.
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
# The demo's own vhost on the local broker, made afresh at each start (unless a broker
# URL is set): queues an older release declared with other arguments (the triage queue
# was a classic queue before 2026-11-29) cannot stop it, nothing on '/' is touched, and
# no frame of an earlier demo is left waiting.
if [ -z "${MEMELEARNING_WORKER_AMQP_URL:-}${MEMELEARNING_PUBLISHER_AMQP_URL:-}${MEMELEARNING_REACTIONS_AMQP_URL:-}" ]; then
  DEMO_URL="$(python - "${DEMO_VHOST:-memelearning-demo}" <<'PY'
import sys, urllib.error, urllib.parse
from memelearning.management import ManagementClient

vhost = sys.argv[1]
broker = ManagementClient("amqp://guest:guest@127.0.0.1:5672/", "http://127.0.0.1:15672/")
quoted = urllib.parse.quote(vhost, safe="")
try:
    broker.delete_vhost(vhost)
    broker.api("PUT", f"vhosts/{quoted}", {"description": "memelearning demo (remade at each start)"})
    broker.api("PUT", f"permissions/{quoted}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
except (OSError, urllib.error.URLError) as exc:
    sys.exit(f"cannot make the demo's vhost {vhost!r} through RabbitMQ's management API at 127.0.0.1:15672 ({exc}); is rabbitmq_management enabled?")
print(broker.url_for(vhost))
PY
)"
  export MEMELEARNING_WORKER_AMQP_URL="$DEMO_URL" MEMELEARNING_PUBLISHER_AMQP_URL="$DEMO_URL" \
    MEMELEARNING_REACTIONS_AMQP_URL="$DEMO_URL"
  echo "the demo runs in its own vhost: ${DEMO_VHOST:-memelearning-demo} (remade at each start)" >&2
fi

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo "stopping…" >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
}
trap cleanup INT TERM EXIT

# A port already taken (say by a worker from an earlier run, which would then answer
# the readiness check below for ours) stops the demo before it starts anything.
require_free_port() {  # PORT VARIABLE
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "port $1 is already taken (an earlier demo still running?): stop that process or set $2 to a free port" >&2
    exit 1
  fi
}
require_free_port "$PORT" MEMELEARNING_WORKER_HTTP_PORT
require_free_port "${DEMO_PAGE_PORT:-8090}" DEMO_PAGE_PORT
require_free_port "${MEMELEARNING_REACTIONS_HTTP_PORT:-9102}" MEMELEARNING_REACTIONS_HTTP_PORT

setsid memelearning --log-level WARNING worker &
pids+=($!)
echo "waiting for the worker to load and warm up its model…" >&2
until memelearning worker check --port "$PORT" >/dev/null 2>&1; do
  kill -0 "${pids[0]}" 2>/dev/null || { echo "the worker exited" >&2; exit 1; }
  sleep 1
done
kill -0 "${pids[0]}" 2>/dev/null || { echo "the worker exited" >&2; exit 1; }
echo "worker ready; metrics on http://127.0.0.1:$PORT/metrics" >&2

# The meeting side: a local simulator of the meeting platform's REST API that also
# serves the page, and the reactions service that injects GIFs into it.
SIM_PORT="${DEMO_PAGE_PORT:-8090}"
export MEMELEARNING_REACTIONS_MEETING_API_URL="http://127.0.0.1:$SIM_PORT"
setsid memelearning --log-level WARNING reactions meeting-sim --port "$SIM_PORT" &
pids+=($!)
setsid memelearning --log-level WARNING reactions serve &
pids+=($!)
# The demo meeting switches `thinking` on, as a host would: it is off by default (a hand
# at the chin is how many people listen). The service must be up to take it.
python - "${MEMELEARNING_REACTIONS_HTTP_PORT:-9102}" <<'PY' || echo "could not switch thinking on for the demo meeting" >&2
import json, sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(120):
    try:
        urllib.request.urlopen(base + "/readyz", timeout=1).close()
        break
    except OSError:
        time.sleep(0.5)
body = json.dumps({"enabled": True}).encode()
request = urllib.request.Request(base + "/meetings/demo/reactions/thinking", body, method="PUT")
urllib.request.urlopen(request, timeout=3).close()
PY
if [ -n "${DEMO_TAIL:-}" ]; then
  setsid memelearning --log-level WARNING reactions tail --meeting demo &
  pids+=($!)
fi
sleep 1
echo >&2
echo "  ▶ open http://127.0.0.1:$SIM_PORT/ to watch the meeting (Ctrl-C stops the demo)" >&2
echo "    http://127.0.0.1:$SIM_PORT/?camera=you joins it with your own camera" >&2
echo >&2
publish() {
  setsid memelearning --log-level WARNING publish --meeting demo --fps "$FPS" --hold "$HOLD" \
    --loop --no-progress "$@" &
  publishers+=($!)
  pids+=($!)
}
publishers=()
if [ -n "$SOURCE" ]; then
  publish --participants "$PARTICIPANTS" "$SOURCE"
else
  # Each participant streams a person of the shared data. The gesture head trained on
  # HaGRID crops, plus the 3- and 4-finger hands of hands/train (the same person as
  # hands/test, as `none`); stage one trained on none of them.
  publish --participant ana "$DATA/hands/test"
  publish --participant bo "$DATA/signs/aniket-singh-01"
  publish --participant cy "$DATA/signs/sniiitik"
fi
# The demo runs until Ctrl-C (or a publisher stops, e.g. on a broker error).
wait -n "${publishers[@]}"
