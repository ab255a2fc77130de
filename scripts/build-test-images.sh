#!/usr/bin/env bash
# Builds the images berth's tests run, from Debian's static busybox: no registry needed.
# Idempotent: an image that already exists is left as it is (pass --force to rebuild); the aenv
# server is also rebuilt whenever its scripts below change (their digest is an image label).
#   berth-test/busybox:latest       FROM scratch + /bin/busybox, applets installed in /bin
#   berth-test/aenv-server:latest   the same, serving AEnvironment's in-sandbox contract on :8081
#                                   (GET /health, POST /functions/<name>, POST /task/reward,
#                                   GET /functions/list, GET /sse) and GET /hostname (which
#                                   replica answered): a sh server behind busybox nc
set -euo pipefail

IMAGE="berth-test/busybox:latest"
AENV_IMAGE="berth-test/aenv-server:latest"
DIGEST_LABEL="berth.test.scripts-digest"
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

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
aenv="$context/aenv"
mkdir "$aenv"
cat >"$aenv/aenv-server" <<'SERVER'
#!/bin/sh
# The AEnvironment in-sandbox contract on $PORT (8081), after $AENV_START_DELAY seconds (0): one
# aenv-handler per connection, connections served side by side.
sleep "${AENV_START_DELAY:-0}"
exec nc -ll -p "${PORT:-8081}" -e /bin/aenv-handler
SERVER
cat >"$aenv/aenv-handler" <<'HANDLER'
#!/bin/sh
# One HTTP/1.1 exchange on stdin/stdout (nc hands over the connection): the AEnvironment
# in-sandbox contract, enough for berth's gateway tests. Every answer closes the connection.
cr=$(printf '\r')

# A JSON string's content: backslashes and quotes escaped.
escape() {
    case $1 in
        *[\"\\]*) printf '%s' "$1" | sed 's/[\\"]/\\&/g' ;;
        *) printf '%s' "$1" ;;
    esac
}

respond() { # STATUS JSON
    printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
        "$1" "$(printf '%s' "$2" | wc -c)" "$2"
}

read -r method target _version || exit 0
length=0
headers=""
while IFS= read -r line; do
    line=${line%"$cr"}
    [ -z "$line" ] && break
    name=$(printf '%s' "${line%%:*}" | tr '[:upper:]' '[:lower:]')
    value=${line#*:}
    value=${value# }
    [ "$name" = content-length ] && length=$value
    headers="$headers${headers:+,}\"$(escape "$name")\":\"$(escape "$value")\""
done
body=""
if [ "$length" -gt 0 ] 2>/dev/null; then
    body=$(head -c "$length")
fi
path=${target%%\?*}
query=""
case $target in *\?*) query=${target#*\?} ;; esac

case "$method $path" in
    "GET /health")
        respond "200 OK" '{"success":true,"data":{"status":"success","message":"berth aenv test server","details":{"tool_count":0}}}'
        ;;
    "GET /hostname")
        # Which replica answered: the balancer tests count distinct ones.
        respond "200 OK" "{\"success\":true,\"data\":{\"hostname\":\"$(escape "$(hostname)")\"}}"
        ;;
    "GET /functions/list")
        respond "200 OK" '{"success":true,"data":{"total":1,"functions":["echo"],"reward":true,"health":true}}'
        ;;
    "POST /functions/"*)
        case $body in
            "{"*|"["*) echoed=$body ;;
            "") echoed=null ;;
            *) echoed="\"$(escape "$body")\"" ;;
        esac
        respond "200 OK" "{\"success\":true,\"data\":{\"function\":\"$(escape "${path#/functions/}")\",\"body\":$echoed,\"query\":\"$(escape "$query")\",\"headers\":{$headers}}}"
        ;;
    "POST /task/reward")
        respond "200 OK" '{"success":true,"data":{"reward":1}}'
        ;;
    "GET /sse" | "GET /slow")
        # Five events 300 ms apart, each written (and so sent) on its own: a stream to watch arrive.
        printf 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n'
        i=1
        while [ "$i" -le 5 ]; do
            printf 'event: tick\ndata: {"n":%d}\n\n' "$i"
            [ "$i" -lt 5 ] && sleep 0.3
            i=$((i + 1))
        done
        ;;
    *)
        respond "404 Not Found" "{\"success\":false,\"error\":\"no route for $(escape "$method $path")\"}"
        ;;
esac
HANDLER
cat >"$aenv/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY aenv-server aenv-handler /bin/
EXPOSE 8081
CMD ["/bin/aenv-server"]
DOCKERFILE
chmod 0755 "$aenv/aenv-server" "$aenv/aenv-handler"
digest="$(cat "$aenv/aenv-server" "$aenv/aenv-handler" "$aenv/Dockerfile" | sha256sum | cut -c1-16)"

present() {
    [[ $force -eq 0 ]] && docker image inspect "$1" >/dev/null 2>&1
}
aenv_current() {
    present "$AENV_IMAGE" &&
        [[ "$(docker image inspect --format "{{ index .Config.Labels \"$DIGEST_LABEL\" }}" "$AENV_IMAGE")" == "$digest" ]]
}
if present "$IMAGE" && aenv_current; then
    echo "$IMAGE and $AENV_IMAGE are present"
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

cp "$BUSYBOX" "$context/busybox"
cat >"$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
DOCKERFILE

if present "$IMAGE"; then
    echo "$IMAGE is present"
else
    DOCKER_BUILDKIT=0 docker build --quiet --tag "$IMAGE" "$context" >/dev/null
    echo "built $IMAGE"
fi

if aenv_current; then
    echo "$AENV_IMAGE is present"
    exit 0
fi
cp "$BUSYBOX" "$aenv/busybox"
DOCKER_BUILDKIT=0 docker build --quiet --label "$DIGEST_LABEL=$digest" --tag "$AENV_IMAGE" "$aenv" >/dev/null
echo "built $AENV_IMAGE"
