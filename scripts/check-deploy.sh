#!/usr/bin/env bash
# Checks berth's delivery artifacts (images, compose stack, Kubernetes manifests, scripts, CI
# workflows) on this machine, with no registry and no cluster: see docs/deploy.md, "What is
# checked here". Prints one PASS/FAIL/SKIP line per check and exits 1 when any check failed.
# Installs what it needs on Debian as root (shellcheck, kubectl, docker-compose from apt;
# kubernetes-validate from PyPI into a virtualenv under ~/.cache/berth). Idempotent; removes every
# container, network, volume and image tag it creates (all labelled berth.check-deploy=<run>),
# and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'USAGE'
usage: scripts/check-deploy.sh [BINARY]

BINARY is the built berth used for the image checks (default: target/release/berth, else
target/debug/berth; the 25 MB size budget needs a release build). The images are built with
scripts/build-images.sh --prebuilt, since no base image can be pulled here.

Environment:
  BERTH_CHECK_K8S_VERSIONS   Kubernetes versions to validate against (default: "1.30.0 1.35.0")
  BERTH_CHECK_CACHE          where the Python virtualenv lives (default: ~/.cache/berth/check-deploy)
USAGE
}
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
fi

target_dir="${CARGO_TARGET_DIR:-target}"
binary="${1:-}"
if [[ -z "$binary" ]]; then
    if [[ -x "$target_dir/release/berth" ]]; then
        binary="$target_dir/release/berth"
    else
        binary="$target_dir/debug/berth"
    fi
fi

K8S_VERSIONS="${BERTH_CHECK_K8S_VERSIONS:-1.30.0 1.35.0}"
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
IMAGE_MAX_BYTES=25000000 # 25 MB, as `docker images` counts
STOP_MAX_MS=3000
cache="${BERTH_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/check-deploy}"

run_id="$(date +%s)-$$"
label_key="berth.check-deploy"
label="$label_key=$run_id"
suffix="check-$run_id"
docker_image="berth:docker-$suffix"
k8s_image="berth:k8s-$suffix"
server="berth-check-$run_id-server"
alias_name="berth-check-server"
network="berth-check-$run_id"
project="berthcheck$(tr -dc '0-9' <<<"$run_id")"
work="$(mktemp -d)"
failures=0
compose=()
py=""
promtool=""

# ---- cleanup: only what this run labelled or named ------------------------------------------

