#!/usr/bin/env bash
# Writes the dependency-only skeleton of a Cargo workspace: every Cargo.toml and Cargo.lock,
# plus an empty stub for each crate root Cargo needs to exist (src/lib.rs, src/main.rs,
# src/bin/*.rs, build.rs, and any `path = "*.rs"` a manifest names). Building the skeleton
# compiles all third-party dependencies; the Dockerfile caches that layer, so it is rebuilt only
# when a manifest or the lock file changes, not when a source file does. Every file gets the
# same fixed mtime, so an unchanged skeleton is byte- and metadata-identical between builds.
# Usage: deploy/docker/cargo-skeleton.sh SRC DST
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 SRC DST" >&2
    exit 2
fi
src="$(cd "$1" && pwd)"
dst="$2"
mkdir -p "$dst"
dst="$(cd "$dst" && pwd)"

cd "$src"
for file in Cargo.lock rust-toolchain.toml rust-toolchain .cargo/config.toml; do
    if [[ -f "$file" ]]; then
        mkdir -p "$dst/$(dirname "$file")"
        cp "$file" "$dst/$file"
    fi
done

stub() { # stub RELATIVE-PATH: an empty library or a main that does nothing
    mkdir -p "$dst/$(dirname "$1")"
    case "$1" in
        */lib.rs) : >"$dst/$1" ;;
        *) echo 'fn main() {}' >"$dst/$1" ;;
    esac
}

while IFS= read -r -d '' manifest; do
    dir="$(dirname "$manifest")"
    mkdir -p "$dst/$dir"
    cp "$manifest" "$dst/$manifest"
    for root in src/lib.rs src/main.rs build.rs; do
        [[ -f "$dir/$root" ]] && stub "$dir/$root"
    done
    if [[ -d "$dir/src/bin" ]]; then
        while IFS= read -r -d '' bin; do stub "$bin"; done \
            < <(find "$dir/src/bin" -name '*.rs' -print0)
    fi
    # Targets declared with an explicit path ([[bin]], [[test]], [[bench]], [lib]...).
    while IFS= read -r path; do
        [[ -f "$dir/$path" ]] && stub "$dir/$path"
    done < <(sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' "$manifest")
done < <(find . -name target -prune -o -name .git -prune -o -name Cargo.toml -print0)

find "$dst" -exec touch -h -d '2000-01-01T00:00:00Z' {} +
echo "wrote the Cargo skeleton of $src to $dst"
