#!/usr/bin/env bash
# Runs once, when the pg-primary container initialises an empty data
# directory (the postgres image runs every script in
# /docker-entrypoint-initdb.d/ then, and never again).
#
# It prepares the primary for streaming replication and for drctl:
#   - a `replicator` role (REPLICATION) for pg-standby's pg_basebackup and
#     WAL receiver, allowed from the network in pg_hba.conf;
#   - a physical replication slot for the standby, so the primary keeps the
#     WAL the standby has not received yet (bounded by
#     max_slot_wal_keep_size in docker-compose.yml);
#   - a `drctl` role that can read replication statistics (pg_monitor),
#     owns the `drctl` schema, where the lag monitor writes heartbeat rows
#     (the map from WAL position to the primary's time that RPO exposure is
#     measured with), and may open replication connections (REPLICATION,
#     and its own line in pg_hba.conf) for the backups drctl takes with
#     pg_basebackup into MinIO. It is not a superuser: it cannot fence or
#     promote, which is one reason this Compose file does not fail over.
#
# Passwords come from the container's environment (docker-compose.yml), and
# reach SQL as psql variables, so no quoting can go wrong.
set -Eeuo pipefail

: "${REPLICATION_USER:=replicator}"
: "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD for pg-primary}"
: "${REPLICATION_SLOT:=region_b}"
: "${DRCTL_DB_USER:=drctl}"
: "${DRCTL_DB_PASSWORD:?set DRCTL_DB_PASSWORD for pg-primary}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v repl_user="$REPLICATION_USER" -v repl_password="$REPLICATION_PASSWORD" \
  -v repl_slot="$REPLICATION_SLOT" \
  -v drctl_user="$DRCTL_DB_USER" -v drctl_password="$DRCTL_DB_PASSWORD" \
  -v db="$POSTGRES_DB" <<-'EOSQL'
	CREATE ROLE :"repl_user" WITH REPLICATION LOGIN PASSWORD :'repl_password';
	SELECT pg_create_physical_replication_slot(:'repl_slot');

	CREATE ROLE :"drctl_user" WITH LOGIN REPLICATION PASSWORD :'drctl_password';
	GRANT pg_monitor TO :"drctl_user";
	GRANT CONNECT, CREATE ON DATABASE :"db" TO :"drctl_user";
	CREATE SCHEMA IF NOT EXISTS drctl AUTHORIZATION :"drctl_user";
EOSQL

# Replication connections match only `replication` lines in pg_hba.conf
# ("all" does not cover them). The server reads this file when the image's
# entrypoint restarts it after the init scripts.
# pg-standby's clone copies this file, so the standby admits the same.
{
  echo "host replication ${REPLICATION_USER} all scram-sha-256"
  echo "host replication ${DRCTL_DB_USER} all scram-sha-256"
} >> "$PGDATA/pg_hba.conf"