cleanup() {
    set +e
    if [[ -s "$work/proxy.pid" ]]; then kill "$(cat "$work/proxy.pid")" 2>/dev/null; fi
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        if [[ ${#compose[@]} -gt 0 && -f "$work/compose.started" ]]; then
            "${compose[@]}" -p "$project" -f deploy/compose/docker-compose.yml down -v --remove-orphans >/dev/null 2>&1
        fi
        local ids
        mapfile -t ids < <(docker ps -aq --filter "label=$label")
        if [[ ${#ids[@]} -gt 0 ]]; then docker rm -f "${ids[@]}" >/dev/null 2>&1; fi
        mapfile -t ids < <(docker network ls -q --filter "label=$label")
        if [[ ${#ids[@]} -gt 0 ]]; then docker network rm "${ids[@]}" >/dev/null 2>&1; fi
        mapfile -t ids < <(docker volume ls -q --filter "label=$label")
        if [[ ${#ids[@]} -gt 0 ]]; then docker volume rm "${ids[@]}" >/dev/null 2>&1; fi
        for image in "$docker_image" "$k8s_image"; do
            docker image inspect "$image" >/dev/null 2>&1 && docker image rm "$image" >/dev/null 2>&1
        done
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- reporting --------------------------------------------------------------------------------

# check NAME FUNCTION [ARGS...]: runs FUNCTION in a subshell with errexit in force (a background
# job, so that an `if` around it cannot switch errexit off), its output kept for a failure
# report. FUNCTION may write a one-line detail to $work/detail; `exit 3` means SKIP.
check() {
    local name="$1" rc=0
    shift
    : >"$work/detail"
    ("$@") >"$work/check.log" 2>&1 </dev/null &
    wait $! || rc=$?
    local detail
    detail="$(head -n 1 "$work/detail")"
    case $rc in
        0) echo "PASS $name${detail:+ — $detail}" ;;
        3) echo "SKIP $name${detail:+ — $detail}" ;;
        *)
            echo "FAIL $name${detail:+ — $detail}"
            sed 's/^/    | /' "$work/check.log" | tail -n 40
            failures=$((failures + 1))
            ;;
    esac
}
detail() { echo "$*" >"$work/detail"; }
fail() {
    echo "$*" >&2
    exit 1
}

# ---- tools ------------------------------------------------------------------------------------

apt_updated=0
apt_install() {
    [[ -f /etc/debian_version && "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1 || return 1
    if [[ $apt_updated -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
        apt_updated=1
    fi
    echo "setup: apt-get install $*" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

setup_tools() {
    command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck || true
    # Debian's kubernetes-client is kubectl 1.20 with kustomize v2.0.3: the manifests stay
    # within what it renders. A newer kubectl already on PATH is used as it is.
    command -v kubectl >/dev/null 2>&1 || apt_install kubernetes-client || true
    command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates || true
    command -v openssl >/dev/null 2>&1 || apt_install openssl || true
    command -v python3 >/dev/null 2>&1 || apt_install python3 || true
    if command -v docker-compose >/dev/null 2>&1; then
        compose=(docker-compose)
    elif docker compose version >/dev/null 2>&1; then
        compose=(docker compose)
    elif apt_install docker-compose && command -v docker-compose >/dev/null 2>&1; then
        compose=(docker-compose)
    fi

    # kubernetes-validate (schemas of many Kubernetes versions, bundled: validation is offline)
    # and PyYAML in a virtualenv of their own.
    local venv="$cache/venv"
    if ! "$venv/bin/python" -c 'import kubernetes_validate, yaml' >/dev/null 2>&1 ||
        [[ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null)" != "${KUBERNETES_VALIDATE##*==}" ]]; then
        echo "setup: virtualenv $venv with $KUBERNETES_VALIDATE" >&2
        rm -rf "$venv"
        mkdir -p "$cache"
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            rm -rf "$venv"
            apt_install python3-venv || true
            python3 -m venv "$venv" >&2 || true
        fi
        if [[ -x "$venv/bin/pip" ]]; then
            "$venv/bin/pip" install -q --disable-pip-version-check "$KUBERNETES_VALIDATE" pyyaml \
                "tomli; python_version < '3.11'" >&2 || true
        fi
    fi
    if "$venv/bin/python" -c 'import kubernetes_validate, yaml' >/dev/null 2>&1; then
        py="$venv/bin/python"
    fi

    # promtool, to check the compose stack's prometheus.yml: from Debian's prometheus package,
    # downloaded and unpacked into the cache (not installed: no service is started).
    if command -v promtool >/dev/null 2>&1; then
        promtool="$(command -v promtool)"
    elif [[ -x "$cache/prometheus/usr/bin/promtool" ]]; then
        promtool="$cache/prometheus/usr/bin/promtool"
    elif [[ -f /etc/debian_version && "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: apt-get download prometheus (for promtool)" >&2
        local deb="$cache/deb"
        rm -rf "$deb" && mkdir -p "$deb"
        if (cd "$deb" && { apt-get download -qq prometheus || { apt-get update -qq && apt-get download -qq prometheus; }; }) \
            >/dev/null 2>&1 && dpkg-deb -x "$deb"/prometheus_*.deb "$cache/prometheus"; then
            promtool="$cache/prometheus/usr/bin/promtool"
        fi
        rm -rf "$deb"
    fi
}

need_py() { [[ -n "$py" ]] || fail "no Python virtualenv with kubernetes-validate and PyYAML (python3 -m venv + pip failed)"; }

# kubectl kustomize without the deprecation notes newer kustomize prints for the spellings that
# kubectl 1.20 needs (bases, commonLabels, patchesStrategicMerge).
kustomize() {
    local err="$work/kustomize.err"
    if ! kubectl kustomize "$1" 2>"$err"; then
        grep -v '^# Warning:' "$err" >&2
        return 1
    fi
}

http_code() { curl -s -o /dev/null -m 3 -w '%{http_code}' "$1" 2>/dev/null || true; }

# wait_http URL SECONDS: until URL answers 200.
wait_http() {
    local deadline=$((SECONDS + $2))
    while [[ $SECONDS -lt $deadline ]]; do
        [[ "$(http_code "$1")" == 200 ]] && return 0
        sleep 0.3
    done
    return 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Whether the binary has the `healthcheck` verb (captured first: grep -q on a pipe could make
# the writer fail with SIGPIPE under pipefail).
has_healthcheck_verb() {
    local help
    help="$("$binary" --help 2>&1 || true)"
    grep -qw healthcheck <<<"$help"
}

docker_answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

# ---- checks: scripts ------------------------------------------------------------------------

shell_scripts() {
    local file
    for file in scripts/* deploy/docker/*.sh .ci/run; do
        [[ -f "$file" ]] || continue
        if head -n 1 "$file" | grep -Eq '^#!.*\b(ba)?sh\b'; then echo "$file"; fi
    done
}

check_shellcheck() {
    command -v shellcheck >/dev/null 2>&1 || fail "shellcheck is not installed (Debian: apt-get install shellcheck)"
    mapfile -t files < <(shell_scripts)
    detail "${#files[@]} scripts: ${files[*]}"
    shellcheck "${files[@]}"
}

check_help() {
    local script
    for script in scripts/build-images.sh scripts/deploy-k8s.sh scripts/check-deploy.sh deploy/docker/assemble-rootfs.sh; do
        [[ "$("$script" --help)" == usage* ]] || fail "$script --help prints no usage"
    done
    for script in scripts/build-images.sh scripts/deploy-k8s.sh scripts/check-deploy.sh; do
        grep -q '^set -euo pipefail$' "$script" || fail "$script does not set -euo pipefail"
    done
    if scripts/build-images.sh --no-such-flag >/dev/null 2>&1; then fail "build-images.sh accepts an unknown flag"; fi
    if scripts/deploy-k8s.sh --dry-run no-such-env >/dev/null 2>&1; then fail "deploy-k8s.sh accepts an unknown overlay"; fi
    detail "--help, set -euo pipefail, bad arguments refused"
}

check_build_images_dry_run() {
    local version sha out
    version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | sed -n 1p)"
    sha="$(git rev-parse --short=12 HEAD 2>/dev/null || true)"
    out="$(scripts/build-images.sh --dry-run 2>&1 >/dev/null)"
    echo "$out"
    local docker_cmd k8s_cmd
    docker_cmd="$(grep -- '--target docker' <<<"$out")"
    k8s_cmd="$(grep -- '--target k8s' <<<"$out")"
    [[ "$docker_cmd" == "+ docker build "* && "$k8s_cmd" == "+ docker build "* ]] || fail "no docker build per variant"
    for tag in "berth:$version" "berth:docker-latest" "berth:docker-$version"; do
        grep -q -- "--tag $tag " <<<"$docker_cmd" || fail "docker variant lacks tag $tag"
    done
    for tag in "berth:k8s-latest" "berth:k8s-$version"; do
        grep -q -- "--tag $tag " <<<"$k8s_cmd" || fail "k8s variant lacks tag $tag"
    done
    if [[ -n "$sha" ]]; then
        grep -Eq -- "--tag berth:$sha(-dirty)? " <<<"$docker_cmd" || fail "docker variant lacks the git-sha tag"
        grep -Eq -- "--tag berth:k8s-$sha(-dirty)? " <<<"$k8s_cmd" || fail "k8s variant lacks the git-sha tag"
    fi
    for arg in "VERSION=$version" REVISION= CREATED= SOURCE=; do
        grep -q -- "--build-arg $arg" <<<"$docker_cmd" || fail "no --build-arg $arg"
    done
    out="$(scripts/build-images.sh --dry-run --registry registry.example/acme --platform linux/amd64,linux/arm64 --push 2>&1 >/dev/null)"
    echo "$out"
    [[ "$(grep -c '^+ docker buildx build --platform linux/amd64\\,linux/arm64 .* --push \.$' <<<"$out")" -eq 2 ]] ||
        fail "--platform/--push do not give two buildx --push builds"
    grep -q -- "--tag registry.example/acme/berth:k8s-latest " <<<"$out" || fail "--registry is not applied"
    if scripts/build-images.sh --dry-run --platform linux/amd64,linux/arm64 >/dev/null 2>&1; then
        fail "a multi-platform build without --push is accepted"
    fi
    detail "tags $version, ${sha:-<no git>}, docker-latest, k8s-latest; buildx --platform … --push with --registry"
}

check_dockerfiles() {
    local marker='^# ---- runtime'
    grep -q "$marker" Dockerfile || fail "Dockerfile has no runtime section marker"
    diff <(sed -n "/$marker/,\$p" Dockerfile) <(sed -n "/$marker/,\$p" deploy/docker/prebuilt.Dockerfile) ||
        fail "the runtime sections of Dockerfile and deploy/docker/prebuilt.Dockerfile differ"
    grep -Eq '^ARG RUST_IMAGE=rust:[0-9.]+-bookworm$' Dockerfile || fail "the builder is not rust:<ver>-bookworm"
    # shellcheck disable=SC2016 # a literal ${RUST_IMAGE}
    grep -qF 'FROM ${RUST_IMAGE} AS builder' Dockerfile || fail "no builder stage"
    # The dependency layer: the skeleton is built before the sources are copied.
    local deps_line src_line
    deps_line="$(grep -n '^RUN cargo build --release --locked -p berth$' Dockerfile | cut -d: -f1)"
    src_line="$(awk '/^FROM \$\{RUST_IMAGE\} AS builder/ { b = 1 } b && /^COPY \. \.$/ { print NR; exit }' Dockerfile)"
    [[ -n "$deps_line" && -n "$src_line" && "$deps_line" -lt "$src_line" ]] || fail "no dependency layer before the sources"
    for file in Dockerfile deploy/docker/prebuilt.Dockerfile; do
        grep -Eq '^FROM runtime AS docker$' "$file" || fail "$file lacks the docker target"
        grep -Eq '^FROM runtime AS k8s$' "$file" || fail "$file lacks the k8s target"
        if grep -Eq '^# *syntax=|RUN --mount|COPY --link' "$file"; then fail "$file uses BuildKit-only syntax"; fi
    done
    # .dockerignore is an allow-list: every workspace member's top directory must be in it.
    grep -qx '\*' .dockerignore || fail ".dockerignore is not an allow-list"
    local member
    while read -r member; do
        grep -qx "!${member%%/*}/" .dockerignore || fail ".dockerignore leaves out workspace member $member"
    done < <(sed -n '/^members/s/.*\[\(.*\)\].*/\1/p' Cargo.toml | tr ',' '\n' | tr -d ' "')
    # The skeleton is deterministic (so the dependency layer is cached) and Cargo loads it.
    deploy/docker/cargo-skeleton.sh . "$work/skeleton-a" >/dev/null
    deploy/docker/cargo-skeleton.sh . "$work/skeleton-b" >/dev/null
    diff <(cd "$work/skeleton-a" && find . -printf '%p %s %T@ %m\n' | sort) \
        <(cd "$work/skeleton-b" && find . -printf '%p %s %T@ %m\n' | sort) || fail "the Cargo skeleton is not deterministic"
    diff -r "$work/skeleton-a" "$work/skeleton-b" || fail "the Cargo skeleton is not deterministic"
    local manifests
    manifests="$(find "$work/skeleton-a" -name Cargo.toml | wc -l)"
    if command -v cargo >/dev/null 2>&1; then
        (cd "$work/skeleton-a" && cargo metadata --offline --no-deps --format-version 1 >/dev/null) ||
            fail "cargo cannot load the dependency skeleton"
        detail "runtime stages identical; builder rust:bookworm with a dependency layer; skeleton of $manifests manifests loads in cargo"
    else
        detail "runtime stages identical; builder rust:bookworm with a dependency layer (no cargo: skeleton not loaded)"
    fi
}

# ---- checks: compose --------------------------------------------------------------------------

check_compose_config() {
    local files=(-f deploy/compose/docker-compose.yml)
    if [[ "$1" == dev ]]; then files+=(-f deploy/compose/docker-compose.dev.yml); fi
    if [[ ${#compose[@]} -gt 0 ]]; then
        "${compose[@]}" "${files[@]}" config -q
        detail "${compose[*]} config -q"
    else
        need_py
        local file
        for file in "${files[@]}"; do
            [[ "$file" == -f ]] && continue
            "$py" -c 'import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); assert isinstance(d.get("services"), dict)' "$file"
        done
        detail "YAML parse only: no docker-compose / docker compose available"
    fi
}

check_compose_structure() {
    need_py
    "$py" deploy/check/deploy_checks.py compose deploy/compose/docker-compose.yml deploy/compose/docker-compose.dev.yml >"$work/out"
    cat "$work/out"
    detail "$(tail -n 1 "$work/out")"
}

check_promtool() {
    [[ -n "$promtool" ]] || { detail "no promtool (Debian's prometheus package could not be fetched)"; exit 3; }
    "$promtool" check config deploy/compose/prometheus/prometheus.yml
    detail "promtool $("$promtool" --version 2>&1 | awk 'NR == 1 { print $3 }') check config"
}

# ---- checks: Kubernetes -----------------------------------------------------------------------

check_overlay() {
    local env="$1" rendered="$work/k8s-$1.yaml" version
    need_py
    command -v kubectl >/dev/null 2>&1 || fail "kubectl is not installed (Debian: apt-get install kubernetes-client)"
    kustomize "deploy/k8s/overlays/$env" >"$rendered"
    for version in $K8S_VERSIONS; do
        "$(dirname "$py")/kubernetes-validate" --strict --quiet -k "$version" "$rendered"
    done
    local summary
    summary="$("$py" deploy/check/deploy_checks.py k8s "$rendered" "$env")" || { echo "$summary"; exit 1; }
    detail "$summary; valid (strict) for Kubernetes $K8S_VERSIONS"
}

check_servicemonitor() {
    need_py
    kustomize deploy/k8s/monitoring >"$work/monitoring.yaml"
    kustomize deploy/k8s/overlays/production >"$work/k8s-production.yaml"
    local summary
    summary="$("$py" deploy/check/deploy_checks.py servicemonitor "$work/monitoring.yaml" "$work/k8s-production.yaml")" ||
        { echo "$summary"; exit 1; }
    detail "$summary (a CRD: no offline schema, checked structurally)"
}

check_deploy_dry_run() {
    kustomize deploy/k8s/overlays/dev >"$work/expected.yaml"
    scripts/deploy-k8s.sh --dry-run dev >"$work/dry.yaml"
    diff "$work/expected.yaml" "$work/dry.yaml" || fail "--dry-run dev differs from kubectl kustomize"
    scripts/deploy-k8s.sh --dry-run --image registry.example/acme/berth:k8s-9.9.9 production >"$work/dry-image.yaml"
    grep -q 'image: registry.example/acme/berth:k8s-9.9.9$' "$work/dry-image.yaml" || fail "--image is not rendered"
    detail "renders dev as kubectl kustomize does; --image via a temporary overlay"
}

# deploy-k8s.sh against a stub kubectl that records its calls (no cluster can run here).
check_deploy_flow() {
    local stub="$work/stub" real
    real="$(command -v kubectl)" || fail "kubectl is not installed"
    mkdir -p "$stub"
    cat >"$stub/kubectl" <<STUB
#!/usr/bin/env bash
echo "\$*" >>"$stub/calls"
prev=""
for arg in "\$@"; do
    case "\$arg" in
        kustomize) exec "$real" "\$@" ;;
        get) exit 1 ;; # no namespace exists yet
    esac
    if [[ "\$prev" == --patch-file ]]; then cp "\$arg" "$stub/patch.json"; fi
    prev="\$arg"
done
exit 0
STUB
    chmod +x "$stub/kubectl"
    local url='postgres://berth:p"a\ss@db.example:5432/berth?sslmode=verify-full'
    KUBECTL="$stub/kubectl" BERTH_DATABASE_URL="$url" scripts/deploy-k8s.sh production >"$stub/out" 2>&1 ||
        { cat "$stub/out"; fail "deploy-k8s.sh failed against the stub"; }
    cat "$stub/out" "$stub/calls"
    local expected
    for expected in "create namespace berth" "create namespace berth-sandboxes" \
        "apply -k deploy/k8s/overlays/production" "-n berth rollout status deployment/berth --timeout 5m"; do
        grep -qx -- "$expected" "$stub/calls" || fail "no call: kubectl $expected"
    done
    [[ "$(grep -n 'apply -k' "$stub/calls" | cut -d: -f1)" -lt "$(grep -n 'rollout status' "$stub/calls" | cut -d: -f1)" ]] ||
        fail "rollout status before apply"
    grep -q 'patch secret berth-database --type merge --patch-file' "$stub/calls" || fail "the database URL was not patched in"
    if grep -q 'sslmode' "$stub/calls"; then fail "the database URL appears on a command line"; fi
    python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["stringData"]["database-url"] == sys.argv[2]' \
        "$stub/patch.json" "$url" || fail "the Secret patch does not carry the URL verbatim"
    grep -q 'rollout undo deployment/berth' "$stub/out" || fail "no rollback note"
    detail "namespaces created, apply -k, Secret patched from a file, rollout status, rollback note"
}

check_workflows() {
    need_py
    local files=(.github/workflows/*.yml)
    [[ -f "${files[0]}" ]] || fail "no workflows in .github/workflows"
    local summary
    summary="$("$py" deploy/check/deploy_checks.py workflows "${files[@]}")" || { echo "$summary"; exit 1; }
    detail "$summary (YAML and structure only: GitHub Actions cannot run here)"
}

# ---- checks: images ---------------------------------------------------------------------------

image_size() { docker image inspect -f '{{.Size}}' "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }

check_image_build() {
    [[ -x "$binary" ]] || fail "no berth binary at $binary (cargo build --release -p berth)"
    local linkage
    if [[ "$(LC_ALL=C ldd "$binary" 2>&1 || true)" == *"=>"* ]]; then
        linkage="dynamic (glibc: loader + $(LC_ALL=C ldd "$binary" | grep -c '=> /') libraries copied)"
    else
        linkage="static"
    fi
    scripts/build-images.sh --prebuilt "$binary" --suffix "$suffix" --label "$label" --quiet
    docker image inspect "$docker_image" "$k8s_image" >/dev/null
    detail "$binary ($linkage) → $docker_image, $k8s_image"
}

check_image_size() {
    local docker_size k8s_size
    docker_size="$(image_size "$docker_image")"
    k8s_size="$(image_size "$k8s_image")"
    detail "docker $(mb "$docker_size"), k8s $(mb "$k8s_size") (limit $(mb $IMAGE_MAX_BYTES))"
    [[ $docker_size -le $IMAGE_MAX_BYTES && $k8s_size -le $IMAGE_MAX_BYTES ]] ||
        fail "an image is over $(mb $IMAGE_MAX_BYTES): docker $(mb "$docker_size"), k8s $(mb "$k8s_size")"
}

check_image_config() {
    local variant="$1" image
    image="berth:$variant-$suffix"
    local user entrypoint health labels version
    user="$(docker image inspect -f '{{.Config.User}}' "$image")"
    entrypoint="$(docker image inspect -f '{{json .Config.Entrypoint}}' "$image")"
    health="$(docker image inspect -f '{{json .Config.Healthcheck}}' "$image")"
    labels="$(docker image inspect -f '{{json .Config.Labels}}' "$image")"
    version="$("$binary" --version | awk '{ print $NF }')"
    echo "user=$user entrypoint=$entrypoint healthcheck=$health labels=$labels"
    [[ "$user" == "65532:65532" ]] || fail "User is '$user', not 65532:65532"
    [[ "$entrypoint" == '["/usr/local/bin/berth"]' ]] || fail "ENTRYPOINT is $entrypoint, not the exec form [\"/usr/local/bin/berth\"]"
    for key in version revision created source; do
        grep -q "\"org.opencontainers.image.$key\":\"[^\"]" <<<"$labels" || fail "no org.opencontainers.image.$key label"
    done
    grep -q "\"org.opencontainers.image.version\":\"$version\"" <<<"$labels" || fail "the version label is not $version"
    if [[ "$variant" == k8s ]]; then
        [[ "$health" == null ]] || fail "the k8s variant has a HEALTHCHECK: $health"
        detail "USER 65532:65532, no HEALTHCHECK, exec-form ENTRYPOINT, OCI labels (version $version)"
    else
        [[ "$health" == *'"Test":["CMD","/usr/local/bin/berth","healthcheck"]'* ]] || fail "HEALTHCHECK is $health"
        detail "USER 65532:65532, HEALTHCHECK berth healthcheck, exec-form ENTRYPOINT, OCI labels"
    fi
}

host_port() { docker port "$1" 8080/tcp | sed -n '1s/.*://p'; }

# The docker variant as compose runs it: the socket mounted, the image's user plus the socket's
# group, published on loopback, on a network where other containers reach it by name. Only the
# health check's timing is overridden (every 2 s), so that its verdict comes quickly; its
# command stays the image's.
check_docker_starts() {
    local user gid port start
    user="$(docker image inspect -f '{{.Config.User}}' "$docker_image")"
    gid="$(stat -c %g /var/run/docker.sock)"
    docker network create --label "$label" "$network" >/dev/null
    start=$SECONDS
    docker run -d --name "$server" --label "$label" \
        --network "$network" --network-alias "$alias_name" \
        --user "$user" --group-add "$gid" \
        -v /var/run/docker.sock:/var/run/docker.sock \
        -e BERTH_CLUSTER="check-deploy-$run_id" \
        --health-interval 2s --health-start-period 30s \
        -p 127.0.0.1::8080 "$docker_image" >/dev/null
    port="$(host_port "$server")"
    if ! wait_http "http://127.0.0.1:$port/healthz" 30; then
        docker logs "$server"
        fail "no answer on /healthz within 30 s"
    fi
    local code path=/health
    code="$(http_code "http://127.0.0.1:$port/health")"
    if [[ "$code" == 200 ]]; then
        curl -s "http://127.0.0.1:$port/health"
        echo
    elif [[ "$code" == 404 ]]; then
        path="/healthz (this binary has no /health yet)"
    else
        fail "/health answered $code"
    fi
    [[ "$(http_code "http://127.0.0.1:$port/readyz")" == 200 ]] || { curl -s "http://127.0.0.1:$port/readyz"; fail "/readyz is not 200"; }
    detail "answers $path and /readyz on 127.0.0.1:$port within $((SECONDS - start)) s"
}

check_docker_uid() {
    local pid uid gid
    pid="$(docker inspect -f '{{.State.Pid}}' "$server")"
    [[ "$pid" -gt 0 ]] || fail "the container is not running"
    uid="$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status")"
    gid="$(awk '/^Gid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status")"
    detail "Uid $uid, Gid $gid (/proc/$pid/status)"
    [[ "$uid" == "65532 65532 65532 65532" && "$gid" == "65532 65532 65532 65532" ]] || fail "not running as 65532"
}

check_docker_dns() {
    # `healthcheck` asks the open /readyz: the name must resolve, and no API key is needed.
    docker run --rm --label "$label" --network "$network" "$docker_image" \
        healthcheck --server "http://$alias_name:8080"
    detail "\`berth healthcheck --server http://$alias_name:8080\` from a second container (Docker's DNS, as for a compose service name)"
}

check_docker_healthcheck() {
    if ! has_healthcheck_verb; then
        detail "this binary has no \`berth healthcheck\` verb yet"
        exit 3
    fi
    local deadline=$((SECONDS + 40)) status=""
    while [[ $SECONDS -lt $deadline ]]; do
        status="$(docker inspect -f '{{.State.Health.Status}}' "$server")"
        [[ "$status" == healthy ]] && break
        sleep 1
    done
    docker inspect -f '{{json .State.Health}}' "$server"
    [[ "$status" == healthy ]] || fail "health status is '$status'"
    detail "the engine reports healthy (berth healthcheck)"
}

check_docker_stop() {
    local start_ns end_ns ms code
    start_ns="$(date +%s%N)"
    docker stop -t 10 "$server" >/dev/null
    end_ns="$(date +%s%N)"
    ms=$(((end_ns - start_ns) / 1000000))
    code="$(docker inspect -f '{{.State.ExitCode}}' "$server")"
    docker logs --tail 5 "$server" 2>&1
    detail "stopped in ${ms} ms with exit code $code (limit ${STOP_MAX_MS} ms, 0)"
    [[ $ms -le $STOP_MAX_MS && "$code" == 0 ]] || fail "docker stop took ${ms} ms, exit code $code"
}

# Certificates as for a dockerd --tlsverify: a CA, a server certificate for NAME, a client one.
make_certs() {
    local dir="$1" name="$2" ca="$3"
    mkdir -p "$dir"
    (
        cd "$dir"
        openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$ca" -keyout ca-key.pem -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout server-key.pem -out server.csr
        printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$name" >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 -extfile server.ext -out server-cert.pem
        openssl req -newkey rsa:2048 -nodes -subj /CN=berth -keyout key.pem -out client.csr
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 -extfile client.ext -out cert.pem
        mkdir -p client && cp ca.pem cert.pem key.pem client/ && chmod 0755 client && chmod 0644 client/*
    ) >/dev/null 2>&1
}

# The k8s variant as the Deployment runs it (read-only root, all capabilities dropped, only
# the data dir and /tmp writable, the overlay's berth.toml), driving an engine over mutual TLS
# by host name; then the same with a client that does not trust the engine's certificate.
check_k8s_tls() {
    command -v openssl >/dev/null 2>&1 || fail "openssl is not installed"
    local gateway tls="$work/tls" other="$work/tls-other" name=docker-tls-check port
    gateway="$(docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' "$network")"
    [[ -n "$gateway" ]] || fail "no gateway address on $network"
    make_certs "$tls" "$name" berth-check-ca
    make_certs "$other" "$name" some-other-ca
    python3 deploy/check/tls_engine_proxy.py "$gateway" "$tls/server-cert.pem" "$tls/server-key.pem" \
        "$tls/ca.pem" /var/run/docker.sock "$tls/port" >"$work/proxy.log" 2>&1 &
    echo $! >"$work/proxy.pid"
    local deadline=$((SECONDS + 15))
    while [[ ! -s "$tls/port" && $SECONDS -lt $deadline ]]; do sleep 0.2; done
    port="$(cat "$tls/port")"
    [[ -n "$port" ]] || { cat "$work/proxy.log"; fail "the TLS proxy did not start"; }
    mkdir -p "$work/config" && kustomize deploy/k8s/overlays/production >"$work/k8s-production.yaml"
    "${py:-python3}" -c '
import sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc["kind"] == "ConfigMap" and "berth.toml" in doc.get("data", {}):
        open(sys.argv[2], "w").write(doc["data"]["berth.toml"])' "$work/k8s-production.yaml" "$work/config/berth.toml"
    chmod 0755 "$work/config" && chmod 0644 "$work/config/berth.toml"
    run_k8s() { # run_k8s NAME CERT_DIR
        docker run -d --name "$1" --label "$label" --network "$network" \
            --add-host "$name:$gateway" \
            --read-only --cap-drop ALL --security-opt no-new-privileges \
            --tmpfs /var/lib/berth:uid=65532,gid=65532,mode=0700 --tmpfs /tmp:mode=1777 \
            -v "$work/config:/etc/berth:ro" -v "$2:/certs:ro" \
            -e DOCKER_HOST="tcp://$name:$port" -e DOCKER_TLS_VERIFY=1 -e DOCKER_CERT_PATH=/certs \
            -e BERTH_CLUSTER="check-deploy-$run_id" \
            -p 127.0.0.1::8080 "$k8s_image" serve --config /etc/berth/berth.toml >/dev/null
    }
    run_k8s "berth-check-$run_id-k8s" "$tls/client"
    local hp
    hp="$(host_port "berth-check-$run_id-k8s")"
    if ! wait_http "http://127.0.0.1:$hp/readyz" 30; then
        docker logs "berth-check-$run_id-k8s"
        fail "/readyz is not 200 through the TLS engine"
    fi
    curl -s "http://127.0.0.1:$hp/readyz"
    echo
    [[ "$(http_code "http://127.0.0.1:$hp/healthz")" == 200 ]] || fail "/healthz (liveness) is not 200"
    docker logs "berth-check-$run_id-k8s" 2>&1 | sed -n '1,5p'
    # Negative control: a client CA that did not sign the engine's certificate must not connect.
    run_k8s "berth-check-$run_id-k8s-untrusted" "$other/client"
    local code
    code="$(timeout 30 docker wait "berth-check-$run_id-k8s-untrusted" || echo timeout)"
    docker logs "berth-check-$run_id-k8s-untrusted" 2>&1 | tail -n 3
    [[ "$code" != 0 && "$code" != timeout ]] || fail "berth started against an engine it should not trust (exit: $code)"
    kill "$(cat "$work/proxy.pid")" 2>/dev/null || true
    detail "read-only root, caps dropped, overlay berth.toml: /readyz 200 via tcp://$name (TLS, client cert); an untrusted engine is refused"
}

# The compose file's berth service itself, with this run's image (the other services' images
# cannot be pulled here): the socket, the user and group, the limits, the health check.
check_compose_up() {
    [[ ${#compose[@]} -gt 0 ]] || { detail "no docker-compose / docker compose available"; exit 3; }
    local port cid
    port="$(free_port)"
    BERTH_IMAGE="$docker_image" BERTH_PORT="$port" DOCKER_GID="$(stat -c %g /var/run/docker.sock)"
    export BERTH_IMAGE BERTH_PORT DOCKER_GID
    # The postgres image cannot be pulled here: the berth service alone keeps SQLite.
    printf 'services:\n  berth:\n    environment:\n      BERTH_DATABASE_URL: ""\n' >"$work/sqlite.override.yml"
    local files=(-f deploy/compose/docker-compose.yml -f "$work/sqlite.override.yml")
    touch "$work/compose.started"
    "${compose[@]}" -p "$project" "${files[@]}" up -d --no-deps berth
    cid="$("${compose[@]}" -p "$project" "${files[@]}" ps -q berth)"
    if ! wait_http "http://127.0.0.1:$port/readyz" 30; then
        docker logs "$cid"
        fail "the compose berth service does not answer /readyz"
    fi
    local memory cpus read_only user
    memory="$(docker inspect -f '{{.HostConfig.Memory}}' "$cid")"
    cpus="$(docker inspect -f '{{.HostConfig.NanoCpus}}' "$cid")"
    read_only="$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$cid")"
    user="$(docker inspect -f '{{.Config.User}}' "$cid")"
    echo "memory=$memory nanocpus=$cpus read_only=$read_only user=$user"
    [[ "$memory" == $((512 * 1024 * 1024)) && "$cpus" == 1000000000 ]] || fail "the resource limits are not applied"
    [[ "$read_only" == true && "$user" == 65532:65532 ]] || fail "not read-only as 65532:65532"
    local health=""
    if has_healthcheck_verb; then
        local deadline=$((SECONDS + 45))
        while [[ $SECONDS -lt $deadline ]]; do
            health="$(docker inspect -f '{{.State.Health.Status}}' "$cid")"
            [[ "$health" == healthy ]] && break
            sleep 1
        done
        [[ "$health" == healthy ]] || fail "compose health status is '$health'"
        health=", healthy"
    fi
    "${compose[@]}" -p "$project" "${files[@]}" down -v
    rm -f "$work/compose.started"
    detail "${compose[*]} up berth (SQLite; no postgres image here): /readyz 200, 512 MiB / 1 CPU limits, read-only, 65532:65532$health"
}

# ---- run ------------------------------------------------------------------------------------

setup_tools

check "shellcheck (scripts/, deploy/docker/, .ci/run)" check_shellcheck
check "scripts: --help and arguments" check_help
check "build-images.sh tags and buildx (dry run)" check_build_images_dry_run
check "Dockerfile: stages, dependency layer, .dockerignore" check_dockerfiles
check "compose: config (base)" check_compose_config base
check "compose: config (base + dev)" check_compose_config dev
check "compose: stack, Prometheus, Grafana" check_compose_structure
check "compose: prometheus.yml" check_promtool
for overlay in deploy/k8s/overlays/*/; do
    overlay="$(basename "$overlay")"
    check "k8s: overlays/$overlay renders and validates" check_overlay "$overlay"
done
check "k8s: optional ServiceMonitor" check_servicemonitor
check "deploy-k8s.sh --dry-run" check_deploy_dry_run
check "deploy-k8s.sh flow (stub kubectl)" check_deploy_flow
check "workflows: YAML" check_workflows

if ! docker_answers && [[ -x scripts/ensure-docker.sh ]]; then scripts/ensure-docker.sh || true; fi
if docker_answers; then
    check "images: build --prebuilt" check_image_build
    check "images: size ≤ 25 MB" check_image_size
    check "images: docker variant config" check_image_config docker
    check "images: k8s variant config" check_image_config k8s
    check "docker variant: starts and answers" check_docker_starts
    check "docker variant: non-root UID" check_docker_uid
    check "docker variant: resolves host names" check_docker_dns
    check "docker variant: HEALTHCHECK" check_docker_healthcheck
    check "docker variant: docker stop ≤ 3 s, exit 0" check_docker_stop
    check "k8s variant: hardened, TLS engine by name" check_k8s_tls
    check "compose: berth service up" check_compose_up
else
    echo "FAIL images: no Docker Engine answers (scripts/ensure-docker.sh)"
    failures=$((failures + 1))
fi

if [[ $failures -gt 0 ]]; then
    echo "check-deploy: $failures check(s) failed"
    exit 1
fi
echo "check-deploy: all checks passed"
