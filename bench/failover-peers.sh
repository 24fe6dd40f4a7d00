#!/usr/bin/env bash
# Failover benchmark, drctl next to Patroni: runs bench/failover/patroni.sh,
# then bench/failover/drctl.sh (one after the other, never overlapping: each
# sets up, measures and tears down its own cluster before the next starts),
# then prints one side-by-side markdown table (also saved as
# bench/failover/results/peers.md).
#
#   bash bench/failover-peers.sh [--runs N]            # N of each kind on each side (default 10)
#   bash bench/failover-peers.sh --skip-patroni        # reuse results/patroni.json
#   bash bench/failover-peers.sh --skip-drctl          # reuse results/drctl.json
#   bash bench/failover-peers.sh --table-only          # only print the table from the JSON files
#   bash bench/failover-peers.sh --network loopback    # drctl's lab on loopback (default: namespaces)
#
# The drctl binary: $DRCTL if set; else `cargo build --release -p drctl` is run
# and target/release/drctl used (--no-build: use target/release/drctl as it
# is, else target/debug/drctl). --results-dir DIR writes patroni.json,
# drctl.json and peers.md there instead of bench/failover/results.
# As root on Debian 12 (patroni.sh needs root; see bench/failover/README.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench/failover
RUNS=10
RES=$BENCH/results
BUILD=1
DO_PATRONI=1
DO_DRCTL=1
# drctl's lab: each region its own network namespace (root), as the
# issue's figures are taken; `loopback` for the single-namespace lab.
NETWORK=namespaces
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --results-dir) RES=$2; shift 2 ;;
    --results-dir=*) RES=${1#*=}; shift ;;
    --no-build) BUILD=0; shift ;;
    --network) NETWORK=$2; shift 2 ;;
    --network=*) NETWORK=${1#*=}; shift ;;
    --skip-patroni) DO_PATRONI=0; shift ;;
    --skip-drctl) DO_DRCTL=0; shift ;;
    --table-only) DO_PATRONI=0; DO_DRCTL=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || { echo "--runs needs a positive integer" >&2; exit 2; }
