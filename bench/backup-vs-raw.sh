#!/usr/bin/env bash
# Backup throughput of drctl against the raw floor (pg_basebackup writing a
# tar to local disk), on the lab's catalog cluster grown with pgbench.
#
#   bash bench/backup-vs-raw.sh [SCALE]     # SCALE 70 ≈ 1 GB (default)
#
# Uses the release build; starts and stops its own lab under /tmp/drctl-bench-backup.
# Prints one line per measurement: what, seconds, bytes read, MB/s.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-70}
dir=/tmp/drctl-bench-backup
drctl=target/release/drctl
cargo build --release -q -p drctl
pg_bin=${PG_BIN:-$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
export DRCTL_LAB_DIR=$dir
"$drctl" lab down >/dev/null 2>&1 || true
"$drctl" lab up --detach --base-port 25432 --api-port 25478 >/dev/null
trap '"$drctl" lab down >/dev/null 2>&1 || true' EXIT
cfg=$dir/drctl.toml
dsn="postgres://postgres@127.0.0.1:25436/catalog"
"$drctl" lab workload pause >/dev/null
echo "pgbench -i -s $scale (catalog)…" >&2
"$pg_bin/pgbench" -q -i -s "$scale" "$dsn" >/dev/null 2>&1
size=$(psql -At "$dsn" -c "select pg_database_size('catalog')")
echo "database size: $((size / 1048576)) MiB" >&2

measure() { # what, command…
  local what=$1; shift
  local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N)
  awk -v w="$what" -v a="$t0" -v b="$t1" -v s="$size" 'BEGIN { d=b-a; printf "%-44s %7.2f s  %8.1f MB/s (of the database size)\n", w, d, s/1e6/d }'
}

raw=$(mktemp -d /tmp/drctl-bench-raw.XXXX)
measure "pg_basebackup -Ft -X fetch to local disk" "$pg_bin/pg_basebackup" -d "$dsn" -D "$raw/base" -Ft -X fetch -c fast
rm -rf "$raw"
measure "pg_basebackup | zstd -3 to local disk" bash -c "'$pg_bin/pg_basebackup' -d '$dsn' -D - -Ft -X fetch -c fast | zstd -3 -q -T1 > /tmp/drctl-bench-raw.tar.zst"
rm -f /tmp/drctl-bench-raw.tar.zst
measure "drctl backup run (zstd 3, local directory)" "$drctl" backup run catalog --config "$cfg"
measure "drctl backup verify" "$drctl" backup verify --latest catalog --config "$cfg"
measure "drctl restore-test" "$drctl" restore-test catalog --config "$cfg"
"$drctl" backup list catalog --config "$cfg" >&2
