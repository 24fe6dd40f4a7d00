#!/usr/bin/env bash
# drctl's backups side by side with pgBackRest on one database, in one run
# (the "Measure" section of issue 3).
#
#   bash bench/backup-peers.sh                           # the full run: ≈1.3 GB, 3 repetitions, ≈15 min
#   SCALE=5 NOISE_MB=40 REPS=1 bash bench/backup-peers.sh  # a smoke run, under a minute
#
# Run it on a quiet machine: it measures wall time on shared cores. Prints
# one markdown table on stdout (progress on stderr) and keeps the raw timings
# in $DIR/timings.tsv.
#
# The database: `pgbench -i -s SCALE` plus a table `noise` of NOISE_MB MiB
# of random hex text (md5() digits, 512 to a row: 2.0:1 under zstd -3),
# far less compressible than pgbench alone (pgbench_accounts shrinks ~35:1
# under zstd -3, its filler being blanks). The defaults, SCALE 40 (≈600 MiB)
# and NOISE_MB 700, make ≈1.3 GB compressing ≈3.5:1; the line above the
# table states each run's measured size and ratio (pg_basebackup | zstd).
# Archiving stays on throughout (pgBackRest needs it): every backup's WAL
# switch is archived by pgBackRest in the background, for every tool alike.
#
# Measured, each REPS times (median and min reported):
#   raw floor      pg_basebackup -Ft -X fetch -c fast to local disk; and
#                  the same piped through `zstd -ZSTD_LEVEL -T1` (one core)
#                  and `-T0` (one worker per core, as drctl by default)
#   drctl          `drctl backup run` to a local directory store, and to S3
#                  (s3s-fs, plain HTTP on loopback); `drctl backup verify`
#                  of each; `drctl restore-test` from each (restore, start,
#                  until consistent, one validation query, clean up), with
#                  the restore test's own time to ready beside it
#   pgBackRest     full backup, compress-type=zst at ZSTD_LEVEL, bundles on,
#                  process-max 1 and 2 (PGBR_PROCESS_MAX), to a posix repo
#                  and to the same s3s-fs through stunnel4 (pgBackRest 2.45
#                  speaks HTTPS only); `pgbackrest verify` of the posix repo;
#                  `pgbackrest restore --type=immediate` + start until the
#                  same query answers
# Throughput is the database size over the median time (verify: the stored
# bytes it re-reads); "vs raw" is that throughput over the raw floor's.
#
# Needs, as root on Debian (installed when missing): PostgreSQL server
# binaries (PG_BIN, else pg_config --bindir), pgbackrest, stunnel4, zstd,
# openssl, python3; s3s-fs from crates.io (`cargo install s3s-fs --version
# 0.14.1 --features binary --locked --root /work/tools`; 0.14.1 is the
# newest that builds with Rust 1.95); and the release drctl (built here
# unless DRCTL names a binary).
#
# Knobs (environment): SCALE, NOISE_MB, REPS, ZSTD_LEVEL (3),
# PGBR_PROCESS_MAX ("1 2"), DIR (/var/lib/postgresql/drctl-bench-peers,
# wiped at start), PORT_BASE (31400: PostgreSQL +32, pgBackRest's restored
# cluster +33, s3s-fs +90, stunnel +91; drctl's restore test picks a free
# port), DRCTL, S3S_FS, KEEP=1 (keep DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scale=${SCALE:-40}
noise_mb=${NOISE_MB:-700}
reps=${REPS:-3}
level=${ZSTD_LEVEL:-3}
pgbr_pm=${PGBR_PROCESS_MAX:-1 2}
dir=${DIR:-/var/lib/postgresql/drctl-bench-peers}
base=${PORT_BASE:-31400}
pg_port=$((base + 32)) restore_port=$((base + 33)) s3_port=$((base + 90)) tls_port=$((base + 91))
s3_key=drctl-bench s3_secret=drctl-bench-secret

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: PostgreSQL and pgBackRest run as the postgres user, drctl as root"
as_pg() { runuser -u postgres -- "$@"; }

# 1. What it needs.
apt_updated=
need_deb() { # command package
  command -v "$1" >/dev/null && return
  [ -n "$apt_updated" ] || { say "apt-get update"; apt-get update -qq; apt_updated=1; }
  say "apt-get install $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
pg_bin=${PG_BIN:-$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)}
if [ ! -x "$pg_bin/initdb" ]; then need_deb pg_config postgresql; pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); fi
need_deb pgbackrest pgbackrest
need_deb stunnel4 stunnel4
need_deb zstd zstd
need_deb openssl openssl
need_deb python3 python3-minimal
s3s=${S3S_FS:-$(command -v s3s-fs || echo /work/tools/bin/s3s-fs)}
if [ ! -x "$s3s" ]; then
  say "cargo install s3s-fs"
  cargo install s3s-fs --version 0.14.1 --features binary --locked --root /work/tools >&2
  s3s=/work/tools/bin/s3s-fs
