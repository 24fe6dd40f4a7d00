#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time (see fuzz/README.md).
#
#   bash tests/fuzz.sh                 # FUZZ_SECONDS=30 per target
#   FUZZ_SECONDS=600 bash tests/fuzz.sh
#
# Installs cargo-fuzz when missing. Each target starts from its seeds in
# fuzz/corpus/TARGET and replays every input kept in fuzz/regressions/TARGET
# (inputs that once crashed it); new inputs it finds go to a scratch copy,
# not the repository. Exit 1 when a target crashes: the input is in
# fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-30}
say() { printf '==> %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  say "cargo install cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi
# cargo fuzz passes unstable flags; the stable toolchain takes them so.
export RUSTC_BOOTSTRAP=1
# A debug build without a sanitizer: a fraction of the release/ASan build
# time (the code is safe Rust; libFuzzer still steers by coverage).
flags=(--dev --sanitizer none)
say "cargo fuzz build"
cargo fuzz build "${flags[@]}"
status=0
for target in config manifest api wal; do
  work=$(mktemp -d)
  cp -r "corpus/$target/." "$work/"
  if [ -d "regressions/$target" ]; then cp -r "regressions/$target/." "$work/"; fi
  mkdir -p "artifacts/$target"
  say "fuzz $target for ${seconds}s"
  if ! cargo fuzz run "${flags[@]}" "$target" "$work" -- \
      -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="artifacts/$target/" 2> "$work.log"; then
    tail -40 "$work.log" >&2
    say "fuzz $target: CRASH (input in fuzz/artifacts/$target/)"
    status=1
  else
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work.log" | grep -o '[0-9]*$' || echo '?')
    say "fuzz $target: no crash in $runs runs"
  fi
  rm -rf "$work" "$work.log"
done
exit "$status"
