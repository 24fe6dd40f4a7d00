#!/usr/bin/env bash
# Patroni side of the partition benchmark (see README.md).
#
#   bash bench/partition/patroni.sh [--config defaults|tuned] [--runs N] [--random K] [--seed S]
#                                   [--modes m1,m2] [--out FILE] [--dir DIR] [--keep]
#   bash bench/partition/patroni.sh --teardown [--config defaults|tuned]   # clean up a kept/crashed run
#
# As root. Starts drctl's lab exactly as drctl.sh does (`drctl lab up
# --detach`: the namespaces region-a, region-b, ctl, witness behind one
# router, and the three etcd members), pauses its shop workload, then runs a
# two-node Patroni 3.0.2 cluster of PostgreSQL 15 inside it: node `pga` in
# region-a's namespace, `pgb` in region-b's, on ports of their own (PostgreSQL
# 57532/57533, REST API 57538/57539), data directories under DIR/patroni,
# `etcd3: hosts:` = the lab's three etcd members, under its own key prefix
# (namespace /bench-partition/, scope patroni-CONFIG): drctl never sees or
# manages these clusters (its own lab services stay as they are and live
# through the same partitions).
#   --config defaults  ttl 30, loop_wait 10, retry_timeout 10 (Patroni's defaults)
#   --config tuned     ttl 10, loop_wait 2, retry_timeout 3 (drctl's lease time;
#                      loop_wait + 2 * retry_timeout <= ttl)
# Then the same passes as drctl.sh: a writer inside region-a straight to pga,
# a writer in the root namespace on the multi-host DSN (target_session_attrs=
# read-write), each mode N times (region-a: until pgb leads, at most 60 s),
# heal, healthy again, `patronictl switchover` back to pga where the leader
# moved; then the seeded random sequence. Results JSON (--out, default
# results/patroni-CONFIG.json) and a markdown table beside it. Everything is
# torn down at the end unless --keep.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CONF=defaults
RUNS=10
RANDOM_STEPS=30
SEED=20261207
MODES=
OUT=
KEEP=0
TEARDOWN_ONLY=0
DIR=
BASE_PORT=57432
API_PORT=7979
while [[ $# -gt 0 ]]; do
  case $1 in
    --config) CONF=$2; shift 2 ;;
    --config=*) CONF=${1#*=}; shift ;;
    --runs) RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --random) RANDOM_STEPS=$2; shift 2 ;;
    --random=*) RANDOM_STEPS=${1#*=}; shift ;;
    --seed) SEED=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --dir) DIR=$2; shift 2 ;;
    --dir=*) DIR=${1#*=}; shift ;;
    --base-port) BASE_PORT=$2; shift 2 ;;
    --api-port) API_PORT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --teardown) TEARDOWN_ONLY=1; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case $CONF in
  defaults) TTL=30; LOOP_WAIT=10; RETRY_TIMEOUT=10 ;;
  tuned) TTL=10; LOOP_WAIT=2; RETRY_TIMEOUT=3 ;;
  *) echo "--config is defaults or tuned" >&2; exit 2 ;;