fi
if [ -z "${DRCTL:-}" ]; then
  say "cargo build --release -p drctl"
  cargo build --release -q -p drctl
  drctl=$root/target/release/drctl
else
  drctl=$DRCTL
fi

# 2. A fresh directory, and everything stopped on the way out.
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in "$dir/pg" "$dir/restore"; do
    [ -f "$d/postmaster.pid" ] && as_pg "$pg_bin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  [ "${KEEP:-}" = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT
if [ -f "$dir/pg/postmaster.pid" ]; then as_pg "$pg_bin/pg_ctl" -D "$dir/pg" -m immediate stop >/dev/null 2>&1 || true; fi
rm -rf "$dir"
mkdir -p "$dir"/{sock,pgbr/lock,pgbr/log,pgbr/spool,pgbr-repo,s3/drctl,s3/pgbackrest,objects,rt}
chown -R postgres: "$dir"

# 3. The object store: s3s-fs on loopback, stunnel in front for pgBackRest.
"$s3s" --host 127.0.0.1 --port "$s3_port" --access-key "$s3_key" --secret-key "$s3_secret" "$dir/s3" \
  >"$dir/s3s-fs.log" 2>&1 &
pids+=($!)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -keyout "$dir/tls.key" -out "$dir/tls.crt" >/dev/null 2>&1
cat >"$dir/stunnel.conf" <<EOF
foreground = yes
pid =
[s3]
accept = 127.0.0.1:$tls_port
connect = 127.0.0.1:$s3_port
cert = $dir/tls.crt
key = $dir/tls.key
EOF
stunnel4 "$dir/stunnel.conf" >"$dir/stunnel.log" 2>&1 &
pids+=($!)

# 4. The database: archiving on for pgBackRest, but not while loading.
pgdata=$dir/pg
pgbr_conf=$dir/pgbackrest.conf
as_pg "$pg_bin/initdb" -D "$pgdata" -U postgres -A trust --no-sync >/dev/null
cat >>"$pgdata/postgresql.conf" <<EOF
port = $pg_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
wal_level = replica
archive_mode = on
archive_command = '/bin/true'
max_wal_size = 8GB
checkpoint_timeout = 30min
shared_buffers = 512MB
EOF
as_pg "$pg_bin/pg_ctl" -D "$pgdata" -l "$dir/pg.log" -w start >/dev/null
dsn="postgres://postgres@127.0.0.1:$pg_port/bench"
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_ -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE bench"
say "pgbench -i -s $scale"
"$pg_bin/pgbench" -q -i -s "$scale" "$dsn" >/dev/null 2>&1
say "noise: $noise_mb MiB of random hex text"
# 16 × md5 = 512 hex characters a row: stored inline (under the TOAST
# threshold), so PostgreSQL does not compress it itself. ≈600 rows a MiB.
md5s=$(printf 'md5(random()::text)||%.0s' $(seq 16))
psql_ "$dsn" -c "CREATE TABLE noise (id bigint PRIMARY KEY, body text NOT NULL)"
psql_ "$dsn" -c "INSERT INTO noise SELECT g, ${md5s}'' FROM generate_series(1, $((noise_mb * 1750))) g"
psql_ "$dsn" -c "VACUUM ANALYZE" -c "CHECKPOINT"
size=$(psql -X -At "$dsn" -c "SELECT pg_database_size('bench')")
say "database: $((size / 1048576)) MiB"

cat >"$pgbr_conf" <<EOF
[global]
repo1-path=$dir/pgbr-repo
repo1-retention-full=2
repo1-bundle=y
repo2-type=s3
repo2-s3-endpoint=127.0.0.1
repo2-storage-port=$tls_port
repo2-storage-verify-tls=n
repo2-s3-uri-style=path
repo2-s3-bucket=pgbackrest
repo2-s3-region=us-east-1
repo2-s3-key=$s3_key
repo2-s3-key-secret=$s3_secret
repo2-path=/bench
repo2-retention-full=2
repo2-bundle=y
compress-type=zst
compress-level=$level
start-fast=y
lock-path=$dir/pgbr/lock
log-path=$dir/pgbr/log
spool-path=$dir/pgbr/spool
log-level-console=error
log-level-file=info
[bench]
pg1-path=$pgdata
pg1-port=$pg_port
pg1-socket-path=$dir/sock
pg1-user=postgres
EOF
chown postgres: "$pgbr_conf"
pgbr() { as_pg pgbackrest --config="$pgbr_conf" --stanza=bench "$@"; }
psql_ "$dsn" -c "ALTER SYSTEM SET archive_command = 'pgbackrest --config=$pgbr_conf --stanza=bench archive-push %p'" \
  -c "SELECT pg_reload_conf()" >/dev/null
