# Shared by drctl.sh and patroni.sh (sourced; expects HERE, DRCTL, PY).

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Only processes whose command line names our files are ever signalled.
pid_ours() { # PID PATTERN
  local pid=$1 pat=$2
  [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' </proc/"$pid"/cmdline | grep -qF -- "$pat"
}
wait_gone() { # TIMEOUT PID...
  local t=$1 pid; shift
  local end=$((SECONDS + t))
  for pid in "$@"; do
    # a zombie has an empty cmdline: gone
    while [[ -n $( { tr -d '\0' </proc/"$pid"/cmdline; } 2>/dev/null) ]] && (( SECONDS < end )); do sleep 0.2; done
  done
}
stop_pid() { # PID PATTERN [TIMEOUT]: TERM, wait, then KILL
  local pid=$1 pat=$2 t=${3:-30}
  pid_ours "$pid" "$pat" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$t" "$pid"
  if pid_ours "$pid" "$pat"; then kill -KILL "$pid" 2>/dev/null || true; wait_gone 5 "$pid"; fi
}

stop_writers() { # WORKDIR: the writers bench.py started (pid files), if still running
  local w=$1 f
  for f in "$w"/writer-*.pid; do
    [[ -f $f ]] || continue
    stop_pid "$(cat "$f")" "$HERE/writer.py" 10
  done
}

lab_down() { # DIR: drctl lab down, then any postmaster it left behind
  local d=$1 f pid
  if [[ -f $d/lab.json ]]; then
    "$DRCTL" lab --dir "$d" down >&2 || log "drctl lab down failed (exit $?)"
  fi
  for f in "$d"/*/postmaster.pid; do
    [[ -r $f ]] || continue
    pid=$(head -1 "$f")
    if pid_ours "$pid" "$(dirname "$f")"; then
      log "stopping leftover postmaster $pid ($(dirname "$f"))"
      kill -INT "$pid" 2>/dev/null || true; wait_gone 20 "$pid"
      pid_ours "$pid" "$(dirname "$f")" && kill -KILL "$pid" 2>/dev/null
    fi
  done
}

save_files() { # DIR WORK: keep the lab's logs and the raw run files next to the lab dir
  local d=$1 w=$2 saved=$1.last
  [[ -d $d ]] || return 0
  rm -rf "$saved"; mkdir -p "$saved"
  cp -a "$d"/*.log "$d"/lab.json "$d"/drctl.toml "$saved"/ 2>/dev/null || true
  [[ -d $w ]] && cp -a "$w" "$saved"/ 2>/dev/null || true
  log "logs and raw files (writer-*.jsonl, events.jsonl) kept in $saved"
}

prerequisites() {
  id postgres >/dev/null 2>&1 || die "no postgres user (the lab runs PostgreSQL as postgres)"
  command -v ip >/dev/null || die "no ip (apt-get install iproute2)"
  local need=() p
  for p in python3-psycopg2 python3-yaml curl etcd-server postgresql-client-15; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
  fi
  "$PY" -c 'import psycopg2, yaml' || die "$PY lacks psycopg2 or yaml"
}

versions_json() { # DRCTL BUILD
  "$PY" - "$("$1" --version 2>/dev/null || echo '?')" "$2" <<'EOF'
import json, os, platform, subprocess, sys
def out(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return None
import psycopg2
print(json.dumps({
  "drctl": sys.argv[1].split()[-1], "drctl_build": sys.argv[2],
  "patroni": (out("patroni", "--version") or "").split()[-1:] and out("patroni", "--version").split()[-1],
  "etcd": (out("etcd", "--version") or "").splitlines()[0].split()[-1] if out("etcd", "--version") else None,
  "postgresql": (out("/usr/lib/postgresql/15/bin/postgres", "--version") or "").replace("postgres (PostgreSQL) ", ""),
  "psycopg2": psycopg2.__version__.split()[0], "python": platform.python_version(),
  "kernel": platform.release(), "cpus": os.cpu_count(),
}))
EOF
}
