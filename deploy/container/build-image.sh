#!/bin/sh
# Build the esgf-ha image (what `make image` runs; the container tests run it too).
#
#   deploy/container/build-image.sh [TAG]          # default localhost/esgf-ha:dev
#
# 1. installs podman, runc and debootstrap when missing (Debian/Ubuntu, as root);
# 2. makes sure the base image is in podman's storage (base-image.sh: pull, or debootstrap once);
# 3. builds a wheelhouse of esgf-ha and its dependencies on this host (pip in a container
#    may not reach the package index; apt in a build with --network host can), kept under
#    build/container/ and refreshed when pyproject.toml changes;
# 4. podman build with the project's containers.conf.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TAG=${1:-${IMAGE:-localhost/esgf-ha:dev}}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"

SYSTEM_PACKAGES="podman runc debootstrap uidmap"
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 ||
    ! command -v debootstrap >/dev/null 2>&1; then
    echo "installing $SYSTEM_PACKAGES" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $SYSTEM_PACKAGES >/dev/null
fi

"$HERE/base-image.sh"

# what the image is made of; an image built from the same inputs is reused as it is
INPUTS=$(cd "$REPO" && find pyproject.toml src deploy/container -type f ! -name '*.pyc' \
    ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 | sort -z |
    xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ "${REBUILD:-}" != 1 ] &&
    [ "$(podman image inspect --format '{{ index .Labels "io.esgf-ha.inputs" }}' "$TAG" 2>/dev/null)" = "$INPUTS" ]; then
    echo "$TAG is up to date (REBUILD=1 to build it anyway)" >&2
    exit 0
fi

CONTEXT=$REPO/build/container
WHEELS=$CONTEXT/wheelhouse
STAMP=$WHEELS/.pyproject.sha256
mkdir -p "$WHEELS"
want=$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "building the dependency wheelhouse" >&2
    rm -f "$WHEELS"/*.whl
    "$PYTHON" -m pip wheel --quiet --wheel-dir "$WHEELS" "$REPO"
    echo "$want" > "$STAMP"
fi
# esgf-ha itself is rebuilt every time: its sources change more often than its dependencies
rm -f "$WHEELS"/esgf_ha-*.whl
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WHEELS" "$REPO"
rm -rf "$REPO/build/lib" "$REPO/build/bdist."* "$REPO"/src/*.egg-info
cp "$HERE/livez.py" "$CONTEXT/livez.py"

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n 1)
REVISION=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE=$(git -C "$REPO" config --get remote.origin.url 2>/dev/null || echo unknown)
# --format docker: the OCI format has no HEALTHCHECK
podman build --network host --format docker --tag "$TAG" \
    --build-arg "ESGF_HA_VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
    --build-arg "SOURCE_URL=$SOURCE" --label "io.esgf-ha.inputs=$INPUTS" \
    --file "$HERE/Containerfile" "$CONTEXT"
