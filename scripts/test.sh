#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, starts a local
# RabbitMQ if none answers, then runs scripts/check (ruff, mypy, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
# How long scripts/check takes on a 2-core machine, once everything is installed:
# measured 11.3 minutes of checks from a clean clone (718 tests, two pytest workers;
# 15 minutes in all with the installs, pip's cache warm) with little else running,
# 2026-11-29 at 47b7775 on an AVX-512 VM; 18.6 minutes of pytest alone (763 tests,
# 21.5 minutes in all) at bbf7be8 on an AVX2 VM whose model runs 1.6x slower and
# with the int8 export tests added; up to twice that with other work on the cores.
EXPECTED_MINUTES=20
echo "[test] the test command takes about $EXPECTED_MINUTES minutes on a 2-core machine (up to twice that when other work shares its cores; plus a few minutes of installs the first time)" >&2
WITH_BROWSER=1 EXTRAS=dev bash scripts/bootstrap.sh
exec bash scripts/check "$@"
