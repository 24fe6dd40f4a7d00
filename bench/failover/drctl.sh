#!/usr/bin/env bash
# drctl side of the side-by-side failover benchmark (see README.md).
#
#   bash bench/failover/drctl.sh [--runs N] [--out FILE] [--keep] [--dir DIR]
#                                [--base-port P] [--api-port P]
#                                [--network namespaces|loopback]
#   bash bench/failover/drctl.sh --teardown        # only clean up a kept/crashed run
#
# Starts drctl's two-region lab (`drctl lab up --detach`, shop workload paused)
# in a scratch directory (--network, passed to `lab up`: each region its own
# network namespace, or all on loopback), then with writer.py inserting every
# 50 ms into the hot service `orders` (resolving orders.shop.lab. against the
# lab's DNS server before every reconnect) measures the write outage of
#   (a) N switchovers  `drctl switchover orders --to OTHER --yes`, alternating
#                      regions; the old primary is made a standby again by
#                      the automatic rejoin that follows (`drctl rejoin` if
#                      none succeeded);
#   (b) N failovers    kill -9 of the primary's postmaster; the daemon fails
#                      over by itself (automatic failover of hot services);
#                      its guard then rejoins the killed region through the
#                      region's agent (`drctl rejoin` if it did not).
# Writes one JSON file (--out, default results/drctl.json) with per-run figures
# and p50/p95 per kind, and prints markdown tables on stdout (progress goes to
# stderr). The lab is torn down at the end unless --keep.
#
# The drctl binary: $DRCTL, else target/release/drctl, else target/debug/drctl
# (nothing is built). Knobs (environment): LAB_DIR (scratch lab dir,
# /tmp/drctl-bench-failover), HEAL_TIMEOUT, FAILOVER_TIMEOUT. The lab's logs
# and the per-run files are copied to LAB_DIR.last at the end (kept or not).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=10
OUT=$HERE/results/drctl.json
KEEP=0
TEARDOWN_ONLY=0
DIR=${LAB_DIR:-/tmp/drctl-bench-failover}
BASE_PORT=55432
API_PORT=7878
NETWORK=
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --out) OUT=$2; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --dir) DIR=$2; shift 2 ;;
    --dir=*) DIR=${1#*=}; shift ;;
    --base-port) BASE_PORT=$2; shift 2 ;;
    --api-port) API_PORT=$2; shift 2 ;;
    --network) NETWORK=$2; shift 2 ;;
    --network=*) NETWORK=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    --teardown) TEARDOWN_ONLY=1; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || { echo "--runs needs a positive integer" >&2; exit 2; }
