#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, starts a local
# RabbitMQ if none answers, then runs scripts/check (ruff, mypy, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
# How long scripts/check takes on a 2-core machine, once everything is installed.
EXPECTED_MINUTES=8
echo "[test] the test command takes about $EXPECTED_MINUTES minutes on a 2-core machine (plus a few minutes of installs the first time)" >&2
WITH_BROWSER=1 EXTRAS=dev bash scripts/bootstrap.sh
exec bash scripts/check "$@"
