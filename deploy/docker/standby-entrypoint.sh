#!/usr/bin/env bash
# Entrypoint of the pg-standby container: the first time (empty data
# directory) it clones pg-primary with pg_basebackup and configures it as a
# streaming standby (-R writes primary_conninfo and standby.signal); then,
# every time, it hands over to the postgres image's own entrypoint, which
# starts the server with the arguments of the compose `command:`.
#
# The clone is written to a temporary directory next to PGDATA and renamed
# only once complete, so a container stopped half-way through starts over
# instead of running from a partial copy.
#
# Environment (set in docker-compose.yml):
#   PGDATA                 the data directory (a subdirectory of the volume)
#   PRIMARY_HOST/PORT      where the primary listens (pg-primary:5432)
#   REPLICATION_USER       the role created by primary-init.sh
#   REPLICATION_PASSWORD   its password
#   REPLICATION_SLOT       the physical slot created by primary-init.sh
#   STANDBY_NAME           application_name, shown in pg_stat_replication
set -Eeuo pipefail

: "${PGDATA:?set PGDATA}"
: "${PRIMARY_HOST:=pg-primary}"
: "${PRIMARY_PORT:=5432}"
: "${REPLICATION_USER:=replicator}"
: "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD for pg-standby}"
: "${REPLICATION_SLOT:=region_b}"
: "${STANDBY_NAME:=region-b}"

log() { printf 'standby-entrypoint: %s\n' "$*" >&2; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  parent=$(dirname "$PGDATA")
  partial="$PGDATA.partial"
  mkdir -p "$parent"
  rm -rf "$partial"
  # pg_basebackup needs an empty (or absent) target directory.
  if [ -d "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
    log "$PGDATA is not empty but has no PG_VERSION; refusing to overwrite it"
    exit 1
  fi
  rmdir "$PGDATA" 2>/dev/null || true
  chown postgres:postgres "$parent"

  log "waiting for the primary at $PRIMARY_HOST:$PRIMARY_PORT"
  until pg_isready --quiet --host="$PRIMARY_HOST" --port="$PRIMARY_PORT" --username="$REPLICATION_USER"; do
    sleep 1
  done

  log "cloning the primary (pg_basebackup, slot $REPLICATION_SLOT)"
  PGPASSWORD="$REPLICATION_PASSWORD" gosu postgres pg_basebackup \
    --dbname="host=$PRIMARY_HOST port=$PRIMARY_PORT user=$REPLICATION_USER application_name=$STANDBY_NAME" \
    --pgdata="$partial" \
    --wal-method=stream \
    --slot="$REPLICATION_SLOT" \
    --write-recovery-conf \
    --checkpoint=fast \
    --progress
  chmod 0700 "$partial"
  mv "$partial" "$PGDATA"
  log "clone complete; starting as a streaming standby"
fi

# The image's entrypoint sees an initialised PGDATA and just starts the
# server (as the postgres user) with our arguments.
exec docker-entrypoint.sh "$@"
