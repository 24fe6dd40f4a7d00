#!/usr/bin/env bash
# Patroni side of the side-by-side failover benchmark (see README.md).
#
#   bash bench/failover/patroni.sh [--runs N] [--out FILE] [--keep]
#   bash bench/failover/patroni.sh --setup-only    # only set up the cluster, keep it
#   bash bench/failover/patroni.sh --teardown      # only clean up a kept/crashed run
#
# As root on Debian 12. Sets up, in a scratch directory, one etcd and a
# two-node Patroni cluster of PostgreSQL 15 on loopback, then with writer.py
# inserting every 50 ms through a multi-host DSN (target_session_attrs=read-write)
# measures the write outage of
#   (a) N switchovers   `patronictl switchover --force`, alternating the leader;
#   (b) N failovers     kill -9 of Patroni and of the postmaster on the leader;
#                       the old node is then restarted (it rejoins via pg_rewind)
#                       and the cluster is healthy again before the next run.
# Writes one JSON file (--out) with per-run figures and p50/p95 per kind, and
# prints a markdown table on stdout (progress goes to stderr). Everything is
# torn down at the end unless --keep; a crashed previous run is cleaned up first.
#
# Knobs (environment): BASE (scratch dir, /var/lib/postgresql/bench-failover),
# PEER_BENCH (dir with pg1.yml/pg2.yml, ../shared/peer-bench of the repo).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUNS=10
OUT=$HERE/results/patroni.json
KEEP=0
TEARDOWN_ONLY=0
SETUP_ONLY=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --out) OUT=$2; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    --teardown) TEARDOWN_ONLY=1; shift ;;
    --setup-only) SETUP_ONLY=1; KEEP=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || { echo "--runs needs a positive integer" >&2; exit 2; }
