#!/usr/bin/env bash
# The web dashboard in a real browser: checks that the committed assets in crates/berth-http/ui/
# are what web/ builds (so they cannot drift), then starts berth on a free loopback port with
# its own data directory and cluster, and drives Debian's Chromium through web/tests/browser.mjs
# (playwright-core) against it. Installs chromium (apt, as root) and the npm dependencies
# (npm ci) when missing. Cleans up only what its own server created. Screenshots go to
# target/ui-artifacts/.
#   scripts/check-ui.sh [BERTH_BINARY]      (default target/debug/berth)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    echo "usage: scripts/check-ui.sh [BERTH_BINARY]   (default target/debug/berth)"
    exit 0
fi
binary="${1:-target/debug/berth}"
chromium="${BERTH_CHROMIUM:-/usr/bin/chromium}"
artifacts="${BERTH_UI_ARTIFACTS:-target/ui-artifacts}"

if [[ ! -x "$binary" ]]; then
    echo "error: $binary is missing: build it first (cargo build -p berth)" >&2
    exit 1
fi
# Vite 8 needs Node.js 20.19 or newer (Debian 12's own nodejs is 18).
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null; then
    echo "error: the dashboard's build needs Node.js 20.19 or newer with npm (found: $(node --version 2>/dev/null || echo none))" >&2
    exit 1
fi
if [[ ! -x "$chromium" ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
            || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
    else
        echo "error: $chromium is missing: install Debian's chromium (apt-get install chromium)" >&2
        exit 1
    fi
fi

# The built assets must be what web/ builds now (same lockfile, same sources).
scripts/build-ui.sh --check

data_dir="$(mktemp -d)"
cluster="ui-check-$$"
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
    # The template image the browser test builds (named after this run); no other.
    docker image rm "berth-ui-check/ui-check-$$:latest" >/dev/null 2>&1 || true
    rm -rf "$data_dir"
}
trap cleanup EXIT

# Port 0: the kernel picks a free one, and the log says which.
"$binary" serve --listen 127.0.0.1:0 --gateway-listen "" --data-dir "$data_dir" --cluster "$cluster" >"$log" 2>&1 &
server_pid=$!
url=""
for _ in $(seq 1 100); do
    url="$(sed -n 's/.*berth listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$log" | head -n 1)"
    [[ -n "$url" ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "error: berth did not start:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$url" ]]; then
    echo "error: berth did not say where it listens:" >&2
    cat "$log" >&2
    exit 1
fi

mkdir -p "$artifacts"
if ! BERTH_URL="$url" BERTH_ADMIN_KEY="$(cat "$data_dir/admin.key")" BERTH_UI_ARTIFACTS="$PWD/$artifacts" \
    BERTH_CHROMIUM="$chromium" BERTH_UI_SUFFIX="$$" node web/tests/browser.mjs; then
    echo "--- berth's log ---" >&2
    tail -n 60 "$log" >&2
    exit 1
fi
echo "screenshots: $artifacts/"