[[ $OUT = /* ]] || OUT=$PWD/$OUT
[[ $DIR = /* && $DIR != / ]] || { echo "--dir must be an absolute path other than /" >&2; exit 2; }
DIR=${DIR%/}

if [[ -z ${DRCTL:-} ]]; then
  if [[ -x $ROOT/target/release/drctl ]]; then DRCTL=$ROOT/target/release/drctl
  else DRCTL=$ROOT/target/debug/drctl; fi
fi
[[ -x $DRCTL ]] || { echo "no drctl binary at $DRCTL (set DRCTL, or cargo build --release -p drctl)" >&2; exit 2; }
case $DRCTL in
  */target/release/*) BUILD=release ;;
  */target/debug/*) BUILD=debug ;;
  *) BUILD=unknown ;;
esac

SERVICE=orders
CFG=(--config "$DIR/drctl.toml")
W=$DIR/bench                 # the benchmark's own files, inside the lab dir
R=$W/runs
VENV=$HERE/.venv
PY=$VENV/bin/python
HELPER=$HERE/drctl_bench.py
# A run fails if the failover, the resumed writes or the healthy pair take longer.
FAILOVER_TIMEOUT=${FAILOVER_TIMEOUT:-60}
EVENT_TIMEOUT=60
HEAL_TIMEOUT=${HEAL_TIMEOUT:-120}
# Acknowledged writes required before an event, and after it on the new primary.
ACKS_BEFORE=40
ACKS_AFTER=40

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- processes --
# Only processes whose command line names our files are ever signalled.
pid_ours() { # PID PATTERN
  local pid=$1 pat=$2
  [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' </proc/"$pid"/cmdline | grep -qF -- "$pat"
}
wait_gone() { # TIMEOUT PID...
  local t=$1 pid; shift
  local end=$((SECONDS + t))
  for pid in "$@"; do
    while [[ -n $(tr -d '\0' </proc/"$pid"/cmdline 2>/dev/null) ]] && (( SECONDS < end )); do sleep 0.2; done
  done
}
looks_like_lab_dir() { # DIR: missing, empty, or written by lab up / this script
  local d=$1
  [[ ! -e $d ]] && return 0
  [[ -d $d ]] || return 1
  [[ -z $(ls -A "$d") ]] && return 0
  [[ -e $d/lab.json || -e $d/lab-up.log || -e $d/drctl.toml || -d $d/bench ]]
}

teardown() {
  local pid f
  if [[ -f $W/writer.pid ]]; then
    pid=$(cat "$W/writer.pid")
    if pid_ours "$pid" "$HERE/writer.py"; then kill -TERM "$pid" 2>/dev/null || true; wait_gone 5 "$pid"; fi
  fi
  [[ -d $DIR ]] || return 0
  looks_like_lab_dir "$DIR" || die "$DIR does not look like a lab directory: not touching it"
  if [[ -f $DIR/lab.json ]]; then
    "$DRCTL" lab --dir "$DIR" down >&2 || log "drctl lab down failed (exit $?)"
  fi
  # A postmaster left behind (lab process crashed): fast shutdown, then KILL.
  for f in "$DIR"/*/postmaster.pid; do
    [[ -r $f ]] || continue
    pid=$(head -1 "$f")
    if pid_ours "$pid" "$(dirname "$f")"; then
      log "stopping leftover postmaster $pid ($(dirname "$f"))"
      kill -INT "$pid" 2>/dev/null || true; wait_gone 20 "$pid"
      pid_ours "$pid" "$(dirname "$f")" && kill -KILL "$pid" 2>/dev/null
    fi
  done
  rm -rf "$DIR"
}

SAVED=$DIR.last
save_files() { # before teardown: keep the lab's logs and the run files next to the lab dir
  [[ -d $DIR ]] || return 0
  rm -rf "$SAVED"; mkdir -p "$SAVED"
  cp -a "$DIR"/*.log "$DIR"/lab.json "$DIR"/drctl.toml "$SAVED"/ 2>/dev/null || true
  [[ -d $W ]] && cp -a "$W" "$SAVED"/ 2>/dev/null || true
  log "logs (lab-up.log: the daemon's; orders-region-*.log: PostgreSQL's) and run files kept in $SAVED"
}

on_exit() {
  local rc=$?
  set +e
  if (( rc != 0 )) && [[ -d $DIR ]]; then
    log "failed (exit $rc); last lines of the logs:"
    for f in "$DIR/lab-up.log" "$DIR"/orders-region-*.log "$W/writer.err"; do
      [[ -f $f ]] && { echo "--- $f" >&2; tail -n 25 "$f" >&2; }
    done
  fi
  save_files
  if (( KEEP )); then
    log "kept: lab in $DIR (tear down with: bash $0 --teardown --dir $DIR)"
  else
    log "tearing down"; teardown; log "torn down"
  fi
}

if (( TEARDOWN_ONLY )); then
  teardown; log "torn down"; exit 0
fi

# -------------------------------------------------------------- prerequisites --
id postgres >/dev/null 2>&1 || die "no postgres user (the lab runs PostgreSQL as postgres)"
if ! "$PY" -c 'import psycopg, dns.resolver' 2>/dev/null; then
  log "creating $VENV (psycopg 3, dnspython)"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    dpkg -s python3-venv >/dev/null 2>&1 || { apt-get update -q >&2; apt-get install -y -q python3-venv >&2; }
    rm -rf "$VENV"; /usr/bin/python3 -m venv "$VENV"
  fi
  "$PY" -m pip install -q 'psycopg[binary]>=3.1' 'dnspython>=2.3' >&2
fi

# ------------------------------------------------------------------ set up --
log "drctl: $DRCTL ($("$DRCTL" --version), $BUILD build)"
log "cleaning up any previous run in $DIR"
teardown
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting the lab in $DIR (base port $BASE_PORT, API port $API_PORT)"
"$DRCTL" lab --dir "$DIR" up --detach --base-port "$BASE_PORT" --api-port "$API_PORT" \
  ${NETWORK:+--network "$NETWORK"} >&2 \
  || die "drctl lab up failed (see $DIR/lab-up.log)"
"$DRCTL" lab --dir "$DIR" workload pause >&2 || die "drctl lab workload pause failed"
mkdir -p "$R"

declare -A PG_PORT PG_HOST DATA_DIR FRONT
REGIONS=()
eval "$("$PY" "$HELPER" labinfo "$DIR" "$SERVICE")"
((${#REGIONS[@]} == 2)) || die "expected 2 regions of $SERVICE, got: ${REGIONS[*]}"
COOLDOWN_S=$("$PY" "$HELPER" duration "${COOLDOWN:-15m}")
PROBE_S=$("$PY" "$HELPER" duration "${PROBE_INTERVAL:-1s}")
other_of() { [[ $1 == "${REGIONS[0]}" ]] && echo "${REGIONS[1]}" || echo "${REGIONS[0]}"; }
log "lab up: DNS $DNS_SERVER ($DNS_RECORD), fronts ${FRONT[${REGIONS[0]}]} / ${FRONT[${REGIONS[1]}]}, cooldown ${COOLDOWN:-?}"

# ------------------------------------------------------------------ helpers --
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.3f", b-a}'; }
ops_json() { "$DRCTL" operations list -o json "${CFG[@]}" 2>>"$W/drctl.err"; }

# Healthy: the daemon's sample (newer than SINCE) shows a primary and its
# standby streaming with no lag. Sets HP (primary) and HS (standby).
HP=- HS=-
wait_healthy() { # SINCE_EPOCH TIMEOUT
  local end=$((SECONDS + $2)) line st rest
  while :; do
    line=$("$DRCTL" status -o json "${CFG[@]}" 2>>"$W/drctl.err" | "$PY" "$HELPER" health "$SERVICE" "$1" || true)
    read -r HP HS st rest <<<"$line"
    [[ $st == ok ]] && return 0
    (( SECONDS < end )) || { log "not healthy after $2 s: $line"; return 1; }
    sleep 0.5
  done
}

progress() { cat "$W/writer.progress" 2>/dev/null || echo "0 0 -1 -"; }
acked() { local a _; read -r a _ < <(progress); echo "${a:-0}"; }
start_writer() { # LABEL
  rm -f "$W/writer.progress" "$W/writer.out" "$W/acked.txt"
  "$PY" "$HERE/writer.py" --dns-record "$DNS_RECORD" --dns-server "$DNS_SERVER" \
    --port "$FRONT_PORT" --dbname "$DBNAME" --user postgres --seconds 0 --label "$1" \
    --acked-file "$W/acked.txt" --progress-file "$W/writer.progress" --trace-file "$R/$1.trace" \
    >"$W/writer.out" 2>>"$W/writer.err" &
  echo $! >"$W/writer.pid"
}
wait_acks() { # N TIMEOUT [SERVER]: until the writer has acked >= N in total (the last on SERVER)
  local end=$((SECONDS + $2)) a _m _s srv
  while :; do
    read -r a _m _s srv < <(progress)
    (( ${a:-0} >= $1 )) && [[ -z ${3:-} || $srv == "$3" ]] && return 0
    (( SECONDS < end )) || return 1
    sleep 0.1
  done
}
stop_writer() { # LABEL; not in $(...): wait needs the writer to be our child
  local pid; pid=$(cat "$W/writer.pid")
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || true
  rm -f "$W/writer.pid"
  [[ -s $W/writer.out ]] || die "writer printed no result"
  cp "$W/writer.out" "$R/$1.writer.json"; cp "$W/acked.txt" "$R/$1.acked"
}
lost_acked() { "$PY" "$HELPER" lost "$W/acked.txt" "${PG_HOST[$1]}" "${PG_PORT[$1]}" "$DBNAME" "$R/$2.lost"; }
show_op() { # ID FILE
  "$DRCTL" operations show "$1" -o json "${CFG[@]}" >"$2" 2>>"$W/drctl.err" || die "drctl operations show $1 failed"
}
REJOIN_S=0
rejoin() { # REGION LABEL
  local t=$EPOCHREALTIME f=$R/$2.rejoin.json st
  if ! "$DRCTL" rejoin "$SERVICE" --region "$1" --yes -o json "${CFG[@]}" >"$f" 2>"$R/$2.rejoin.err"; then
    cat "$f" "$R/$2.rejoin.err" >&2
    die "drctl rejoin $SERVICE --region $1 failed ($2)"
  fi
  REJOIN_S=$(since "$t")
  st=$("$PY" "$HELPER" field operation.status <"$f")
  [[ $st == succeeded ]] || { cat "$f" >&2; die "rejoin of $1 ended $st ($2)"; }
}
RUNS_FILE=$R/runs.jsonl
: >"$RUNS_FILE"
record() { # KIND RUN FROM TO LABEL OPFILE LOST EXTRA_JSON
  "$PY" "$HELPER" record "$1" "$2" "$3" "$4" "$R/$5.writer.json" "$6" "$R/$5.rejoin.json" "$7" \
    "${FRONT[$4]}" "$8" >>"$RUNS_FILE"
}
last_line() { "$PY" -c '
import json, sys
r = json.loads(sys.stdin.read().splitlines()[-1]); o = r["operation"]
print("write outage %s s, lost acked %s, drctl rto %s ms (from %s), orchestrated %s ms, rejoin %s"
      % (r["outage_s"], r["lost_acked"], o["rto_ms"], o["rto_from"], o["orchestrated_ms"], r["rejoin"].get("method")))' <"$RUNS_FILE"; }

VERSIONS_JSON=$("$PY" - "$("$DRCTL" --version)" "$("$PG_BIN/postgres" --version)" <<'EOF'
import json, os, platform, sys, psycopg, dns.version
print(json.dumps({
  "drctl": sys.argv[1].split()[-1],
  "postgresql": sys.argv[2].replace("postgres (PostgreSQL) ", ""),
  "psycopg": psycopg.__version__, "libpq": psycopg.pq.version(), "dnspython": dns.version.version,
  "python": platform.python_version(), "kernel": platform.release(), "cpus": os.cpu_count(),
}))
EOF
)
META_JSON=$("$PY" - "$VERSIONS_JSON" "$DRCTL" "$BUILD" "$PROBE_INTERVAL" "$COOLDOWN" "$DNS_RECORD" "$DNS_SERVER" "$FRONT_PORT" <<'EOF'
import json, sys
v, binary, build, probe, cooldown, rec, srv, port = sys.argv[1:]
print(json.dumps({
  "versions": json.loads(v), "drctl_binary": binary, "drctl_build": build,
  "lab": {"service": "orders (hot)", "regions": 2, "replication": "asynchronous streaming through the lab's region link",
          "dns_record": rec, "dns_server": srv, "front_port": int(port), "record_ttl_s": 5,
          "client": "writer.py in DNS mode: re-resolves before every reconnect, target_session_attrs=read-write"},
  "automatic_failover": {"probe_interval": probe, "min_probes": 3, "min_down": "3s (default)",
                         "also_requires": "the standby's WAL receiver disconnected", "cooldown": cooldown},
}))
EOF
)

# ------------------------------------------------------------ switchovers --
LAST_CHANGE=$EPOCHREALTIME
log "=== $RUNS switchovers ==="
for i in $(seq 1 "$RUNS"); do
  label=switchover-$i
  wait_healthy "$LAST_CHANGE" "$HEAL_TIMEOUT" || die "pair not healthy before $label"
  from=$HP; to=$HS
  start_writer "$label"
  wait_acks "$ACKS_BEFORE" 30 "${FRONT[$from]}" || die "writer got no acks before $label ($(progress))"
  t0=$EPOCHREALTIME
  if ! "$DRCTL" switchover "$SERVICE" --to "$to" --yes -o json "${CFG[@]}" >"$R/$label.json" 2>"$R/$label.err"; then
    cat "$R/$label.json" "$R/$label.err" >&2
    die "drctl switchover $SERVICE --to $to failed ($label)"
  fi
  cmd_s=$(since "$t0")
  st=$("$PY" "$HELPER" field operation.status <"$R/$label.json")
  [[ $st == succeeded ]] || { cat "$R/$label.json" >&2; die "switchover ended $st ($label)"; }
  opid=$("$PY" "$HELPER" field operation.id <"$R/$label.json")
  base=$(acked)
  wait_acks $((base + ACKS_AFTER)) "$EVENT_TIMEOUT" "${FRONT[$to]}" \
    || die "writes did not resume on $to after $label ($(progress))"
  stop_writer "$label"
  lost=$(lost_acked "$to" "$label")
  show_op "$opid" "$R/$label.op.json"
  # rejoin = "auto": the switchover command already made the old primary a
  # standby again (its own journaled operation); only without one is it
  # rejoined here.
  rjid=$("$PY" "$HELPER" field operation.rejoin.id <"$R/$label.json")
  rjst=$("$PY" "$HELPER" field operation.rejoin.status <"$R/$label.json")
  if [[ -n $rjid && $rjst == succeeded ]]; then
    REJOIN_S=0; show_op "$rjid" "$R/$label.rejoin.json"
  else
    log "no automatic rejoin after $label ($rjst): drctl rejoin"
    rejoin "$from" "$label"
  fi
  LAST_CHANGE=$EPOCHREALTIME
  record switchover "$i" "$from" "$to" "$label" "$R/$label.op.json" "$lost" \
    "{\"command_s\": $cmd_s, \"rejoin_wall_s\": $REJOIN_S}"
  log "switchover $i/$RUNS $from -> $to: $(last_line) (${REJOIN_S}s)"
done

# ------------------------------------------------------------- kill -9 runs --
log "=== $RUNS failovers: kill -9 of the primary's postmaster, automatic failover ==="
for i in $(seq 1 "$RUNS"); do
  label=kill9-$i
  wait_healthy "$LAST_CHANGE" "$HEAL_TIMEOUT" || die "pair not healthy before $label"
  from=$HP; to=$HS
  # The daemon holds a second automatic failover of the cluster for the
  # cooldown after the last one: start only once it has passed.
  last_end=$(ops_json | "$PY" "$HELPER" last_auto_end)
  wait_s=$(awk -v e="$last_end" -v c="$COOLDOWN_S" -v now="$EPOCHREALTIME" 'BEGIN{w=e+c+1.5-now; printf "%.1f", (w>0?w:0)}')
  if [[ $wait_s != 0.0 ]]; then log "waiting ${wait_s}s for the automatic-failover cooldown"; sleep "$wait_s"; fi
  pmpid=$(head -1 "${DATA_DIR[$from]}/postmaster.pid" 2>/dev/null || true)
  pid_ours "$pmpid" "${DATA_DIR[$from]}" || die "postmaster pid '$pmpid' of $from not found"
  ops_json | "$PY" "$HELPER" opids >"$R/$label.ids-before"
  start_writer "$label"
  wait_acks "$ACKS_BEFORE" 30 "${FRONT[$from]}" || die "writer got no acks before $label ($(progress))"
  # Kill at a random point of the daemon's probe interval. Otherwise this
  # loop's own rhythm sets the time from the kill to the first failed
  # probe (the cooldown wait counts from the last failover, which ended a
  # fixed time after a probe), and the p50 outage depends on that phase,
  # not on drctl: 10 runs gave 3.36 s or 4.08 s with the same engine times.
  sleep "$(awk -v r="$RANDOM" -v p="$PROBE_S" 'BEGIN{printf "%.3f", r / 32768 * p}')"
  t_kill=$EPOCHREALTIME
  kill -KILL "$pmpid"
  end=$((SECONDS + FAILOVER_TIMEOUT)); opid=; st=
  while :; do
    read -r opid kind st < <(ops_json | "$PY" "$HELPER" newop "$R/$label.ids-before" failover; echo) || true
    case ${st:-} in
      succeeded) break ;;
      failed|aborted|cancelled|canceled|stopped|refused)
        "$DRCTL" operations show "$opid" -o json "${CFG[@]}" >&2 || true
        die "the automatic failover $opid ended $st ($label)" ;;
    esac
    if (( SECONDS >= end )); then
      "$DRCTL" status "${CFG[@]}" >&2 || true
      "$DRCTL" operations list "${CFG[@]}" >&2 || true
      die "no succeeded automatic failover within ${FAILOVER_TIMEOUT}s of the kill ($label; newest new operation: ${opid:-none} ${st:-})"
    fi
    sleep 0.25
  done
  seen_s=$(since "$t_kill")
  base=$(acked)
  wait_acks $((base + ACKS_AFTER)) "$EVENT_TIMEOUT" "${FRONT[$to]}" \
    || die "writes did not resume on $to after $label ($(progress))"
  stop_writer "$label"
  lost=$(lost_acked "$to" "$label")
  show_op "$opid" "$R/$label.op.json"
  pm_gone=true; pid_ours "$pmpid" "${DATA_DIR[$from]}" && pm_gone=false
  # rejoin = "auto": the daemon's guard rejoins the old primary once its
  # agent answers (here at once); wait for that operation, and rejoin by
  # hand only if none succeeds in time.
  t_rj=$EPOCHREALTIME; rjid=; rjst=; end=$((SECONDS + 60))
  while (( SECONDS < end )); do
    read -r rjid _ rjst < <(ops_json | "$PY" "$HELPER" newop "$R/$label.ids-before" rejoin; echo) || true
    [[ ${rjst:-} == succeeded ]] && break
    sleep 0.25
  done
  if [[ ${rjst:-} == succeeded ]]; then
    REJOIN_S=$(since "$t_rj"); show_op "$rjid" "$R/$label.rejoin.json"
  else
    log "no automatic rejoin after $label (${rjst:-none}): drctl rejoin"
    rejoin "$from" "$label"
  fi
  LAST_CHANGE=$EPOCHREALTIME
  record kill9 "$i" "$from" "$to" "$label" "$R/$label.op.json" "$lost" \
    "{\"t_kill\": $t_kill, \"failover_seen_s\": $seen_s, \"killed_postmaster_gone_before_rejoin\": $pm_gone, \"rejoin_wall_s\": $REJOIN_S}"
  log "kill -9 run $i/$RUNS $from -> $to: $(last_line) (${REJOIN_S}s)"
done

mkdir -p "$(dirname "$OUT")"
"$PY" "$HELPER" summarize "$RUNS_FILE" "$OUT" "$RUNS" "$META_JSON"
log "results: $OUT"
