#!/usr/bin/env bash
# Registers the extra OCI runtimes berth's tests choose between (gVisor's `runsc` and `crun`)
# with the local Docker Engine: on Debian as root installs the packages, adds them to
# /etc/docker/daemon.json (keeping whatever else it holds) and reloads dockerd's configuration
# (SIGHUP: running containers are untouched). Prints the runtimes the engine then offers. Does
# nothing but print when they are registered already; elsewhere says what to do.
set -euo pipefail

DAEMON_JSON="${DAEMON_JSON:-/etc/docker/daemon.json}"

offered() {
    docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}'
}

# crun refuses a hybrid cgroup layout whose v2 hierarchy holds a controller ("drop all
# controllers from cgroupv2"): some kernels leave hugetlb there. Mounting its v1 hierarchy moves
# it out of v2, as every other controller already is; runc does not mind either way. Checked on
# every run, also when the runtimes are registered already: the mount does not survive a reboot.
hugetlb_out_of_cgroup_v2() {
    local unified=/sys/fs/cgroup/unified
    # (cgroupfs files report a size of 0: read the file, never test its size)
    if grep -qsw hugetlb "$unified/cgroup.controllers" \
        && ! mountpoint -q /sys/fs/cgroup/hugetlb; then
        if [[ "$(id -u)" -ne 0 ]]; then
            echo "warning: cgroup v2 holds hugetlb and only root can move it; crun sandboxes may fail to start" >&2
            return 0
        fi
        mkdir -p /sys/fs/cgroup/hugetlb
        mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb \
            || echo "warning: could not move hugetlb to cgroup v1; crun sandboxes may fail to start" >&2
    fi
}

if offered | grep -qw runsc && offered | grep -qw crun; then
    hugetlb_out_of_cgroup_v2
    echo "engine runtimes: $(offered)" >&2
    exit 0
fi

if [[ ! -f /etc/debian_version || "$(id -u)" -ne 0 ]]; then
    cat >&2 <<'MSG'
error: the engine offers no `runsc` and `crun` runtimes, which the runtime tests use.
Install gVisor (runsc) and crun, register both in the engine's daemon.json under "runtimes",
and reload the engine (kill -HUP $(pidof dockerd)).
MSG
    exit 1
fi

if ! command -v runsc >/dev/null || ! command -v crun >/dev/null; then
    echo "installing runsc (gVisor) and crun..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq runsc crun >/dev/null \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq runsc crun >/dev/null; }
fi

hugetlb_out_of_cgroup_v2

# gVisor's own network stack cannot start in a container network namespace under this
# engine/kernel pair ("cannot run with network enabled in root network namespace"); with
# --network=host the sentry uses the kernel's stack of the container's own namespace, which
# keeps the sandbox on its bridge and behind berth's rules while gVisor still serves every
# other system call.
mkdir -p "$(dirname "$DAEMON_JSON")"
python3 - "$DAEMON_JSON" "$(command -v runsc)" "$(command -v crun)" <<'PY'
import json, os, sys
path, runsc, crun = sys.argv[1:4]
config = {}
if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path) as existing:
        config = json.load(existing)
runtimes = config.setdefault("runtimes", {})
runtimes.setdefault("runsc", {"path": runsc, "runtimeArgs": ["--network=host"]})
runtimes.setdefault("crun", {"path": crun})
with open(path + ".berth-tmp", "w") as updated:
    json.dump(config, updated, indent=2)
os.replace(path + ".berth-tmp", path)
PY

pid="$(pgrep -x dockerd | head -n1 || true)"
if [[ -z "$pid" ]]; then
    echo "error: no dockerd runs here to reload; start the engine (scripts/ensure-docker.sh) first" >&2
    exit 1
fi
kill -HUP "$pid"
for _ in $(seq 1 20); do
    if offered | grep -qw runsc && offered | grep -qw crun; then
        echo "engine runtimes: $(offered)" >&2
        exit 0
    fi
    sleep 0.5
done
echo "error: dockerd did not pick up the runtimes from $DAEMON_JSON; see its log" >&2
exit 1