pgbr stanza-create
pgbr check

# drctl: one config a store, each with its own state.
export AWS_ACCESS_KEY_ID=$s3_key AWS_SECRET_ACCESS_KEY=$s3_secret AWS_EC2_METADATA_DISABLED=true
for store in local s3; do
  cat >"$dir/drctl-$store.toml" <<EOF
[store]
url = "sqlite://drctl-$store.db"

[api]
listen = "127.0.0.1:$((base + 78))"

[[regions]]
name = "region-a"

[[regions]]
name = "region-b"

[[object_stores]]
name = "local"
kind = "local"
path = "objects"

[[object_stores]]
name = "s3"
kind = "s3"
bucket = "drctl"
endpoint = "http://127.0.0.1:$s3_port"
region = "us-east-1"
path_style = true

[[services]]
name = "bench"
tier = "cold"
regions = ["region-a", "region-b"]
primary = "region-a"
[services.postgres.region-a]
dsn = "$dsn"
[services.backup]
store = "$store"
compression_level = $level
validation_queries = ["SELECT count(*) > 0 FROM pgbench_accounts"]
EOF
done

# 5. The measurements. Each appends "what<TAB>seconds<TAB>bytes" rows.
timings=$dir/timings.tsv
: >"$timings"
now() { date +%s.%N; }
record() { # what seconds bytes
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$timings"
  awk -v w="$1" -v s="$2" 'BEGIN { printf "    %-52s %8.2f s\n", w, s }' >&2
}
timed() { # what bytes command…
  local what=$1 bytes=$2 t0 t1; shift 2
  sync
  t0=$(now); "$@" >/dev/null; t1=$(now)
  record "$what" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$bytes"
}
json_field() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[int(k)] if k.lstrip("-").isdigit() else v[k]
print(v)' "$1"; }

stored_sizes=$dir/stored.tsv
: >"$stored_sizes"
stored() { printf '%s\t%s\n' "$1" "$2" >>"$stored_sizes"; } # what bytes
restore_pgbr() { # repo: restore, start until the validation query answers
  local target=$dir/restore
  rm -rf "$target"; install -d -o postgres -m 700 "$target"
  pgbr --repo="$1" --pg1-path="$target" --type=immediate --target-action=promote restore
  as_pg "$pg_bin/pg_ctl" -D "$target" -l "$dir/restore.log" -w -t 3600 \
    -o "-p $restore_port -c archive_mode=off -c unix_socket_directories=$dir/sock" start
  psql -X -At -h 127.0.0.1 -p "$restore_port" -U postgres -d bench \
    -c "SELECT count(*) > 0 FROM pgbench_accounts" | grep -qx t
}
stop_restored() {
  as_pg "$pg_bin/pg_ctl" -D "$dir/restore" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir/restore"
}

