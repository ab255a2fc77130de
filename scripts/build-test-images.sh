#!/usr/bin/env bash
# Builds the images berth's tests run, from Debian's static busybox: no registry needed.
# Idempotent: an image that already exists is left as it is (pass --force to rebuild).
#   berth-test/busybox:latest   FROM scratch + /bin/busybox, applets installed in /bin
set -euo pipefail

IMAGE="berth-test/busybox:latest"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
force=0
if [[ "${1:-}" == "--force" ]]; then force=1; fi

if ! command -v docker >/dev/null 2>&1; then
    echo "error: the docker CLI is not installed (run scripts/ensure-docker.sh)" >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    echo "error: no Docker Engine answers (run scripts/ensure-docker.sh)" >&2
    exit 1
fi

if [[ $force -eq 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "$IMAGE is present"
    exit 0
fi

if [[ ! -x "$BUSYBOX" ]]; then
    echo "error: $BUSYBOX is missing: install Debian's busybox-static (apt-get install -y busybox-static)" >&2
    exit 1
fi
# ldd prints "lib => path" lines for a dynamic binary; a static one (what we need) has none.
ldd_out="$(LC_ALL=C ldd "$BUSYBOX" 2>&1 || true)"
if [[ "$ldd_out" == *"=>"* ]]; then
    echo "error: $BUSYBOX is dynamically linked; a FROM scratch image needs Debian's busybox-static" >&2
    exit 1
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$BUSYBOX" "$context/busybox"
cat >"$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
DOCKERFILE

DOCKER_BUILDKIT=0 docker build --quiet --tag "$IMAGE" "$context" >/dev/null
echo "built $IMAGE"
