#!/usr/bin/env bash
# Builds the operator image from operator/Dockerfile WITHOUT a Docker engine, then checks
# that it starts: buildah (vfs storage, chroot isolation) on a Debian base made with
# debootstrap, and Python wheels downloaded on the host (pip inside the build has no
# trusted network here), installed in the build with --no-index.
#
#   bash scripts/build_operator_image.sh            # build + check localhost/kubetune-operator:VERSION
#   PUSH_TO=docker://registry.example.com/kubetune-operator:0.1.0 bash scripts/build_operator_image.sh
#   OCI_ARCHIVE=build/kubetune-operator.tar bash scripts/build_operator_image.sh   # e.g. for `kind load image-archive`
#
# Needs root (or a user namespace) and Debian packages buildah and debootstrap (installed
# here when missing). The debootstrapped base is built once and reused; FRESH_BASE=1
# rebuilds it. Environment: DEBIAN_MIRROR (default: the mirror apt already uses),
# DEBIAN_SUITE (bookworm).
set -euo pipefail
cd "$(dirname "$0")/.."

suite="${DEBIAN_SUITE:-bookworm}"
base_image="localhost/kubetune-debian-base:${suite}"
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' kubetune_api/__init__.py)"
image="${IMAGE:-localhost/kubetune-operator:${version}}"
bah=(buildah --storage-driver vfs)
started=$SECONDS
log() { echo "build_operator_image [$((SECONDS - started))s]: $*"; }

missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

# 1. The base: a minimal Debian with python3 + venv, committed `from scratch`.
if [ "${FRESH_BASE:-0}" = 1 ] || ! "${bah[@]}" inspect --type image "$base_image" >/dev/null 2>&1; then
  # The first uncommented Debian URI apt uses (deb822 `URIs:` or one-line `deb URL`).
  mirror="${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | sed -nE 's/^(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?:[^ ]+\/debian\/?)([[:space:]].*)?$/\3/p' | sed -n 1p || true)}"
  mirror="${mirror:-http://deb.debian.org/debian}"
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap $suite from $mirror"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$suite" "$rootfs" "$mirror" >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  ctr="$("${bah[@]}" from scratch)"
  mnt="$("${bah[@]}" mount "$ctr")"
  cp -a "$rootfs"/. "$mnt"/
  "${bah[@]}" umount "$ctr" >/dev/null
  "${bah[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$ctr"
  "${bah[@]}" commit --rm -q "$ctr" "$base_image" >/dev/null
  rm -rf "$rootfs"
  log "base image $base_image committed"
else
  log "reusing base image $base_image (FRESH_BASE=1 rebuilds it)"
fi

# 2. Wheels for kubetune[operator], built/downloaded on the host. The base's Python
#    (Debian bookworm: 3.11) must match the host's minor version for compiled wheels.
ctr="$("${bah[@]}" from -q --pull=never "$base_image")"
trap '"${bah[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
base_py="$("${bah[@]}" run --isolation chroot "$ctr" -- \
  python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