[[ $RES = /* ]] || RES=$PWD/$RES
mkdir -p "$RES"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if (( DO_DRCTL )); then
  if [[ -z ${DRCTL:-} ]]; then
    if (( BUILD )); then
      log "cargo build --release -p drctl"
      (cd "$ROOT" && cargo build --release -p drctl) >&2
      DRCTL=$ROOT/target/release/drctl
    elif [[ -x $ROOT/target/release/drctl ]]; then
      DRCTL=$ROOT/target/release/drctl
    else
      DRCTL=$ROOT/target/debug/drctl
    fi
  fi
  [[ -x $DRCTL ]] || { echo "no drctl binary at $DRCTL" >&2; exit 2; }
  export DRCTL
fi

# Sequential on purpose: both sides run PostgreSQL on this machine, and a
# benchmark running beside the other would slow both down.
if (( DO_PATRONI )); then
  log "=== Patroni side: bench/failover/patroni.sh --runs $RUNS ==="
  bash "$BENCH/patroni.sh" --runs "$RUNS" --out "$RES/patroni.json" >"$RES/patroni.md"
  cat "$RES/patroni.md" >&2
fi
if (( DO_DRCTL )); then
  log "=== drctl side: bench/failover/drctl.sh --runs $RUNS --network $NETWORK ($DRCTL) ==="
  bash "$BENCH/drctl.sh" --runs "$RUNS" --network "$NETWORK" --out "$RES/drctl.json" >"$RES/drctl.md"
  cat "$RES/drctl.md" >&2
fi

log "=== side by side ==="
python3 - "$RES/drctl.json" "$RES/patroni.json" <<'EOF' | tee "$RES/peers.md"
import json, os, sys

def load(p):
    return json.load(open(p)) if os.path.exists(p) else None

d, p = load(sys.argv[1]), load(sys.argv[2])
for doc, f in ((d, sys.argv[1]), (p, sys.argv[2])):
    if doc is None:
        print(f"warning: {f} is missing: its columns stay empty", file=sys.stderr)

def get(doc, *path):
    for k in path:
        if doc is None:
            return None
        doc = doc.get(k) if isinstance(doc, dict) else None
    return doc

def s(x):
    return "–" if x is None else f"{x:.2f} s"

def ms(x):
    return "–" if x is None else (f"{x:.0f} ms" if x < 1000 else f"{x / 1000:.2f} s")

def meets(limit, p50, p95=None, p50_only=False):
    if p50 is None:
        return "–"
    if p50_only:
        return "yes" if p50 <= limit else "no"
    if p95 is not None and p95 <= limit:
        return "yes (p50 and p95)"
    return "p50 only" if p50 <= limit else "no"

def steps(kind):
    st = get(d, kind, "drctl", "steps_ms") or {}
    if not st:
        return "–"
    return " · ".join(f"`{k}` {v['p50']:.0f}" for k, v in st.items() if v.get("p50") is not None) + " (ms)"

n_d = get(d, "switchover", "n") or 0, get(d, "kill9", "n") or 0
n_p = get(p, "switchover", "n") or 0, get(p, "kill9", "n") or 0
build = get(d, "drctl_build")
print(f"drctl {get(d, 'versions', 'drctl') or '?'} ({build or '?'} build; runs: {n_d[0]} switchovers, "
      f"{n_d[1]} kill -9) vs Patroni {get(p, 'versions', 'patroni') or '?'} (runs: {n_p[0]} switchovers, "
      f"{n_p[1]} kill -9), same machine ({get(d, 'versions', 'cpus') or get(p, 'versions', 'cpus') or '?'} CPUs), "
      "same client (writer.py, one insert every 50 ms), one after the other.")
if build and build != "release":
    print(f"**drctl figures are from a {build} build: indicative only.**")
print()
print("| write outage / time | drctl p50 | drctl p95 | Patroni p50 | Patroni p95 | goal | drctl meets it |")
print("|---|---|---|---|---|---|---|")

def row(label, dp50, dp95, pp50, pp95, goal="", met=""):
    print(f"| {label} | {dp50} | {dp95} | {pp50} | {pp95} | {goal} | {met} |")

sw_d50, sw_d95 = get(d, "switchover", "p50_s"), get(d, "switchover", "p95_s")
row("switchover: client write outage (longest gap between acked inserts)",
    s(sw_d50), s(sw_d95), s(get(p, "switchover", "p50_s")), s(get(p, "switchover", "p95_s")),
    "≤ 1 s", meets(1.0, sw_d50, sw_d95))
k_d50, k_d95 = get(d, "kill9", "p50_s"), get(d, "kill9", "p95_s")
row("failover after kill -9 of the primary: client write outage, end to end (kill → writes acked again); "
    "drctl: the daemon's automatic failover",
    s(k_d50), s(k_d95), s(get(p, "kill9", "p50_s")), s(get(p, "kill9", "p95_s")),
    "≤ 5 s", meets(5.0, k_d50, k_d95))
lost = lambda doc: "–" if doc is None else f"{get(doc, 'switchover', 'lost_acked_total')} / {get(doc, 'kill9', 'lost_acked_total')}"
row("acknowledged writes lost, all runs (switchover / kill -9)", lost(d), "", lost(p), "", "switchover: 0",
    "–" if d is None else ("yes" if get(d, "switchover", "lost_acked_total") == 0 else "no"))
kd = get(d, "kill9", "drctl") or {}
o = kd.get("orchestrated_ms") or {}
row("drctl automatic failover: orchestrated part (operation started → ended)",
    ms(o.get("p50")), ms(o.get("p95")), "–", "–", "≤ 1 s (p50)",
    meets(1000, o.get("p50"), p50_only=True))
r = kd.get("rto_ms") or {}
row("drctl automatic failover: detection → done (rto_ms, from the first failed probe)",
    ms(r.get("p50")), ms(r.get("p95")), "–", "–")
r = kd.get("kill_to_detection_ms") or {}
row("drctl automatic failover: kill → detection (first failed probe, 1 s probe interval)",
    ms(r.get("p50")), ms(r.get("p95")), "–", "–")
row("drctl automatic failover: per-step p50", steps("kill9"), "", "–", "")
sd = get(d, "switchover", "drctl") or {}
o = sd.get("orchestrated_ms") or {}
row("drctl switchover: orchestrated part (operation started → ended)", ms(o.get("p50")), ms(o.get("p95")), "–", "–")
o = sd.get("write_outage_ms") or {}
row("drctl switchover: write outage as drctl reports it (write_outage_ms)", ms(o.get("p50")), ms(o.get("p95")), "–", "–")
row("drctl switchover: per-step p50", steps("switchover"), "", "–", "")
print()
print("Patroni's kill -9 kills the leader's Patroni and its postmaster; its replica promotes once the leader key "
      "expires (ttl 30 s). drctl's kill -9 kills the primary's postmaster; the daemon fails over after 3 failed "
      "probes spanning ≥ 3 s with the standby's WAL receiver disconnected. Per-run figures: the JSON files.")
EOF
