#!/usr/bin/env bash
# Builds the web dashboard from web/ (Vite, the versions pinned in web/package-lock.json) into
# crates/berth-http/ui/, which berth-http embeds; run it after changing web/ and commit both.
# `--check` builds into a temporary directory instead and fails when the result differs from
# the committed files, so the two cannot drift. Installs the npm dependencies (npm ci) when
# missing.
#   scripts/build-ui.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."

committed="crates/berth-http/ui"
if [[ ! -d web/node_modules/vite || web/package-lock.json -nt web/node_modules/.package-lock.json ]]; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi

if [[ "${1:-}" == "--check" ]]; then
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
    (cd web && BERTH_UI_OUT="$out" npm run --silent build -- --logLevel error)
    if ! diff -r "$committed" "$out" >/dev/null; then
        diff -r "$committed" "$out" | head -n 20 >&2 || true
        echo "error: $committed is not what web/ builds: run scripts/build-ui.sh and commit the result" >&2
        exit 1
    fi
    echo "$committed is what web/ builds"
else
    (cd web && npm run --silent build -- --logLevel error)
    echo "built $committed"
fi
