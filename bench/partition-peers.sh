#!/usr/bin/env bash
# Partition benchmark, drctl next to Patroni: runs bench/partition/drctl.sh,
# then bench/partition/patroni.sh --config defaults, then --config tuned (one
# after the other, never overlapping: each starts, measures and tears down its
# own lab before the next starts), then prints one side-by-side markdown table
# per partition mode (also saved as bench/partition/results/peers.md).
#
#   bash bench/partition-peers.sh [--runs N] [--random K]   # N runs of each mode (default 10), K random steps (30)
#   bash bench/partition-peers.sh --skip-drctl               # reuse results/drctl.json
#   bash bench/partition-peers.sh --skip-patroni             # reuse both results/patroni-*.json
#   bash bench/partition-peers.sh --skip-defaults            # reuse results/patroni-defaults.json
#   bash bench/partition-peers.sh --skip-tuned               # reuse results/patroni-tuned.json
#   bash bench/partition-peers.sh --table-only               # only the table from the JSON files
#   bash bench/partition-peers.sh --seed S --modes region-a,a-b --results-dir DIR
#
# The drctl binary: $DRCTL if set; else `cargo build --release -p drctl` is run
# and target/release/drctl used (--no-build: use target/release/drctl as it
# is, else target/debug/drctl). As root on Debian 12 (namespaces; see
# bench/partition/README.md). A side that fails still leaves its partial JSON;
# the script goes on to the next side and exits non-zero at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench/partition
RUNS=10
RANDOM_STEPS=30
SEED=20261207
MODES=
RES=$BENCH/results
BUILD=1
DO_DRCTL=1
DO_DEFAULTS=1
DO_TUNED=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --random) RANDOM_STEPS=$2; shift 2 ;;
    --random=*) RANDOM_STEPS=${1#*=}; shift ;;
    --seed) SEED=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --results-dir) RES=$2; shift 2 ;;
    --results-dir=*) RES=${1#*=}; shift ;;
    --no-build) BUILD=0; shift ;;
    --skip-drctl) DO_DRCTL=0; shift ;;
    --skip-patroni) DO_DEFAULTS=0; DO_TUNED=0; shift ;;
    --skip-defaults) DO_DEFAULTS=0; shift ;;
    --skip-tuned) DO_TUNED=0; shift ;;
    --table-only) DO_DRCTL=0; DO_DEFAULTS=0; DO_TUNED=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ $RUNS =~ ^[0-9]+$ ]] || { echo "--runs needs a non-negative integer" >&2; exit 2; }
[[ $RANDOM_STEPS =~ ^[0-9]+$ ]] || { echo "--random needs a non-negative integer" >&2; exit 2; }
[[ $RES = /* ]] || RES=$PWD/$RES
mkdir -p "$RES"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if (( DO_DRCTL || DO_DEFAULTS || DO_TUNED )); then
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

args=(--runs "$RUNS" --random "$RANDOM_STEPS" --seed "$SEED")
[[ -n $MODES ]] && args+=(--modes "$MODES")
failed=()
# Sequential on purpose: every side runs PostgreSQL, etcd and the lab on this
# machine, and one beside another would slow both down.
if (( DO_DRCTL )); then
  log "=== drctl: bench/partition/drctl.sh ${args[*]} ($DRCTL) ==="
  bash "$BENCH/drctl.sh" "${args[@]}" --out "$RES/drctl.json" >&2 || failed+=(drctl)
fi
if (( DO_DEFAULTS )); then
  log "=== Patroni, defaults: bench/partition/patroni.sh --config defaults ${args[*]} ==="
  bash "$BENCH/patroni.sh" --config defaults "${args[@]}" --out "$RES/patroni-defaults.json" >&2 \
    || failed+=(patroni-defaults)
fi
if (( DO_TUNED )); then
  log "=== Patroni, tuned: bench/partition/patroni.sh --config tuned ${args[*]} ==="
  bash "$BENCH/patroni.sh" --config tuned "${args[@]}" --out "$RES/patroni-tuned.json" >&2 \
    || failed+=(patroni-tuned)
fi

log "=== side by side ==="
/usr/bin/python3 "$BENCH/bench.py" peers "$RES" --out "$RES/peers.md"
if ((${#failed[@]})); then
  log "failed: ${failed[*]} (their tables hold what was measured before the failure)"
  exit 1
fi
