#!/usr/bin/env bash
# drctl side of the partition benchmark (see README.md).
#
#   bash bench/partition/drctl.sh [--runs N] [--random K] [--seed S] [--modes m1,m2]
#                                 [--out FILE] [--dir DIR] [--base-port P] [--api-port P] [--keep]
#   bash bench/partition/drctl.sh --teardown        # only clean up a kept/crashed run
#
# As root (the lab's regions are network namespaces). Starts drctl's lab
# (`drctl lab up --detach`: region-a, region-b, ctl, witness, three etcd
# members, agents holding the primaries' leases), pauses its shop workload,
# starts two writers on the hot service `orders` (one inside region-a's
# namespace straight to region-a's server, one in this namespace following
# orders.shop.lab. through the lab's DNS), then for each mode of region-a,
# region-b, witness, ctl-a, a-b, etcd-leader-kill runs N times: cut, hold 30 s
# (region-a: until drctl's failover succeeded, at most 60 s), heal, wait until
# healthy (a primary and a streaming standby; after region-a the old primary
# rejoins by itself), switch back to region-a with `drctl switchover` where the
# primary moved; then a seeded random sequence of K partitions and heals.
# Writes results JSON (--out, default results/drctl.json) and a markdown table
# (same name, .md); progress on stderr. The lab is torn down at the end unless --keep.
#
# The drctl binary: $DRCTL, else target/release/drctl, else target/debug/drctl
# (nothing is built). LAB_DIR (default /tmp/drctl-bench-partition) moves the
# lab; its logs and the raw files (writers' JSON lines, events) are copied to
# LAB_DIR.last at the end.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS=10
RANDOM_STEPS=30
SEED=20261207
MODES=
OUT=$HERE/results/drctl.json
KEEP=0
TEARDOWN_ONLY=0
DIR=${LAB_DIR:-/tmp/drctl-bench-partition}
BASE_PORT=57432
API_PORT=7979
while [[ $# -gt 0 ]]; do
  case $1 in
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
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ $RUNS =~ ^[0-9]+$ ]] || { echo "--runs needs a non-negative integer" >&2; exit 2; }
[[ $RANDOM_STEPS =~ ^[0-9]+$ ]] || { echo "--random needs a non-negative integer" >&2; exit 2; }
[[ $OUT = /* ]] || OUT=$PWD/$OUT
[[ $DIR = /* && $DIR != / ]] || { echo "--dir must be an absolute path other than /" >&2; exit 2; }
DIR=${DIR%/}

if [[ -z ${DRCTL:-} ]]; then
  if [[ -x $ROOT/target/release/drctl ]]; then DRCTL=$ROOT/target/release/drctl
  else DRCTL=$ROOT/target/debug/drctl; fi
fi
[[ -x $DRCTL ]] || { echo "no drctl binary at $DRCTL (set DRCTL)" >&2; exit 2; }
case $DRCTL in
  */target/release/*) BUILD=release ;;
  */target/debug/*) BUILD=debug ;;
  *) BUILD=unknown ;;
esac

W=$DIR/bench                 # the benchmark's own files, inside the lab dir
PY=/usr/bin/python3          # Debian's: psycopg2 and PyYAML as packages
# shellcheck source=common.sh
source "$HERE/common.sh"

looks_like_lab_dir() { # DIR: missing, empty, or written by lab up / this script
  local d=$1
  [[ ! -e $d ]] && return 0
  [[ -d $d ]] || return 1
  [[ -z $(ls -A "$d") ]] && return 0
  [[ -e $d/lab.json || -e $d/lab-up.log || -e $d/drctl.toml || -d $d/bench ]]
}

teardown() {
  stop_writers "$W"
  [[ -d $DIR ]] || return 0
  looks_like_lab_dir "$DIR" || die "$DIR does not look like a lab directory: not touching it"
  lab_down "$DIR"
  rm -rf "$DIR"
}

on_exit() {
  local rc=$?
  set +e
  stop_writers "$W"
  if (( rc != 0 )) && [[ -d $DIR ]]; then
    log "failed (exit $rc); last lines of the logs:"
    for f in "$DIR/lab-up.log" "$W"/writer-*.err; do
      [[ -f $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  save_files "$DIR" "$W"
  if (( KEEP )); then
    log "kept: lab in $DIR (tear down with: bash $0 --teardown --dir $DIR)"
  else
    log "tearing down"; teardown; log "torn down"
  fi
}

[[ $EUID -eq 0 ]] || die "run as root (the lab's regions are network namespaces)"
if (( TEARDOWN_ONLY )); then teardown; log "torn down"; exit 0; fi
prerequisites

log "drctl: $DRCTL ($("$DRCTL" --version), $BUILD build)"
log "cleaning up any previous run in $DIR"
teardown
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting the lab in $DIR (base port $BASE_PORT, API port $API_PORT, namespaces)"
"$DRCTL" lab --dir "$DIR" up --detach --base-port "$BASE_PORT" --api-port "$API_PORT" --network namespaces >&2 \
  || die "drctl lab up failed (see $DIR/lab-up.log)"
"$DRCTL" lab --dir "$DIR" workload pause >&2 || die "drctl lab workload pause failed"
mkdir -p "$W" "$(dirname "$OUT")"

VERSIONS=$(versions_json "$DRCTL" "$BUILD")
log "=== drctl pass: $RUNS runs per mode, random sequence of $RANDOM_STEPS (seed $SEED) ==="
rc=0
"$PY" "$HERE/bench.py" run --side drctl --label drctl --drctl "$DRCTL" --lab-dir "$DIR" --work "$W" \
  --runs "$RUNS" --random "$RANDOM_STEPS" --seed "$SEED" ${MODES:+--modes "$MODES"} \
  ${HOLD:+--hold "$HOLD"} ${SETTLE:+--settle "$SETTLE"} --versions "$VERSIONS" --out "$OUT" --md "${OUT%.json}.md" || rc=$?
log "results: $OUT (exit $rc)"
exit "$rc"
