#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine.
#
# Installs Debian's docker.io when no dockerd is present, then starts dockerd in
# the background when `docker info` does not answer (the test machines have no
# systemd as PID 1, so nothing else would start it) and waits until it does.
# Idempotent: does nothing when an engine already answers.
set -euo pipefail

log=${WSK_DOCKERD_LOG:-/var/log/dockerd.log}
wait_seconds=${WSK_DOCKERD_WAIT:-60}

say() { printf 'docker-engine: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if docker info >/dev/null 2>&1; then
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io from the Debian archive"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

if docker info >/dev/null 2>&1; then
    exit 0
fi

# With systemd as PID 1 the packaged unit is the right way to run the engine.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    say "starting docker.service"
    as_root systemctl start docker.service || true
fi

if ! docker info >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null 2>&1; then
    say "starting dockerd in the background (log: $log)"
    # setsid: the engine must outlive the shell (and process group) that started it.
    as_root setsid -f sh -c "exec dockerd >>'$log' 2>&1 </dev/null"
fi

for _ in $(seq "$wait_seconds"); do
    if docker info >/dev/null 2>&1; then
        say "engine is up"
        exit 0
    fi
    sleep 1
done

say "dockerd did not answer within ${wait_seconds}s; last lines of $log:"
tail -n 20 "$log" >&2 || true
exit 1
