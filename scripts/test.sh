#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, starts a local
# RabbitMQ if none answers, then runs scripts/check (ruff, mypy, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_BROWSER=1 bash scripts/bootstrap.sh
exec bash scripts/check "$@"