esac
[[ $RUNS =~ ^[0-9]+$ ]] || { echo "--runs needs a non-negative integer" >&2; exit 2; }
[[ $RANDOM_STEPS =~ ^[0-9]+$ ]] || { echo "--random needs a non-negative integer" >&2; exit 2; }
OUT=${OUT:-$HERE/results/patroni-$CONF.json}
[[ $OUT = /* ]] || OUT=$PWD/$OUT
DIR=${DIR:-${LAB_DIR:-/tmp/drctl-bench-partition-patroni-$CONF}}
[[ $DIR = /* && $DIR != / ]] || { echo "--dir must be an absolute path other than /" >&2; exit 2; }
DIR=${DIR%/}

if [[ -z ${DRCTL:-} ]]; then
  if [[ -x $ROOT/target/release/drctl ]]; then DRCTL=$ROOT/target/release/drctl
  else DRCTL=$ROOT/target/debug/drctl; fi
fi
[[ -x $DRCTL ]] || { echo "no drctl binary at $DRCTL (set DRCTL)" >&2; exit 2; }

W=$DIR/bench
BASE=$DIR/patroni
PY=/usr/bin/python3
PG_BIN=/usr/lib/postgresql/15/bin
PEER_BENCH=${PEER_BENCH:-$ROOT/../shared/peer-bench}
[[ -f $PEER_BENCH/pg1.yml ]] || PEER_BENCH=/work/shared/peer-bench
SCOPE=patroni-$CONF
NODES=(pga pgb)
declare -A REGION=([pga]=region-a [pgb]=region-b)
declare -A PG_PORT=([pga]=57532 [pgb]=57533)
declare -A REST_PORT=([pga]=57538 [pgb]=57539)
# shellcheck source=common.sh
source "$HERE/common.sh"

looks_like_lab_dir() {
  local d=$1
  [[ ! -e $d ]] && return 0
  [[ -d $d ]] || return 1
  [[ -z $(ls -A "$d") ]] && return 0
  [[ -e $d/lab.json || -e $d/lab-up.log || -e $d/drctl.toml || -d $d/bench || -d $d/patroni ]]
}

stop_patroni() {
  local n pid pids=()
  # Patroni stops its PostgreSQL on SIGTERM; TERM both first, then wait.
  for n in "${NODES[@]}"; do
    pid=$(cat "$BASE/patroni-$n.pid" 2>/dev/null || true)
    if pid_ours "$pid" "$BASE/$n.yml"; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
  done
  ((${#pids[@]})) && wait_gone 60 "${pids[@]}"
  for n in "${NODES[@]}"; do
    pid=$(cat "$BASE/patroni-$n.pid" 2>/dev/null || true)
    pid_ours "$pid" "$BASE/$n.yml" && kill -KILL "$pid" 2>/dev/null
    pid=$(head -1 "$BASE/$n/postmaster.pid" 2>/dev/null || true)
    if pid_ours "$pid" "$BASE/$n"; then
      kill -INT "$pid" 2>/dev/null || true; wait_gone 20 "$pid"
      pid_ours "$pid" "$BASE/$n" && kill -KILL "$pid" 2>/dev/null
    fi
  done
  return 0
}

teardown() {
  stop_writers "$W"
  [[ -d $DIR ]] || return 0
  looks_like_lab_dir "$DIR" || die "$DIR does not look like a lab directory: not touching it"
  stop_patroni
  lab_down "$DIR"
  rm -rf "$DIR"
}

on_exit() {
  local rc=$?
  set +e
  stop_writers "$W"
  if (( rc != 0 )) && [[ -d $DIR ]]; then
    log "failed (exit $rc); last lines of the logs:"
    for f in "$BASE"/patroni-*.log "$W"/writer-*.err; do
      [[ -f $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  if [[ -d $BASE ]]; then mkdir -p "$W"; cp -a "$BASE"/*.log "$BASE"/*.yml "$W"/ 2>/dev/null; fi
  save_files "$DIR" "$W"
  if (( KEEP )); then
    log "kept: lab and Patroni in $DIR (tear down with: bash $0 --teardown --config $CONF)"
  else
    log "tearing down"; teardown; log "torn down"
  fi
}

[[ $EUID -eq 0 ]] || die "run as root (the lab's regions are network namespaces)"
if (( TEARDOWN_ONLY )); then teardown; log "torn down"; exit 0; fi
prerequisites
for p in patroni postgresql-15; do
  dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -q >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$p" >&2; }
done
[[ -x $PG_BIN/postgres ]] || die "$PG_BIN/postgres missing"

log "cleaning up any previous run in $DIR"
teardown
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting the lab in $DIR (base port $BASE_PORT, API port $API_PORT, namespaces)"
"$DRCTL" lab --dir "$DIR" up --detach --base-port "$BASE_PORT" --api-port "$API_PORT" --network namespaces >&2 \
  || die "drctl lab up failed (see $DIR/lab-up.log)"
"$DRCTL" lab --dir "$DIR" workload pause >&2 || die "drctl lab workload pause failed"
mkdir -p "$W" "$BASE" "$(dirname "$OUT")"
chown postgres:postgres "$BASE"; chmod 700 "$BASE"

# Node configs: shared/peer-bench/pg1.yml re-addressed into the lab's sites,
# without pgBackRest (no archiving), with the chosen timing.
"$DRCTL" lab --dir "$DIR" status -o json >"$W/lab-status.json"
"$PY" - "$PEER_BENCH/pg1.yml" "$W/lab-status.json" "$BASE" "$SCOPE" "$PG_BIN" "$TTL" "$LOOP_WAIT" \
    "$RETRY_TIMEOUT" "$CONF" "$W/patroni.json" <<'EOF'
import json, sys, yaml
src, status, base, scope, pg_bin, ttl, loop_wait, retry_timeout, conf, out = sys.argv[1:]
st = json.load(open(status))
sites = {s["site"]: s for s in st["network"]["sites"]}
net = st["network"]["network"]
etcd = [m["client_url"].split("//", 1)[1] for m in st["etcd"]]
ttl, loop_wait, retry_timeout = int(ttl), int(loop_wait), int(retry_timeout)
assert loop_wait + 2 * retry_timeout <= ttl, "Patroni needs loop_wait + 2*retry_timeout <= ttl"
nodes = []
for name, region, pg_port, api_port in (("pga", "region-a", 57532, 57538), ("pgb", "region-b", 57533, 57539)):
    c = yaml.safe_load(open(src))
    addr = sites[region]["address"]
    c["name"] = name
    c["scope"] = scope
    c["namespace"] = "/bench-partition/"
    c["restapi"] = {"listen": f"{addr}:{api_port}", "connect_address": f"{addr}:{api_port}"}
    c["etcd3"] = {"hosts": etcd}
    dcs = c["bootstrap"]["dcs"]
    dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"] = ttl, loop_wait, retry_timeout
    for k in ("archive_mode", "archive_timeout"):
        dcs["postgresql"]["parameters"].pop(k, None)
    pg = c["postgresql"]
    pg["listen"] = pg["connect_address"] = f"{addr}:{pg_port}"
    pg["data_dir"] = f"{base}/{name}"
    pg["bin_dir"] = pg_bin
    pg["pgpass"] = f"{base}/pgpass-{name}"
    pg["parameters"].pop("archive_command", None)
    pg["parameters"]["unix_socket_directories"] = f"{base}/sock-{name}"
    pg["pg_hba"] = ["local all all trust", f"host all all {net} md5", f"host replication replicator {net} md5"]
    rc = pg.get("recovery_conf", {})
    rc.pop("restore_command", None)
    if not rc:
        pg.pop("recovery_conf", None)
    yaml.safe_dump(c, open(f"{base}/{name}.yml", "w"), sort_keys=False)
    nodes.append({"name": name, "region": region, "addr": addr, "pg_port": pg_port, "api_port": api_port,
                  "yml": f"{base}/{name}.yml", "data_dir": f"{base}/{name}", "namespace": sites[region]["namespace"]})
json.dump({"config": conf, "scope": scope, "namespace": "/bench-partition/", "etcd3_hosts": etcd,
           "dcs": {"ttl": ttl, "loop_wait": loop_wait, "retry_timeout": retry_timeout}, "nodes": nodes},
          open(out, "w"), indent=2)
EOF
for n in "${NODES[@]}"; do mkdir -p "$BASE/sock-$n"; done
chown -R postgres:postgres "$BASE"

ns_of() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(next(n[sys.argv[2]] for n in d["nodes"] if n["name"]==sys.argv[3]))' "$W/patroni.json" "$1" "$2"; }
start_patroni() { # NODE: run as postgres inside the node's region namespace, pid in $BASE/patroni-NODE.pid
  local n=$1 ns
  ns=$(ns_of namespace "$n")
  (
    cd /
    exec env -u PGPASSWORD -u PGPASSFILE -u PGHOST -u PGPORT -u PGUSER \
      HOME=/var/lib/postgresql USER=postgres LOGNAME=postgres \
      ip netns exec "$ns" setpriv --reuid=postgres --regid=postgres --init-groups setsid /usr/bin/patroni "$BASE/$n.yml"
  ) >>"$BASE/patroni-$n.log" 2>&1 </dev/null &
  echo $! >"$BASE/patroni-$n.pid"
  disown $!
}
rest() { # NODE PATH -> HTTP code (asked inside the node's namespace)
  local n=$1
  ip netns exec "$(ns_of namespace "$n")" curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
    "http://$(ns_of addr "$n"):${REST_PORT[$n]}$2" 2>/dev/null || true
}

log "Patroni $SCOPE: ttl $TTL, loop_wait $LOOP_WAIT, retry_timeout $RETRY_TIMEOUT; etcd3 = the lab's three members"
log "starting pga in region-a (bootstraps the cluster)"
start_patroni pga
end=$((SECONDS + 120))
until [[ $(rest pga /primary) == 200 ]]; do (( SECONDS < end )) || die "pga did not become the leader"; sleep 0.5; done
log "starting pgb in region-b (replica)"
start_patroni pgb
end=$((SECONDS + 180))
until [[ $(rest pgb /replica) == 200 ]]; do (( SECONDS < end )) || die "pgb did not become a replica"; sleep 0.5; done
patronictl -c "$BASE/pga.yml" list >&2 || true

VERSIONS=$(versions_json "$DRCTL" "-")
log "=== Patroni ($CONF) pass: $RUNS runs per mode, random sequence of $RANDOM_STEPS (seed $SEED) ==="
rc=0
"$PY" "$HERE/bench.py" run --side patroni --label "patroni-$CONF" --drctl "$DRCTL" --lab-dir "$DIR" --work "$W" \
  --patroni "$W/patroni.json" --runs "$RUNS" --random "$RANDOM_STEPS" --seed "$SEED" ${MODES:+--modes "$MODES"} \
  ${HOLD:+--hold "$HOLD"} ${SETTLE:+--settle "$SETTLE"} --versions "$VERSIONS" --out "$OUT" --md "${OUT%.json}.md" || rc=$?
patronictl -c "$BASE/pga.yml" list >&2 || true
log "results: $OUT (exit $rc)"
exit "$rc"
