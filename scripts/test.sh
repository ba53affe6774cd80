#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, starts a local
# RabbitMQ if none answers, then runs scripts/check (ruff, mypy, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
# How long scripts/check takes on a 2-core machine, once everything is installed:
# measured 4.4 minutes (506 tests, two pytest workers) with the cores to itself, and
# 10.7 with other work keeping them busy.
EXPECTED_MINUTES=5
echo "[test] the test command takes about $EXPECTED_MINUTES minutes on a 2-core machine (up to twice that when other work shares its cores; plus a few minutes of installs the first time)" >&2
WITH_BROWSER=1 EXTRAS=dev bash scripts/bootstrap.sh
exec bash scripts/check "$@"
