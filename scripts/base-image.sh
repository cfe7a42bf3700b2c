#!/usr/bin/env bash
# Build the container image that Molecule and `make demo` boot: Debian with
# systemd as PID 1 and Python for Ansible.
#
# Does nothing when the image already exists with the current recipe (label
# org.wsk.recipe). Otherwise builds it FROM debian:<release> when a container
# registry answers, and else from the Debian package archive with debootstrap,
# using the mirror this machine's own apt sources use.
#
#   WSK_BASE_IMAGE     image name          (default wsk-debian12-systemd)
#   WSK_BASE_SUITE     Debian suite        (default bookworm; trixie also works)
#   WSK_BASE_MIRROR    Debian archive URL  (default: read from /etc/apt/sources*)
#   WSK_BASE_REGISTRY  auto|never|always   (default auto: try `docker pull` first)
set -euo pipefail

image=${WSK_BASE_IMAGE:-wsk-debian12-systemd}
suite=${WSK_BASE_SUITE:-bookworm}
registry=${WSK_BASE_REGISTRY:-auto}
# Bump when the package list or the tweaks below change: older images get rebuilt.
recipe=4
packages=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,procps,ca-certificates

say() { printf 'base-image: %s\n' "$*" >&2; }

# The engine must answer first (installs and starts it when needed).
"$(dirname "$0")/docker-engine.sh"

declare -A release_of=([bookworm]=12 [trixie]=13)

have=$(docker image inspect --format '{{ index .Config.Labels "org.wsk.recipe" }}' "$image" 2>/dev/null || true)
if [ "$have" = "$recipe" ]; then
    exit 0
fi

# The Debian archive URL of this machine's apt sources (deb822 or one-line style).
host_mirror() {
    local uri
    uri=$(grep -hoE '^URIs:[[:space:]]*[^[:space:]]+' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v -- '-security' | head -n 1 || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hoE '^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '{print $NF}' | grep -v -- '-security' | head -n 1 || true)
    fi
    printf '%s' "${uri:-http://deb.debian.org/debian}"
}

# The recipe's tweaks, shared by both build paths: boot quietly as a container.
tweak_rootfs() {
    local root=$1
    # An empty machine-id makes systemd create a fresh one in every container.
    : >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
    # Units that make no sense (or fail) in a container.
    local unit
    for unit in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
        systemd-udev-trigger.service getty@tty1.service console-getty.service \
        systemd-remount-fs.service systemd-firstboot.service sys-kernel-debug.mount \
        sys-kernel-tracing.mount dev-hugepages.mount; do
        ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    # No package lists: make them look old, so that the first apt run updates them.
    touch -d @0 "$root/var/lib/apt/lists"
}

build_from_registry() {
    local release=${release_of[$suite]:-}
    [ -n "$release" ] || return 1
    command -v timeout >/dev/null || return 1
    timeout 60 docker pull -q "debian:$release" >/dev/null 2>&1 || return 1
    say "building $image FROM debian:$release"
    local ctx
    ctx=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$ctx'" RETURN
    declare -f tweak_rootfs >"$ctx/tweak.sh"
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM debian:$release
COPY tweak.sh /tmp/tweak.sh
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${packages//,/ } \\
 && bash -c '. /tmp/tweak.sh && tweak_rootfs /' && rm -f /tmp/tweak.sh
ENV container=docker
LABEL org.wsk.recipe=$recipe
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
DOCKERFILE
    docker build -q -t "$image" "$ctx" >/dev/null
}

build_from_archive() {
    local mirror=${WSK_BASE_MIRROR:-$(host_mirror)}
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    local root
    root=$(mktemp -d /var/tmp/wsk-rootfs.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$root'" RETURN
    say "debootstrap $suite from $mirror (takes a minute or two)"
    if ! debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" \
        >"$root.log" 2>&1; then
        tail -n 30 "$root.log" >&2
        rm -f "$root.log"
        return 1
    fi
    rm -f "$root.log"
    cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
SOURCES
    tweak_rootfs "$root"
    say "importing $image"
    tar -C "$root" -c . | docker import \
        --change 'ENV container=docker' \
        --change "LABEL org.wsk.recipe=$recipe" \
        --change 'CMD ["/lib/systemd/systemd"]' \
        - "$image" >/dev/null
}

case $registry in
    always) build_from_registry ;;
    never) build_from_archive ;;
    auto) build_from_registry || build_from_archive ;;
    *) say "WSK_BASE_REGISTRY must be auto, never or always"; exit 2 ;;
esac
say "built $image"