say "warming the page cache"
find "$pgdata/base" -type f -exec cat {} + >/dev/null
for rep in $(seq "$reps"); do
  say "repetition $rep of $reps"
  raw=$dir/raw; rm -rf "$raw"; install -d -o postgres "$raw"
  timed "pg_basebackup -Ft to local disk (raw floor)" "$size" \
    "$pg_bin/pg_basebackup" -d "$dsn" -D "$raw/base" -Ft -X fetch -c fast
  rm -rf "$raw"/*
  timed "pg_basebackup -Ft | zstd -$level -T1 to local disk" "$size" \
    bash -o pipefail -c "'$pg_bin/pg_basebackup' -d '$dsn' -D - -Ft -X fetch -c fast | zstd -$level -q -T1 -o '$raw/base.tar.zst'"
  stored "pg_basebackup -Ft | zstd -$level -T1 to local disk" "$(stat -c %s "$raw/base.tar.zst")"
  timed "pg_basebackup -Ft | zstd -$level -T0 to local disk" "$size" \
    bash -o pipefail -c "'$pg_bin/pg_basebackup' -d '$dsn' -D - -Ft -X fetch -c fast | zstd -$level -q -f -T0 -o '$raw/base.tar.zst'"
  stored "pg_basebackup -Ft | zstd -$level -T0 to local disk" "$(stat -c %s "$raw/base.tar.zst")"
  rm -rf "$raw"

  for store in local s3; do
    cfg=$dir/drctl-$store.toml
    out=$dir/drctl-run.json
    timed "drctl backup run → $store" "$size" \
      bash -c "'$drctl' backup run bench --config '$cfg' -o json > '$out'"
    stored=$(json_field backup.stored_bytes <"$out")
    stored "drctl backup run → $store" "$stored"
    timed "drctl backup verify ($store)" "$stored" \
      "$drctl" backup verify --latest bench --config "$cfg"
  done

  for pm in $pgbr_pm; do
    for repo in 1 2; do
      name=$([ "$repo" = 1 ] && echo posix || echo "s3 via stunnel")
      timed "pgbackrest backup --process-max=$pm → $name" "$size" \
        pgbr --repo="$repo" --type=full --process-max="$pm" backup
      stored "pgbackrest backup --process-max=$pm → $name" \
        "$(pgbr --repo="$repo" --output=json info | json_field 0.backup.-1.info.repository.delta)"
    done
  done
  stored=$(pgbr --repo=1 --output=json info | json_field 0.backup.-1.info.repository.delta)
  timed "pgbackrest verify (posix)" "$stored" pgbr --repo=1 verify

  for store in local s3; do
    out=$dir/drctl-rt.json
    timed "drctl restore-test ← $store" "$size" \
      bash -c "'$drctl' restore-test bench --config '$dir/drctl-$store.toml' --scratch '$dir/rt' -o json > '$out'"
    record "drctl restore-test ← $store: time to ready (its record)" \
      "$(json_field restore_test.time_to_ready_us <"$out" | awk '{ print $1 / 1e6 }')" "$size"
  done
  for repo in 1 2; do
    name=$([ "$repo" = 1 ] && echo posix || echo "s3 via stunnel")
    timed "pgbackrest restore + start ← $name" "$size" restore_pgbr "$repo"
    stop_restored
  done
done

# 6. The table: median and min per row, throughput over the median.
ratio=$(awk -F'\t' -v s="$size" '$1 ~ /zstd/ { n++; t += $2 } END { printf "%.2f", s / (t / n) }' "$stored_sizes")
printf '\nDatabase: %s MiB (pgbench scale %s + %s MiB random hex text), compressing %s:1 at zstd -%s; %s repetition(s); %s, %s cores; drctl %s, pgBackRest %s, s3s-fs %s.\n\n' \
  "$((size / 1048576))" "$scale" "$noise_mb" "$ratio" "$level" "$reps" "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" \
  "$("$drctl" --version | awk '{ print $NF }')" "$(pgbackrest version | awk '{ print $2 }')" "$("$s3s" --version | awk '{ print $NF }')"
python3 - "$timings" "$stored_sizes" <<'EOF'
import statistics, sys
from collections import OrderedDict
rows = OrderedDict()
for line in open(sys.argv[1]):
    what, secs, size = line.rstrip("\n").split("\t")
    rows.setdefault(what, ([], int(size)))[0].append(float(secs))
stored = {}
for line in open(sys.argv[2]):
    k, v = line.rstrip("\n").split("\t")
    stored.setdefault(k, []).append(int(v))
floor = "pg_basebackup -Ft to local disk (raw floor)"
raw_rate = rows[floor][1] / statistics.median(rows[floor][0])
# drctl's rows against pgBackRest's doing the same work on one process
# (drctl compresses on one core).
peers = {}
for store, repo in [("local", "posix"), ("s3", "s3 via stunnel")]:
    peers[f"drctl backup run → {store}"] = f"pgbackrest backup --process-max=1 → {repo}"
    peers[f"drctl restore-test ← {store}"] = f"pgbackrest restore + start ← {repo}"
    peers[f"drctl restore-test ← {store}: time to ready (its record)"] = f"pgbackrest restore + start ← {repo}"
peers["drctl backup verify (local)"] = "pgbackrest verify (posix)"
print("| measurement | median s | min s | MB/s | vs raw | vs pgBackRest | stored MB |")
print("|---|---:|---:|---:|---:|---:|---:|")
for what, (secs, size) in rows.items():
    med, lo = statistics.median(secs), min(secs)
    rate = size / med if med > 0 else float("inf")
    vs_raw = f"{rate / raw_rate:.2f}×" if "backup" in what and "verify" not in what else ""
    peer = peers.get(what)
    vs_peer = f"{statistics.median(rows[peer][0]) / med:.2f}×" if peer in rows else ""
    st = f"{statistics.median(stored[what]) / 1e6:.0f}" if what in stored else ""
    name = what.replace("|", "\\|")
    print(f"| {name} | {med:.2f} | {lo:.2f} | {rate / 1e6:.0f} | {vs_raw} | {vs_peer} | {st} |")
EOF
echo
echo "MB/s: database size / median time (verify: stored bytes re-read / median time). vs raw: backup throughput / the raw floor's (goal ≥ 0.8×). vs pgBackRest: pgBackRest's median time / drctl's for the same work, pgBackRest on one process (≥ 1× is drctl as fast or faster)."
