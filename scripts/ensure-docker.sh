#!/usr/bin/env bash
# Makes sure a Docker Engine answers on this machine. Does nothing when `docker info` works;
# on Debian as root installs docker.io + busybox-static (+ nftables for the host guard, iproute2 for
# its tests) and starts dockerd in the background (logs: $DOCKERD_LOG, default
# /var/log/dockerd.log); elsewhere says what to install.
set -euo pipefail

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
WAIT_SECS=60

engine_answers() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

dockerd_running() {
    command -v pgrep >/dev/null 2>&1 && pgrep -x dockerd >/dev/null 2>&1
}

if engine_answers; then
    exit 0
fi

if [[ ! -f /etc/debian_version || "$(id -u)" -ne 0 ]]; then
    cat >&2 <<'MSG'
error: no Docker Engine answers (`docker info` failed).
Install and start one, then re-run:
  - Debian/Ubuntu (as root): apt-get update && apt-get install -y docker.io busybox-static && dockerd &
  - elsewhere: Docker Engine 20.10 or newer (https://docs.docker.com/engine/install/), plus a
    static busybox binary at /bin/busybox for the test images.
MSG
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1 || [[ ! -x /bin/busybox ]] || ! command -v nft >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
    echo "installing docker.io, busybox-static, nftables and iproute2..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y docker.io busybox-static nftables iproute2
fi

if ! dockerd_running; then
    # A machine that rebooted under a running dockerd leaves its pid file behind, and dockerd
    # refuses to start beside it; no dockerd runs, so the file is stale.
    for stale in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
        [[ -f "$stale" ]] && rm -f "$stale"
    done
    echo "starting dockerd (logs: $DOCKERD_LOG)..." >&2
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
fi

for _ in $(seq 1 "$WAIT_SECS"); do
    if engine_answers; then
        echo "Docker Engine is up: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')" >&2
        exit 0
    fi
    sleep 1
done

echo "error: dockerd did not answer within ${WAIT_SECS}s; see $DOCKERD_LOG" >&2
tail -n 20 "$DOCKERD_LOG" >&2 || true
exit 1