[[ $OUT = /* ]] || OUT=$PWD/$OUT

BASE=${BASE:-/var/lib/postgresql/bench-failover}
PEER_BENCH=${PEER_BENCH:-$HERE/../../../shared/peer-bench}
[[ -f $PEER_BENCH/pg1.yml ]] || PEER_BENCH=/work/shared/peer-bench
PG_BIN=/usr/lib/postgresql/15/bin
SCOPE=bench-failover
NODES=(pg1 pg2)
declare -A PG_PORT=([pg1]=5533 [pg2]=5534)
declare -A API_PORT=([pg1]=8018 [pg2]=8019)
ETCD_CLIENT=2389
ETCD_PEER=2390
DSN="host=127.0.0.1,127.0.0.1 port=${PG_PORT[pg1]},${PG_PORT[pg2]} dbname=postgres user=postgres password=postgres target_session_attrs=read-write connect_timeout=1"
VENV=$HERE/.venv
PY=$VENV/bin/python
# A run fails if the new leader or the resumed writes take longer than this.
EVENT_TIMEOUT=120
HEAL_TIMEOUT=${HEAL_TIMEOUT:-240}
# Acknowledged writes required before an event, and after the new leader is seen.
ACKS_BEFORE=40
ACKS_AFTER=40

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- processes --
# Only processes whose command line names our scratch dir are ever signalled.
pid_ours() { # PID PATTERN
  local pid=$1 pat=$2
  [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' </proc/"$pid"/cmdline | grep -qF -- "$pat"
}
wait_gone() { # TIMEOUT PID...
  local t=$1 pid; shift
  local end=$((SECONDS + t))
  for pid in "$@"; do
    # a zombie (not reaped by whoever inherited it) has an empty cmdline: gone
    while [[ -n $(tr -d '\0' </proc/"$pid"/cmdline 2>/dev/null) ]] && (( SECONDS < end )); do sleep 0.2; done
  done
}
stop_pid() { # PID PATTERN [TIMEOUT]: TERM, wait, then KILL
  local pid=$1 pat=$2 t=${3:-30}
  pid_ours "$pid" "$pat" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$t" "$pid"
  if pid_ours "$pid" "$pat"; then kill -KILL "$pid" 2>/dev/null || true; wait_gone 5 "$pid"; fi
}
postmaster_pid() { # NODE
  local f=$BASE/$1/postmaster.pid
  [[ -r $f ]] && head -1 "$f" || true
}
start_bg() { # NAME COMMAND... : run as postgres in its own session, pid in $BASE/NAME.pid
  # setpriv and setsid exec in place: $! is the command's own pid, and this
  # script is its parent (reaps it). No PG* variables leak into Patroni.
  local name=$1; shift
  (
    cd /
    exec env -u PGPASSWORD -u PGPASSFILE -u PGHOST -u PGPORT -u PGUSER \
      HOME=/var/lib/postgresql USER=postgres LOGNAME=postgres \
      setpriv --reuid=postgres --regid=postgres --init-groups setsid "$@"
  ) >>"$BASE/$name.log" 2>&1 </dev/null &
  echo $! >"$BASE/$name.pid"
  disown $!   # still reaped by bash, but no "Killed" job notices
}

teardown() {
  [[ -d $BASE ]] || return 0
  local n pid pids=()
  if [[ -f $BASE/writer.pid ]]; then stop_pid "$(cat "$BASE/writer.pid")" "$HERE/writer.py" 5; fi
  # Patroni stops its PostgreSQL on SIGTERM; TERM both first, then wait.
  for n in "${NODES[@]}"; do
    pid=$(cat "$BASE/patroni-$n.pid" 2>/dev/null || true)
    if pid_ours "$pid" "$BASE/$n.yml"; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
  done
  ((${#pids[@]})) && wait_gone 60 "${pids[@]}"
  for n in "${NODES[@]}"; do
    pid=$(cat "$BASE/patroni-$n.pid" 2>/dev/null || true)
    pid_ours "$pid" "$BASE/$n.yml" && kill -KILL "$pid" 2>/dev/null
    # A postmaster left behind (Patroni killed, or crash): fast shutdown, then KILL.
    pid=$(postmaster_pid "$n")
    if pid_ours "$pid" "$BASE/$n"; then
      kill -INT "$pid" 2>/dev/null || true; wait_gone 20 "$pid"
      pid_ours "$pid" "$BASE/$n" && kill -KILL "$pid" 2>/dev/null
    fi
    # SysV segment of a killed postmaster (line 7 of postmaster.pid: key id).
    if [[ -r $BASE/$n/postmaster.pid ]]; then
      local shm
      shm=$(sed -n 7p "$BASE/$n/postmaster.pid" | awk '{print $2}')
      [[ $shm =~ ^[0-9]+$ ]] && ipcrm -m "$shm" 2>/dev/null || true
    fi
  done
  if [[ -f $BASE/etcd.pid ]]; then stop_pid "$(cat "$BASE/etcd.pid")" "$BASE/etcd" 20; fi
  rm -rf "$BASE"
}

on_exit() {
  local rc=$?
  if (( rc != 0 )) && [[ -d $BASE ]]; then
    log "failed (exit $rc); last lines of the logs:"
    for f in "$BASE"/patroni-*.log "$BASE"/etcd.log "$BASE"/writer.err; do
      [[ -f $f ]] && { echo "--- $f" >&2; tail -n 25 "$f" >&2; }
    done
  fi
  if (( KEEP )); then
    log "kept: $BASE (tear down with: bash $0 --teardown)"
  else
    log "tearing down"; teardown; log "torn down"
  fi
}

if (( TEARDOWN_ONLY )); then
  [[ $EUID -eq 0 ]] || die "run as root"
  teardown; log "torn down"; exit 0
fi

# -------------------------------------------------------------- prerequisites --
[[ $EUID -eq 0 ]] || die "run as root"
id postgres >/dev/null 2>&1 || die "no postgres user (install postgresql-15)"

need=()
for p in patroni etcd-server postgresql-15 postgresql-client-15 curl python3-yaml; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi
[[ -x $PG_BIN/postgres ]] || die "$PG_BIN/postgres missing"

if ! "$PY" -c 'import psycopg, dns.resolver' 2>/dev/null; then
  log "creating $VENV (psycopg 3, dnspython)"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    dpkg -s python3-venv >/dev/null 2>&1 || { apt-get update -q >&2; apt-get install -y -q python3-venv >&2; }
    rm -rf "$VENV"; /usr/bin/python3 -m venv "$VENV"
  fi
  "$PY" -m pip install -q 'psycopg[binary]>=3.1' 'dnspython>=2.3' >&2
fi

# ------------------------------------------------------------------ set up --
log "cleaning up any previous run in $BASE"
teardown
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for port in "${PG_PORT[@]}" "${API_PORT[@]}" $ETCD_CLIENT $ETCD_PEER; do
  if ss -Hltn "sport = :$port" | grep -q .; then die "port $port is in use"; fi
done

mkdir -p "$BASE/sock" "$BASE/etcd" "$BASE/runs"
chown -R postgres:postgres "$BASE"
chmod 700 "$BASE"

# Patroni configs: the peer-bench files, re-addressed into $BASE, without pgBackRest.
for n in "${NODES[@]}"; do
  /usr/bin/python3 - "$PEER_BENCH/$n.yml" "$BASE/$n.yml" "$n" "$SCOPE" "$BASE" \
      "${PG_PORT[$n]}" "${API_PORT[$n]}" "$ETCD_CLIENT" "$PG_BIN" <<'EOF'
import sys, yaml
src, dst, name, scope, base, pg_port, api_port, etcd_port, pg_bin = sys.argv[1:]
c = yaml.safe_load(open(src))
assert c["name"] == name, (c["name"], name)
c["scope"] = scope
c["restapi"] = {"listen": f"127.0.0.1:{api_port}", "connect_address": f"127.0.0.1:{api_port}"}
c["etcd3"] = {"hosts": f"127.0.0.1:{etcd_port}"}
dcs = c["bootstrap"]["dcs"]
# Patroni 3.0.2 defaults, as in the peer files: checked, not changed.
assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (30, 10, 10), dcs
for k in ("archive_mode", "archive_timeout"):   # no pgBackRest here: no archiving
    dcs["postgresql"]["parameters"].pop(k, None)
pg = c["postgresql"]
pg["listen"] = pg["connect_address"] = f"127.0.0.1:{pg_port}"
pg["data_dir"] = f"{base}/{name}"
pg["bin_dir"] = pg_bin
pg["pgpass"] = f"{base}/pgpass-{name}"
pg["parameters"].pop("archive_command", None)
pg["parameters"]["unix_socket_directories"] = f"{base}/sock"
rc = pg.get("recovery_conf", {})
rc.pop("restore_command", None)
if not rc:
    pg.pop("recovery_conf", None)
yaml.safe_dump(c, open(dst, "w"), sort_keys=False)
EOF
  chown postgres:postgres "$BASE/$n.yml"
done

log "starting etcd on 127.0.0.1:$ETCD_CLIENT"
start_bg etcd /usr/bin/etcd --name bf --data-dir "$BASE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "bf=http://127.0.0.1:$ETCD_PEER" --initial-cluster-state new --initial-cluster-token "$SCOPE"
for _ in $(seq 100); do
  curl -fsS --max-time 1 "http://127.0.0.1:$ETCD_CLIENT/health" 2>/dev/null | grep -q '"health":"true"' && break
  sleep 0.2
done
curl -fsS --max-time 1 "http://127.0.0.1:$ETCD_CLIENT/health" | grep -q '"health":"true"' || die "etcd not healthy"

start_patroni() { start_bg "patroni-$1" /usr/bin/patroni "$BASE/$1.yml"; }
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" 2>/dev/null || true; }
is_primary() { [[ $(http_code "http://127.0.0.1:${API_PORT[$1]}/primary") == 200 ]]; }
is_replica() { [[ $(http_code "http://127.0.0.1:${API_PORT[$1]}/replica") == 200 ]]; }
other_of() { [[ $1 == pg1 ]] && echo pg2 || echo pg1; }
sql() { # NODE SQL
  # (not exported: Patroni must not inherit PGPASSWORD, it would override its pgpass file)
  PGPASSWORD=postgres PGCONNECT_TIMEOUT=2 psql -h 127.0.0.1 -p "${PG_PORT[$1]}" -U postgres -d postgres -Atqc "$2" 2>/dev/null
}
current_leader() {
  local n
  for n in "${NODES[@]}"; do is_primary "$n" && { echo "$n"; return 0; }; done
  return 1
}
# Healthy: one leader, the other a running replica streaming from it, caught up.
healthy() {
  local l r
  l=$(current_leader) || return 1
  r=$(other_of "$l")
  is_replica "$r" || return 1
  [[ $(sql "$l" "SELECT count(*) FROM pg_stat_replication WHERE state='streaming' AND application_name='$r' AND replay_lsn = pg_current_wal_lsn()") == 1 ]]
}
wait_healthy() { # TIMEOUT -> seconds waited on stdout
  local t0=$EPOCHREALTIME end=$((SECONDS + $1))
  until healthy; do
    (( SECONDS < end )) || return 1
    sleep 0.5
  done
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}'
}

log "starting Patroni pg1 (bootstraps the cluster)"
start_patroni pg1
end=$((SECONDS + 120))
until is_primary pg1; do (( SECONDS < end )) || die "pg1 did not become primary"; sleep 0.5; done
log "starting Patroni pg2 (replica)"
start_patroni pg2
wait_healthy "$HEAL_TIMEOUT" >/dev/null || die "cluster not healthy"
log "cluster healthy: leader $(current_leader)"
patronictl -c "$BASE/pg1.yml" list >&2
if (( SETUP_ONLY )); then
  log "DSN: $DSN"
  exit 0
fi

# ------------------------------------------------------------------ writer --
progress() { # -> "ACKED MAX_GAP SINCE_LAST SERVER"
  cat "$BASE/writer.progress" 2>/dev/null || echo "0 0 -1 -"
}
acked() { local a _; read -r a _ < <(progress); echo "${a:-0}"; }
start_writer() { # LABEL
  rm -f "$BASE/writer.progress" "$BASE/writer.out" "$BASE/acked.txt"
  "$PY" "$HERE/writer.py" --dsn "$DSN" --seconds 0 --label "$1" \
    --acked-file "$BASE/acked.txt" --progress-file "$BASE/writer.progress" \
    >"$BASE/writer.out" 2>>"$BASE/writer.err" &
  echo $! >"$BASE/writer.pid"
}
wait_acks() { # N TIMEOUT: until the writer has acked >= N in total
  local end=$((SECONDS + $2))
  until (( $(acked) >= $1 )); do
    (( SECONDS < end )) || return 1
    sleep 0.1
  done
}
stop_writer() { # not in $(...): wait needs the writer to be our child
  local pid; pid=$(cat "$BASE/writer.pid")
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || true
  rm -f "$BASE/writer.pid"
  [[ -s $BASE/writer.out ]] || die "writer printed no result"
}
lost_acked() { # NODE: acknowledged ids missing on NODE (the leader)
  "$PY" - "$BASE/acked.txt" "${PG_PORT[$1]}" <<'EOF'
import sys, psycopg
ids = [int(x) for x in open(sys.argv[1]) if x.strip()]
with psycopg.connect(host="127.0.0.1", port=sys.argv[2], user="postgres", password="postgres",
                     dbname="postgres", connect_timeout=2) as c:
    n = c.execute("SELECT count(*) FROM unnest(%s::bigint[]) a(id) "
                  "WHERE NOT EXISTS (SELECT 1 FROM bench_writes b WHERE b.id = a.id)", [ids]).fetchone()[0]
print(n)
EOF
}
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}'; }

RUNS_FILE=$BASE/runs/runs.jsonl
record() { # KIND RUN FROM TO WRITER_JSON LOST EXTRA_JSON
  "$PY" - "$@" >>"$RUNS_FILE" <<'EOF'
import json, sys
kind, run, frm, to, wj, lost, extra = sys.argv[1:]
w = json.loads(wj)
to_port = {"pg1": "5533", "pg2": "5534"}[to]
r = {"kind": kind, "run": int(run), "from": frm, "to": to,
     "outage_s": w["max_gap_s"], "acked": w["acked"], "lost_acked": int(lost),
     "errors": w["errors"], "connects": w["connects"],
     "writes_moved_to_new_leader": bool(w["server_changes"]) and w["server_changes"][-1][1].endswith(":" + to_port),
     "writer": w}
r.update(json.loads(extra))
print(json.dumps(r))
EOF
}

summarize() { # -> writes $OUT, prints the markdown table
  mkdir -p "$(dirname "$OUT")"
  "$PY" - "$RUNS_FILE" "$OUT" "$RUNS" "$VERSIONS_JSON" <<'EOF'
import json, sys, time
runs_file, out, n, versions = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
runs = [json.loads(l) for l in open(runs_file)]

def pct(xs, p):  # linear interpolation between closest ranks (numpy's default)
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return round(xs[f] + (xs[c] - xs[f]) * (k - f), 3)

res = {"tool": "patroni", "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
       "outage_definition": "longest gap (s) between two consecutive acknowledged inserts of a "
                            "client inserting one row every 50 ms (autocommit) through a libpq "
                            "multi-host DSN with target_session_attrs=read-write",
       "runs_requested": n, "versions": versions,
       "patroni_settings": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10,
                            "maximum_lag_on_failover": 1048576, "use_pg_rewind": True,
                            "synchronous_mode": False, "watchdog": False}}
labels = {"switchover": "switchover (patronictl switchover --force)",
          "kill9": "kill -9 Patroni + postmaster on the leader"}
for kind in ("switchover", "kill9"):
    rs = [r for r in runs if r["kind"] == kind]
    xs = [r["outage_s"] for r in rs if r["outage_s"] is not None]
    res[kind] = {"description": labels[kind], "n": len(rs),
                 "p50_s": pct(xs, 50), "p95_s": pct(xs, 95),
                 "min_s": min(xs) if xs else None, "max_s": max(xs) if xs else None,
                 "mean_s": round(sum(xs) / len(xs), 3) if xs else None,
                 "lost_acked_total": sum(r["lost_acked"] for r in rs),
                 "outages_s": xs, "runs": rs}
json.dump(res, open(out, "w"), indent=2)
print("| Patroni 3.0.2, 2 nodes, loopback | runs | write outage p50 | p95 | min | max | acked writes lost |")
print("|---|---|---|---|---|---|---|")
for kind in ("switchover", "kill9"):
    k = res[kind]
    if k["n"]:
        print(f"| {labels[kind]} | {k['n']} | {k['p50_s']:.2f} s | {k['p95_s']:.2f} s | "
              f"{k['min_s']:.2f} s | {k['max_s']:.2f} s | {k['lost_acked_total']} |")
EOF
}

VERSIONS_JSON=$("$PY" - <<EOF
import json, platform, psycopg, dns.version
print(json.dumps({
  "patroni": "$(dpkg-query -W -f='${Version}' patroni)",
  "etcd": "$(dpkg-query -W -f='${Version}' etcd-server)",
  "postgresql": "$("$PG_BIN/postgres" --version | sed 's/^postgres (PostgreSQL) //')",
  "psycopg": psycopg.__version__, "libpq": psycopg.pq.version(), "dnspython": dns.version.version,
  "python": platform.python_version(), "kernel": platform.release(), "cpus": $(nproc),
}))
EOF
)

# ------------------------------------------------------------ switchovers --
log "=== $RUNS switchovers ==="
for i in $(seq 1 "$RUNS"); do
  wait_healthy "$HEAL_TIMEOUT" >/dev/null || die "cluster not healthy before switchover $i"
  from=$(current_leader); to=$(other_of "$from")
  start_writer "switchover-$i"
  wait_acks "$ACKS_BEFORE" 30 || die "writer got no acks before switchover $i ($(progress))"
  t0=$EPOCHREALTIME
  patronictl -c "$BASE/pg1.yml" switchover --leader "$from" --candidate "$to" --force >"$BASE/runs/switchover-$i.txt" 2>&1 \
    || { cat "$BASE/runs/switchover-$i.txt" >&2; die "patronictl switchover failed"; }
  cmd_s=$(since "$t0")
  end=$((SECONDS + EVENT_TIMEOUT))
  until is_primary "$to"; do (( SECONDS < end )) || die "$to not primary after switchover $i"; sleep 0.1; done
  leader_s=$(since "$t0")
  base=$(acked)
  wait_acks $((base + ACKS_AFTER)) "$EVENT_TIMEOUT" || die "writes did not resume after switchover $i ($(progress))"
  stop_writer; wj=$(cat "$BASE/writer.out")
  lost=$(lost_acked "$to")
  rejoin_s=$(wait_healthy "$HEAL_TIMEOUT") || die "old leader $from did not rejoin after switchover $i"
  record switchover "$i" "$from" "$to" "$wj" "$lost" \
    "{\"patronictl_s\": $cmd_s, \"new_leader_seen_s\": $leader_s, \"healthy_again_s\": $rejoin_s}"
  log "switchover $i/$RUNS $from -> $to: write outage $(tail -1 "$RUNS_FILE" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["outage_s"])') s, lost acked $lost (patronictl ${cmd_s}s)"
done

# ------------------------------------------------------------- kill -9 runs --
log "=== $RUNS failovers: kill -9 of Patroni and the postmaster on the leader ==="
for i in $(seq 1 "$RUNS"); do
  wait_healthy "$HEAL_TIMEOUT" >/dev/null || die "cluster not healthy before kill run $i"
  from=$(current_leader); to=$(other_of "$from")
  ppid=$(cat "$BASE/patroni-$from.pid"); pmpid=$(postmaster_pid "$from")
  pid_ours "$ppid" "$BASE/$from.yml" || die "patroni pid $ppid of $from not found"
  pid_ours "$pmpid" "$BASE/$from" || die "postmaster pid $pmpid of $from not found"
  start_writer "kill9-$i"
  wait_acks "$ACKS_BEFORE" 30 || die "writer got no acks before kill run $i ($(progress))"
  t0=$EPOCHREALTIME
  kill -KILL "$ppid" "$pmpid"
  end=$((SECONDS + EVENT_TIMEOUT))
  until is_primary "$to"; do (( SECONDS < end )) || die "$to not primary after kill run $i"; sleep 0.1; done
  leader_s=$(since "$t0")
  base=$(acked)
  wait_acks $((base + ACKS_AFTER)) "$EVENT_TIMEOUT" || die "writes did not resume after kill run $i ($(progress))"
  stop_writer; wj=$(cat "$BASE/writer.out")
  lost=$(lost_acked "$to")
  # Bring the old leader back: Patroni rewinds it and it follows the new leader.
  wait_gone 10 "$ppid" "$pmpid"
  t1=$EPOCHREALTIME
  loglines=$(wc -l <"$BASE/patroni-$from.log")
  start_patroni "$from"
  rejoin_s=$(wait_healthy "$HEAL_TIMEOUT") || die "old leader $from did not rejoin after kill run $i"
  rewound=false
  tail -n +$((loglines + 1)) "$BASE/patroni-$from.log" | grep -q 'running pg_rewind from' && rewound=true
  record kill9 "$i" "$from" "$to" "$wj" "$lost" \
    "{\"new_leader_seen_s\": $leader_s, \"rejoin_s\": $(since "$t1"), \"pg_rewind_in_log\": $rewound}"
  log "kill -9 run $i/$RUNS $from -> $to: write outage $(tail -1 "$RUNS_FILE" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["outage_s"])') s, lost acked $lost, old leader rejoined in ${rejoin_s}s"
done

patronictl -c "$BASE/pg1.yml" list >&2
summarize
log "results: $OUT"
