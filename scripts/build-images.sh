#!/usr/bin/env bash
# Builds berth's two container images: `docker` (for Docker/compose, with a HEALTHCHECK) and
# `k8s` (for Kubernetes: no HEALTHCHECK, USER 65532:65532). See docs/deploy.md.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'USAGE'
usage: scripts/build-images.sh [options]

From source (the Dockerfile's builder stage; needs the rust base image and crates.io):
  scripts/build-images.sh                       # berth:<version>, berth:<sha>, berth:docker-latest, ...
  scripts/build-images.sh --registry ghcr.io/acme --push
  scripts/build-images.sh --registry ghcr.io/acme --platform linux/amd64,linux/arm64 --push

From an already built binary, with no network (FROM scratch; this machine's platform):
  scripts/build-images.sh --prebuilt target/release/berth   # berth:docker-local, berth:k8s-local

Tags (from source), REPO = [REGISTRY/]NAME:
  docker variant: REPO:<version> REPO:<git-sha> REPO:docker-<version> REPO:docker-<git-sha> REPO:docker-latest
  k8s variant:    REPO:k8s-<version> REPO:k8s-<git-sha> REPO:k8s-latest
  <version> is crates/berth's Cargo version; <git-sha> the 12-digit commit, "-dirty" when
  tracked files differ from it.

Options:
  --prebuilt PATH       build from this binary instead of from source (tags REPO:docker-SUFFIX,
                        REPO:k8s-SUFFIX)
  --suffix SUFFIX       the tag suffix of --prebuilt images (default: local)
  --registry REGISTRY   prefix image names with REGISTRY/ (e.g. ghcr.io/acme)
  --name NAME           image name (default: berth)
  --variant VARIANT     docker, k8s or all (default: all)
  --push                push every tag after building (from source only)
  --platform LIST       build with docker buildx for these platforms (e.g.
                        linux/amd64,linux/arm64); several platforms need --push
  --builder-image IMG   the Rust image of the builder stage (default: the Dockerfile's
                        rust:<ver>-bookworm)
  --label KEY=VALUE     an extra image label (repeatable)
  --build-opt OPTION    pass OPTION to every docker build (repeatable; e.g. --build-opt
                        --no-cache, --build-opt --cpu-shares=256)
  --quiet               pass --quiet to the builds
  --dry-run             print the docker commands instead of running them
  -h, --help            this help

Without buildx (or with DOCKER_BUILDKIT=0) the classic builder is used; the Dockerfiles need
nothing BuildKit-specific.
USAGE
}

die() {
    echo "error: $*" >&2
    exit 2
}

prebuilt=""
suffix="local"
registry=""
name="berth"
variant="all"
push=0
platform=""
builder_image=""
quiet=0
dry_run=0
labels=()
build_opts=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --prebuilt) [[ $# -ge 2 ]] || die "--prebuilt needs a PATH"; prebuilt="$2"; shift 2 ;;
        --suffix) [[ $# -ge 2 ]] || die "--suffix needs a value"; suffix="$2"; shift 2 ;;
        --registry) [[ $# -ge 2 ]] || die "--registry needs a value"; registry="${2%/}"; shift 2 ;;
        --name) [[ $# -ge 2 ]] || die "--name needs a value"; name="$2"; shift 2 ;;
        --variant) [[ $# -ge 2 ]] || die "--variant needs a value"; variant="$2"; shift 2 ;;
        --push) push=1; shift ;;
        --platform) [[ $# -ge 2 ]] || die "--platform needs a value"; platform="$2"; shift 2 ;;
        --builder-image) [[ $# -ge 2 ]] || die "--builder-image needs a value"; builder_image="$2"; shift 2 ;;
        --label) [[ $# -ge 2 && "$2" == *=* ]] || die "--label needs KEY=VALUE"; labels+=("$2"); shift 2 ;;
        --build-opt) [[ $# -ge 2 ]] || die "--build-opt needs an OPTION"; build_opts+=("$2"); shift 2 ;;
        --quiet) quiet=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case "$variant" in
    all) variants=(k8s docker) ;;
    docker | k8s) variants=("$variant") ;;
    *) die "--variant is docker, k8s or all, not '$variant'" ;;
esac
[[ "$suffix" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]] || die "--suffix '$suffix' is not a valid tag part"
repo="${registry:+$registry/}$name"

# Prints a command, then runs it unless --dry-run.
run() {
    printf '+' >&2
    printf ' %q' "$@" >&2
    printf '\n' >&2
    if [[ $dry_run -eq 0 ]]; then
        "$@"
    fi
}

if [[ $dry_run -eq 0 ]]; then
    command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed"
fi
have_buildx=0
if docker buildx version >/dev/null 2>&1; then have_buildx=1; fi
# Without the buildx plugin, say so explicitly rather than let the CLI guess.
if [[ $have_buildx -eq 0 && -z "${DOCKER_BUILDKIT:-}" ]]; then export DOCKER_BUILDKIT=0; fi

# ---- what the labels say
git_sha=""
git_revision="unknown"
if command -v git >/dev/null 2>&1 && git rev-parse --git-dir >/dev/null 2>&1; then
    git_revision="$(git rev-parse HEAD)"
    git_sha="$(git rev-parse --short=12 HEAD)"
    # GIT_OPTIONAL_LOCKS=0: only read; never refresh the index.
    if [[ -n "$(GIT_OPTIONAL_LOCKS=0 git status --porcelain --untracked-files=no)" ]]; then
        git_sha="$git_sha-dirty"
        git_revision="$git_revision-dirty"
    fi
fi
source_url="${BERTH_SOURCE_URL:-}"
if [[ -z "$source_url" ]] && command -v git >/dev/null 2>&1; then
    source_url="$(git config --get remote.origin.url 2>/dev/null || true)"
    # git@github.com:org/repo.git → https://github.com/org/repo
    if [[ "$source_url" =~ ^git@([^:]+):(.+)$ ]]; then
        source_url="https://${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"
    fi
    source_url="${source_url%.git}"
fi
source_url="${source_url:-https://github.com/berth-dev/berth}"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
    created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
fi

cargo_version() {
    local pkgid
    if command -v cargo >/dev/null 2>&1 && pkgid="$(cargo pkgid -p berth 2>/dev/null)"; then
        # path+file:///…/crates/berth#0.1.0 (or …#berth@0.1.0)
        echo "${pkgid##*[#@]}"
        return
    fi
    # No cargo: the workspace version that crates/berth inherits.
    sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | sed -n 1p
}

common_args=(
    --build-arg "REVISION=$git_revision"
    --build-arg "CREATED=$created"
    --build-arg "SOURCE=$source_url"
)
for label in "${labels[@]}"; do common_args+=(--label "$label"); done
if [[ $quiet -eq 1 ]]; then common_args+=(--quiet); fi
common_args+=("${build_opts[@]}")

# ---- from an already built binary: no network, this machine's platform
if [[ -n "$prebuilt" ]]; then
    [[ $push -eq 0 && -z "$platform" ]] ||
        die "--prebuilt builds local images for this machine; --push and --platform need a source build"
    [[ -f "$prebuilt" && -x "$prebuilt" ]] || die "$prebuilt is not an executable file"
    version="$("$prebuilt" --version 2>/dev/null | awk '{ print $NF }' || true)"
    version="${version:-unknown}"
    context="$(mktemp -d)"
    rootfs_tag="$repo:rootfs-$suffix-$$"
    trap 'rm -rf "$context"; [[ $dry_run -eq 1 ]] || docker image rm "$rootfs_tag" >/dev/null 2>&1 || true' EXIT
    deploy/docker/assemble-rootfs.sh "$prebuilt" "$context/out" >&2
    cp deploy/docker/prebuilt.Dockerfile "$context/Dockerfile"
    args=("${common_args[@]}" --build-arg "VERSION=$version")
    # The rootfs stage gets a temporary tag, so that no untagged stage image is left behind.
    run docker build "${args[@]}" --target rootfs --tag "$rootfs_tag" "$context" >/dev/null
    for v in "${variants[@]}"; do
        run docker build "${args[@]}" --target "$v" --tag "$repo:$v-$suffix" "$context"
        [[ $dry_run -eq 1 ]] || echo "built $repo:$v-$suffix" >&2
    done
    exit 0
fi

# ---- from source
version="$(cargo_version)"
[[ -n "$version" ]] || die "cannot read berth's version from Cargo"
args=("${common_args[@]}" --build-arg "VERSION=$version")
if [[ -n "$builder_image" ]]; then args+=(--build-arg "RUST_IMAGE=$builder_image"); fi

tags_of() { # tags_of VARIANT: one --tag per tag of that variant
    local v="$1" tags=()
    if [[ "$v" == docker ]]; then
        tags+=("$repo:$version")
        [[ -n "$git_sha" ]] && tags+=("$repo:$git_sha")
    fi
    tags+=("$repo:$v-$version")
    [[ -n "$git_sha" ]] && tags+=("$repo:$v-$git_sha")
    tags+=("$repo:$v-latest")
    printf '%s\n' "${tags[@]}"
}

for v in "${variants[@]}"; do
    mapfile -t tags < <(tags_of "$v")
    tag_args=()
    for tag in "${tags[@]}"; do tag_args+=(--tag "$tag"); done
    if [[ -n "$platform" ]]; then
        [[ $have_buildx -eq 1 || $dry_run -eq 1 ]] || die "--platform needs docker buildx (https://docs.docker.com/build/)"
        output=(--load)
        if [[ $push -eq 1 ]]; then
            output=(--push)
        elif [[ "$platform" == *,* ]]; then
            die "a multi-platform build cannot be loaded into the local engine: add --push"
        fi
        run docker buildx build --platform "$platform" "${args[@]}" --target "$v" "${tag_args[@]}" "${output[@]}" .
    else
        run docker build "${args[@]}" --target "$v" "${tag_args[@]}" .
        if [[ $push -eq 1 ]]; then
            for tag in "${tags[@]}"; do run docker push "$tag"; done
        fi
    fi
    [[ $dry_run -eq 1 ]] || printf 'built %s\n' "${tags[@]}" >&2
done
