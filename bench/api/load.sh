#!/usr/bin/env bash
# API latency under load with many services (issue: the RPO/RTO dashboard).
#
#   bash bench/api/load.sh [--services N] [--rate R] [--duration 30s]
#
# Starts the lab (`drctl lab up --detach`) in a scratch directory, writes a
# config with N services (default 1000) that all share the lab's `orders`
# cluster (so every one of them has live lag figures), runs `drctl serve` on
# it (release build, port 7979, its own state store), and drives
# GET /api/v1/rpo-rto and GET / from wrk — a second process — at about R
# requests/s (default 500: each of 4 connections waits 4000/R ms between
# requests). Prints wrk's latency percentiles and writes them to
# bench/api/results/load-N.md. Knobs: DRCTL (binary; default
# target/release/drctl, built when missing), LAB_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SERVICES=1000
RATE=500
DURATION=30s
while [[ $# -gt 0 ]]; do
  case $1 in
    --services) SERVICES=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
DIR=${LAB_DIR:-/tmp/drctl-bench-api}
PORT=7979
CONNS=4
# Less one millisecond for the answer itself, so the rate is met.
DELAY_MS=$(( 1000 * CONNS / RATE - 1 ))
say() { printf '==> %s\n' "$*" >&2; }

command -v wrk >/dev/null || { say "apt-get install wrk"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
if [[ -z ${DRCTL:-} ]]; then
  DRCTL=$ROOT/target/release/drctl
  say "cargo build --release -p drctl"
  (cd "$ROOT" && cargo build --release --locked -p drctl)
fi

cleanup() {
  [[ -n ${SERVE_PID:-} ]] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null || true
  "$DRCTL" lab down --dir "$DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$DRCTL" lab down --dir "$DIR" >/dev/null 2>&1 || true
rm -rf "$DIR"
say "lab up in $DIR"
"$DRCTL" lab up --detach --dir "$DIR" --api-port 7878 >/dev/null

# N services in the lab's orders cluster: one sampler measures them all.
python3 - "$DIR/drctl.toml" "$DIR/bench.toml" "$SERVICES" "$PORT" <<'PY'
import re, sys
src, dst, n, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
text = open(src).read()
head, services = text.split("\n[[services]]", 1)
head = re.sub(r'listen = "[^"]*"', f'listen = "127.0.0.1:{port}"', head, count=1)
head = head.replace('url = "sqlite://drctl-state.db"', 'url = "sqlite://bench-state.db"')
dsns = dict(re.findall(r'\[services\.postgres\.(region-[ab])\]\ndsn = "([^"]*)"', services.split("\n[[services]]")[0]))
out = [head]
for i in range(n):
    out.append(f'''
[[services]]
name = "svc-{i:04d}"
tier = "hot"
cluster = "orders"
regions = ["region-a", "region-b"]
primary = "region-a"
[services.postgres.region-a]
dsn = "{dsns['region-a']}"
[services.postgres.region-b]
dsn = "{dsns['region-b']}"
[services.failover]
automatic = false
''')
open(dst, "w").write("".join(out))
PY
"$DRCTL" config validate "$DIR/bench.toml" >/dev/null
say "drctl serve with $SERVICES services on :$PORT"
DRCTL_CONFIG=$DIR/bench.toml "$DRCTL" serve --log-level warn 2>"$DIR/bench-serve.log" &
SERVE_PID=$!
for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$PORT/api/v1/rpo-rto" -o "$DIR/rpo-rto.json" && \
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d['services'][0]['rpo']['exposure_s'] is not None else 1)" "$DIR/rpo-rto.json" && break
  sleep 1
done
BYTES=$(stat -c %s "$DIR/rpo-rto.json")
say "rpo-rto: $(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['services']))" "$DIR/rpo-rto.json") services, $BYTES bytes"

cat > "$DIR/pace.lua" <<LUA
-- Each connection waits ${DELAY_MS} ms after each answer: about ${RATE}
-- requests/s over ${CONNS} connections (less when answers are slow).
function delay() return ${DELAY_MS} end
LUA
mkdir -p "$HERE/results"
OUT=$HERE/results/load-$SERVICES.md
{
  echo "# API under load: $SERVICES services, about $RATE requests/s, $DURATION each"
  echo
  echo "\`bash bench/api/load.sh --services $SERVICES --rate $RATE --duration $DURATION\` on $(date -u +%Y-%m-%d), $(nproc) CPUs; drctl (release) and wrk on the same machine; /api/v1/rpo-rto is $BYTES bytes."
  echo
  echo "| endpoint | requests/s | p50 | p75 | p90 | p99 | max | errors |"
  echo "|---|---|---|---|---|---|---|---|"
} > "$OUT"
for path in /api/v1/rpo-rto /; do
  say "wrk $path"
  wrk -t 2 -c $CONNS -d "$DURATION" --latency -s "$DIR/pace.lua" "http://127.0.0.1:$PORT$path" > "$DIR/wrk.txt"
  cat "$DIR/wrk.txt" >&2
  python3 - "$DIR/wrk.txt" "$path" >> "$OUT" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
pct = dict(re.findall(r'^\s+(\d+)%\s+(\S+)$', t, re.M))
rps = re.search(r'Requests/sec:\s+(\S+)', t).group(1)
mx = re.search(r'Latency\s+\S+\s+\S+\s+(\S+)', t).group(1)
errs = re.search(r'Non-2xx or 3xx responses: (\d+)', t)
sock = re.search(r'Socket errors: (.*)', t)
err = (errs.group(1) if errs else "0") + (f" ({sock.group(1)})" if sock else "")
print(f"| `{sys.argv[2]}` | {float(rps):.0f} | {pct.get('50')} | {pct.get('75')} | {pct.get('90')} | {pct.get('99')} | {mx} | {err} |")
PY
done
cat "$OUT"