"${bah[@]}" rm "$ctr" >/dev/null
trap - EXIT
host_py="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
log "wheels for .[operator] (host Python $host_py, image Python $base_py)"
rm -rf build/wheelhouse
mkdir -p build/wheelhouse
quiet_pip() { "$python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }
quiet_pip wheel --wheel-dir build/wheelhouse '.[operator]'
# The build backend, for building kubetune itself from source inside the image.
quiet_pip download --dest build/wheelhouse --only-binary=:all: 'setuptools>=69' wheel
if [ "$host_py" != "$base_py" ] && ls build/wheelhouse | grep -q "cp${host_py/./}-"; then
  echo "host Python $host_py built compiled wheels that image Python $base_py cannot use" >&2
  exit 1
fi

# 3. The image, from the same Dockerfile a Docker user builds. A previous build under the
#    same name is removed afterwards (vfs keeps full copies: old images add up fast).
previous_id="$("${bah[@]}" inspect --type image --format '{{.FromImageID}}' "$image" 2>/dev/null || true)"
log "buildah bud -f operator/Dockerfile -> $image"
"${bah[@]}" bud --isolation chroot --pull=never --layers=false -q \
  -f operator/Dockerfile \
  --build-arg BASE_IMAGE="$base_image" --build-arg PIP_NO_INDEX=1 \
  -t "$image" . >/dev/null

new_id="$("${bah[@]}" inspect --type image --format '{{.FromImageID}}' "$image")"
if [ -n "$previous_id" ] && [ "$previous_id" != "$new_id" ]; then
  "${bah[@]}" rmi "$previous_id" >/dev/null 2>&1 || true
fi

# 4. Checks: the version, the entrypoint, the user.
config="$("${bah[@]}" inspect --type image "$image")"
field() { "$python" -c 'import json,sys; c=json.load(sys.stdin)["OCIv1"]["config"]; print(json.dumps(c.get(sys.argv[1])))' "$1" <<<"$config"; }
entrypoint="$(field Entrypoint)"
user="$(field User)"
ctr="$("${bah[@]}" from -q --pull=never "$image")"
cleanup_ctr() { "${bah[@]}" rm "$ctr" >/dev/null 2>&1 || true; }
trap cleanup_ctr EXIT
image_version="$("${bah[@]}" run --isolation chroot "$ctr" -- kubetune --version)"
mapfile -t ep < <("$python" -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])))' "$entrypoint")
entry_help="$("${bah[@]}" run --isolation chroot "$ctr" -- "${ep[@]}" --help)"
# The entrypoint with the image's default arguments, for a few seconds: it must import
# kubetune_operator and get as far as Kopf's startup (which then waits for a cluster).
cmd="$(field Cmd)"
mapfile -t default_args < <("$python" -c 'import json,sys; print("\n".join(json.loads(sys.argv[1]) or []))' "$cmd")
start_file="$(mktemp)"
timeout 60 "${bah[@]}" run --isolation chroot "$ctr" -- "${ep[@]}" "${default_args[@]}" >"$start_file" 2>&1 &
starter=$!
for _ in $(seq 60); do
  grep -qE "kopf\.|Error|error" "$start_file" && break
  kill -0 "$starter" 2>/dev/null || break
  sleep 1
done
sleep 1
kill "$starter" 2>/dev/null || true
wait "$starter" 2>/dev/null || true
start_log="$(cat "$start_file")"
rm -f "$start_file"
uid="$("${bah[@]}" run --isolation chroot "$ctr" -- python3 -c 'import os; print(os.getuid())')"
torch="$("${bah[@]}" run --isolation chroot "$ctr" -- python3 -c 'import importlib.util as u; print(bool(u.find_spec("torch")))')"
echo "image:      $image"
echo "version:    $image_version"
echo "entrypoint: $entrypoint (user $user, runs as uid $uid, torch installed: $torch)"
[ "$image_version" = "kubetune $version" ] || { echo "unexpected version: $image_version" >&2; exit 1; }
[ "$uid" != 0 ] || { echo "image runs as root" >&2; exit 1; }
[ "$torch" = False ] || { echo "torch is in the operator image" >&2; exit 1; }
grep -q -- "--liveness" <<<"$entry_help" || { echo "entrypoint is not kopf run" >&2; exit 1; }
if grep -qE "ModuleNotFoundError|ImportError|No module named|Error: No such option" <<<"$start_log" \
  || ! grep -q "kopf\." <<<"$start_log"; then
  echo "the entrypoint did not start the operator:" >&2
  echo "$start_log" | tail -20 >&2
  exit 1
fi
echo "started:    $(grep -m1 "kopf\." <<<"$start_log" | cut -c1-160)"

if [ -n "${OCI_ARCHIVE:-}" ]; then
  "${bah[@]}" push -q "$image" "oci-archive:${OCI_ARCHIVE}:${image#localhost/}"
  log "wrote $OCI_ARCHIVE"
fi
if [ -n "${PUSH_TO:-}" ]; then
  "${bah[@]}" push "$image" "$PUSH_TO"
  log "pushed $PUSH_TO"
fi
log "done"
