#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers for berth-store's PostgreSQL tests and prints its admin
# URL (a superuser `berth` on database `postgres`) as the only line on stdout; everything else
# goes to stderr. Reuses $BERTH_TEST_DATABASE_URL when it answers; otherwise runs a throwaway
# cluster of its own (trust auth, loopback only), installing PostgreSQL on Debian as root.
set -euo pipefail

PG_DIR="${BERTH_PG_DIR:-/tmp/berth-test-pg}"
PG_PORT="${BERTH_PG_PORT:-55432}"
PG_ROLE=berth
WAIT_SECS=30

usage() {
    cat <<USAGE
usage: $(basename "$0") [--help]

Makes sure a PostgreSQL server answers for the tests and prints its admin URL, e.g.
  postgres://$PG_ROLE@127.0.0.1:$PG_PORT/postgres
Typical use:
  export BERTH_TEST_DATABASE_URL="\$($0)"

When BERTH_TEST_DATABASE_URL is set and answers, prints it unchanged. Otherwise starts (creating
it on first use) a cluster in \$BERTH_PG_DIR (default /tmp/berth-test-pg) listening on
127.0.0.1:\$BERTH_PG_PORT (default 55432), with trust authentication and a superuser
'$PG_ROLE'. On Debian as root, installs the postgresql package when initdb/pg_ctl are missing.
The server log is \$BERTH_PG_DIR/postgres.log.
USAGE
}

case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
    "") ;;
    *)
        usage >&2
        exit 2
        ;;
esac

# Whether a server answers queries at URL $1 (not merely accepts connections).
answers() {
    if command -v psql >/dev/null 2>&1; then
        psql "$1" -XAtqc 'SELECT 1' >/dev/null 2>&1
    else
        pg_isready -q -d "$1" >/dev/null 2>&1
    fi
}

if [[ -n "${BERTH_TEST_DATABASE_URL:-}" ]]; then
    if answers "$BERTH_TEST_DATABASE_URL"; then
        echo "$BERTH_TEST_DATABASE_URL"
        exit 0
    fi
    echo "BERTH_TEST_DATABASE_URL is set but does not answer; starting a local cluster instead" >&2
fi

# The directory holding initdb and pg_ctl: PATH first, then Debian's versioned layout (newest).
find_pg_bin() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    local dir
    dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)"
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
        echo "$dir"
        return 0
    fi
    return 1
}

if ! pg_bin="$(find_pg_bin)"; then
    if [[ ! -f /etc/debian_version || "$(id -u)" -ne 0 ]]; then
        cat >&2 <<'MSG'
error: PostgreSQL's initdb/pg_ctl were not found, and no BERTH_TEST_DATABASE_URL answers.
Either point BERTH_TEST_DATABASE_URL at a server where you are superuser, e.g.
  export BERTH_TEST_DATABASE_URL=postgres://user:password@host:5432/postgres
or install PostgreSQL and re-run:
  - Debian/Ubuntu (as root): apt-get update && apt-get install -y postgresql
  - elsewhere: PostgreSQL 13 or newer, with initdb and pg_ctl on PATH.
MSG
        exit 1
    fi
    echo "installing postgresql..." >&2
    export DEBIAN_FRONTEND=noninteractive
    # The package's own cluster (port 5432) is left alone: this script runs a separate one.
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql >&2
    pg_bin="$(find_pg_bin)" || {
        echo "error: postgresql was installed but initdb/pg_ctl are still missing" >&2
        exit 1
    }
fi

url="postgres://$PG_ROLE@127.0.0.1:$PG_PORT/postgres"
data="$PG_DIR/data"
log="$PG_DIR/postgres.log"

# initdb and the server refuse to run as root: as root, the cluster belongs to the `postgres`
# system user (which the Debian package creates), or to a user made for it.
owner="$(id -un)"
if [[ "$(id -u)" -eq 0 ]]; then
    owner=postgres
    if ! id "$owner" >/dev/null 2>&1; then
        owner=berth-pg
        if ! id "$owner" >/dev/null 2>&1; then
            echo "creating system user $owner to own the test cluster..." >&2
            useradd --system --no-create-home --shell /usr/sbin/nologin "$owner"
        fi
    fi
fi

as_owner() {
    if [[ "$owner" == "$(id -un)" ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$owner" -- "$@"
    else
        su "$owner" -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

if answers "$url"; then
    echo "PostgreSQL already answers at 127.0.0.1:$PG_PORT" >&2
    echo "$url"
    exit 0
fi

mkdir -p "$PG_DIR"
if [[ "$(id -u)" -eq 0 ]]; then
    chown "$owner" "$PG_DIR"
fi

if [[ ! -f "$data/PG_VERSION" ]]; then
    echo "creating a PostgreSQL cluster in $data (owner $owner)..." >&2
    as_owner "$pg_bin/initdb" -D "$data" -U "$PG_ROLE" --auth=trust --encoding=UTF8 --locale=C >&2
    # Loopback only, on our own port and socket directory (so the system's /var/run/postgresql
    # and any cluster on 5432 do not matter). Room for parallel tests, each with its own pool.
    # Durability is pointless for throwaway test databases: skipping fsync makes them fast.
    as_owner tee -a "$data/postgresql.conf" >/dev/null <<CONF

# Written by scripts/ensure-postgres.sh for berth's tests.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
fi

echo "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $log)..." >&2
# -w waits for the server to accept connections; a failed start leaves its reason in the log.
if ! as_owner "$pg_bin/pg_ctl" -D "$data" -l "$log" -w -t "$WAIT_SECS" start >&2; then
    echo "error: PostgreSQL did not start; see $log" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
fi

for _ in $(seq 1 "$WAIT_SECS"); do
    if answers "$url"; then
        echo "PostgreSQL is up at 127.0.0.1:$PG_PORT" >&2
        echo "$url"
        exit 0
    fi
    sleep 1
done

echo "error: PostgreSQL did not answer at $url within ${WAIT_SECS}s; see $log" >&2
tail -n 20 "$log" >&2 || true
exit 1
