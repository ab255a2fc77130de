#!/usr/bin/env bash
# Proves the AEnvironment drop-in promise with AEnvironment's own released clients: installs the
# `aenvironment` SDK and `aenv` CLI (PyPI, pinned: 0.1.6 and 0.1.7, one virtualenv each), starts
# berth on 127.0.0.2:8080 with its MCP gateway on 127.0.0.2:8081 (the ports the SDK forces), and
# runs tests/aenv-sdk/drive.py against it with each release. Cleans up only what its own server
# created.
#   scripts/check-aenv-sdk.sh [BERTH_BINARY]      (default target/debug/berth)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    echo "usage: scripts/check-aenv-sdk.sh [BERTH_BINARY]   (default target/debug/berth)"
    exit 0
fi
binary="${1:-target/debug/berth}"
host="${BERTH_SDK_HOST:-127.0.0.2}"
# The releases checked: the one berth was first matched against, and the newest.
read -ra sdk_versions <<<"${BERTH_SDK_VERSIONS:-0.1.6 0.1.7}"

if [[ ! -x "$binary" ]]; then
    echo "error: $binary is missing: build it first (cargo build -p berth)" >&2
    exit 1
fi

# One virtualenv per release, each with that release's SDK and `aenv` CLI.
install_sdk() {
    local version="$1" venv="target/aenv-sdk-venv-$1"
    if [[ ! -x "$venv/bin/aenv" ]]; then
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            # Debian ships venv support separately.
            if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
                apt-get install -y -qq python3-venv >/dev/null
                rm -rf "$venv"
                python3 -m venv "$venv"
            else
                echo "error: python3 -m venv failed: install Debian's python3-venv" >&2
                exit 1
            fi
        fi
        "$venv/bin/pip" install --quiet --disable-pip-version-check "aenvironment==$version"
    fi
}
for version in "${sdk_versions[@]}"; do install_sdk "$version"; done

data_dir="$(mktemp -d)"
cluster="sdk-check-$$"
log="$data_dir/server.log"
cleanup() {
    if [[ -n "${server_pid:-}" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    local filter="label=berth.cluster=$cluster" ids
    mapfile -t ids < <(docker ps -aq --filter "$filter")
    if ((${#ids[@]})); then docker rm -f "${ids[@]}" >/dev/null 2>&1 || true; fi
    mapfile -t ids < <(docker volume ls -q --filter "$filter")
    if ((${#ids[@]})); then docker volume rm "${ids[@]}" >/dev/null 2>&1 || true; fi
    mapfile -t ids < <(docker network ls -q --filter "$filter")
    if ((${#ids[@]})); then docker network rm "${ids[@]}" >/dev/null 2>&1 || true; fi
    rm -rf "$data_dir"
}
trap cleanup EXIT

"$binary" serve --listen "$host:8080" --gateway-listen "$host:8081" --service-host "$host" \
    --data-dir "$data_dir" --cluster "$cluster" >"$log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    grep -q "gateway listening" "$log" 2>/dev/null && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "error: berth did not start:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done

# The first start wrote the admin key; the SDK runs as a member, as a platform's users would.
admin_key="$(cat "$data_dir/admin.key")"
member_key="$(BERTH_DATA_DIR="$data_dir" "$binary" --server "http://$host:8080" key create --owner sdk-check 2>/dev/null)"
for version in "${sdk_versions[@]}"; do
    venv="target/aenv-sdk-venv-$version"
    echo "--- aenvironment $version ---"
    if ! PATH="$venv/bin:$PATH" BERTH_HOST="$host" BERTH_SDK_SUFFIX="$$-${version//./}" BERTH_ADMIN_KEY="$admin_key" \
        AENV_API_KEY="$member_key" "$venv/bin/python" tests/aenv-sdk/drive.py; then
        echo "--- berth's log ---" >&2
        tail -n 60 "$log" >&2
        exit 1
    fi
done
