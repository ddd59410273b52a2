#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on PGHOST:PGPORT (default 127.0.0.1:5432) for `make test` and
# `make run-cluster`: the machine's own if it has one (started if stopped), else Debian's package,
# installed and started here. With a database name as argument, also creates that database if missing.
set -euo pipefail

HOST="${PGHOST:-127.0.0.1}"
PORT="${PGPORT:-5432}"
USER_NAME="${PGUSER:-postgres}"
DB="${1:-}"

answers() { command -v pg_isready >/dev/null && pg_isready -q -h "$HOST" -p "$PORT"; }
newest_version() { ls /etc/postgresql | sort -V | tail -1; }
# pg_lsclusters' status column: "online" or "down" (also "online,recovery" and the like).
running() { pg_lsclusters -h "$1" main 2>/dev/null | awk '{print $4}' | grep -q '^online'; }

if ! answers; then
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "postgres.sh: no PostgreSQL on this machine; installing Debian's package" >&2
    apt-get update -qq
    # On some hosts the package's post-install starts the server (policy-rc.d allowing it), on others not:
    # everything below works either way.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    version="$(newest_version)"
    # The tests and `make run-cluster` connect as postgres over loopback without a password, as on the
    # machines this project runs on; only a cluster installed by this script is opened up like that.
    hba="/etc/postgresql/${version}/main/pg_hba.conf"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    # A server the install already started read pg_hba.conf before the lines above: make it read them.
    if running "$version"; then
      echo "postgres.sh: reloading PostgreSQL ${version} (started by the install) for its new pg_hba.conf" >&2
      pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
  fi
  version="$(newest_version)"
  if ! running "$version"; then
    echo "postgres.sh: starting PostgreSQL ${version}" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
  for _ in $(seq 1 60); do answers && break; sleep 0.5; done
  answers || { echo "postgres.sh: PostgreSQL does not answer on ${HOST}:${PORT}" >&2; exit 1; }
fi

if [ -n "$DB" ]; then
  exists="$(psql -h "$HOST" -p "$PORT" -U "$USER_NAME" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${DB}'")"
  if [ "$exists" != "1" ]; then
    createdb -h "$HOST" -p "$PORT" -U "$USER_NAME" "$DB"
    echo "postgres.sh: created database ${DB}" >&2
  fi
fi
