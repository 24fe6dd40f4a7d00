#!/usr/bin/env bash
# The WAL archive's lags on the lab (issue 19, "Measure", drctl's side):
# p50 / p99 / max of the receive lag (the oldest commit not yet on the
# receiver's disk) and the archive lag (not yet in the object store), as
# the daemon measures them on each primary's heartbeat map, at the lab's
# write rate (one commit per 50 ms per service), then with pgbench at full
# rate on orders' primary.
#
#   bash bench/archive-lag.sh                              # 120 s per phase, pgbench scale 70 (≈1 GB)
#   SECONDS_EACH=30 SCALE=5 bash bench/archive-lag.sh     # a smoke run
#
# Prints a markdown table on stdout (progress on stderr); raw samples in
# $DIR/samples.tsv. The lab runs on loopback without etcd (the archive does
# not need them). Knobs: SECONDS_EACH, SCALE, CLIENTS (4), DIR
# (/tmp/drctl-bench-archive-lag, wiped), API_PORT (7979), BASE_PORT
# (32400), DRCTL (default target/debug/drctl, built when missing).
# Not yet here: pgBackRest's archive-push beside it, restore-to-time.
set -euo pipefail
cd "$(dirname "$0")/.."
each=${SECONDS_EACH:-120}
scale=${SCALE:-70}
clients=${CLIENTS:-4}
dir=${DIR:-/tmp/drctl-bench-archive-lag}
api_port=${API_PORT:-7979}
base_port=${BASE_PORT:-32400}
drctl=${DRCTL:-target/debug/drctl}
say() { printf '==> %s\n' "$*" >&2; }

[ -x "$drctl" ] || cargo build -q -p drctl
pg_bin=${PG_BIN:-$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | tail -1)}
"$drctl" lab --dir "$dir" down >/dev/null 2>&1 || true
rm -rf "$dir"
say "lab up in $dir"
"$drctl" lab --dir "$dir" up --detach --api-port "$api_port" --base-port "$base_port" \
  --network loopback --no-coordination >&2
trap '"$drctl" lab --dir "$dir" down >/dev/null 2>&1 || true' EXIT
api=http://127.0.0.1:$api_port
samples=$dir/samples.tsv
: > "$samples"

say "phase 1: the lab's write rate, ${each}s"
python3 bench/archive/lag.py sample "$api" 10 warmup >/dev/null
python3 bench/archive/lag.py sample "$api" "$each" lab >> "$samples"

# orders' primary: the lab's first port.
pgbench() { runuser -u postgres -- "$pg_bin/pgbench" -h 127.0.0.1 -p "$base_port" "$@"; }
say "pgbench -i -s $scale on orders (≈$((scale * 15)) MB), archived as it loads"
pgbench -i -q -s "$scale" orders >&2
say "phase 2: pgbench at full rate ($clients clients), ${each}s"
pgbench -c "$clients" -j 2 -T "$each" -n orders > "$dir/pgbench.txt" 2>&1 &
bench=$!
python3 bench/archive/lag.py sample "$api" "$each" pgbench >> "$samples"
wait "$bench"
say "phase 3: after pgbench, catching up, 30s"
python3 bench/archive/lag.py sample "$api" 30 after >> "$samples"

echo "drctl $("$drctl" --version | awk '{print $2}'), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores; pgbench: $(grep -E '^tps' "$dir/pgbench.txt" | head -1)"
echo
python3 bench/archive/lag.py summary "$samples"
