#!/bin/sh
# Make docker.io/library/debian:bookworm-slim available in podman's storage.
#
# Where a registry is reachable this is a plain pull. On machines that reach only the Debian
# mirror, the same image is built from the mirror with debootstrap (about 90 s, once: podman
# keeps it, later runs return at once), trimmed the way Debian's slim image is, so the
# Containerfile builds unchanged in both places.
#
#   CONTAINERS_CONF=deploy/container/containers.conf deploy/container/base-image.sh
set -eu

IMAGE=${BASE_IMAGE:-docker.io/library/debian:bookworm-slim}
SUITE=bookworm

if podman image exists "$IMAGE"; then
    exit 0
fi

mirror() {
    # the first URIs line of the system's deb822 sources names the Debian mirror apt uses
    sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1
}

MIRROR=${DEBIAN_MIRROR:-$(mirror)}
if [ -z "$MIRROR" ] || ! command -v debootstrap >/dev/null 2>&1; then
    exec podman pull "$IMAGE"
fi

ROOT=$(mktemp -d /var/tmp/esgf-ha-base.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT INT TERM
echo "building $IMAGE from $MIRROR with debootstrap (once)" >&2
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >&2

# what makes Debian's image "slim": no documentation, manual pages or translations, now or
# when later layers install packages; no apt caches
cat > "$ROOT/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
cat > "$ROOT/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
cat > "$ROOT/etc/apt/apt.conf.d/docker-no-recommends" <<'CFG'
APT::Install-Recommends "false";
CFG
find "$ROOT/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$ROOT/usr/share/man/"* "$ROOT/usr/share/info/"* "$ROOT/usr/share/locale/"* \
    "$ROOT/usr/share/groff/"* "$ROOT/usr/share/lintian/"* \
    "$ROOT/var/cache/apt/"*.bin "$ROOT/var/cache/apt/archives/"*.deb "$ROOT/var/lib/apt/lists/"* \
    "$ROOT/var/log/"*.log "$ROOT/var/cache/debconf/"*-old
# the host's apt sources, so apt inside later build stages reaches the same mirror
cp /etc/apt/sources.list.d/debian.sources "$ROOT/etc/apt/sources.list.d/debian.sources"
rm -f "$ROOT/etc/apt/sources.list"

tar -C "$ROOT" -c . | podman import --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
echo "made $IMAGE" >&2
