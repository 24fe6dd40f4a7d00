#!/usr/bin/env bash
# Installs what the drctl tests need, if missing, and runs every test.
#
#   bash tests/run.sh            # everything (what CI runs)
#   bash tests/run.sh lag        # extra arguments go to `cargo test` (a filter)
#
# Idempotent: a second run installs nothing. It needs, and installs when
# missing (as root, from Debian and PyPI):
#   - PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup);
#   - Knot DNS (knotd; kdig and knsupdate from knot-dnsutils) for the RFC 2136
#     interop tests;
#   - moto_server (S3 and Route 53 on loopback) and schemathesis (the API
#     checked against its own OpenAPI document) in the virtualenv .venv-test;
#   - Chromium, the headless browser the dashboard test drives;
#   - etcd (package etcd-server): the three members of the lab's quorum
#     that grants the primaries' leases (tests/leases.rs, `drctl lab up`);
#   - libfaketime (package faketime), which gives a primary its own clock in
#     the clock-skew test;
#   - cargo-fuzz (crates.io), for the bounded fuzzing run at the end
#     (tests/fuzz.sh).
# Before the suite it runs the gates: `cargo fmt --check` (workspace and
# fuzz/) and `cargo clippy --workspace --all-targets -- -D warnings`; it
# exits non-zero, saying which, when either fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

have_pg_bin() {
  if [ -n "${PG_BIN:-}" ]; then [ -x "$PG_BIN/initdb" ] && return 0; return 1; fi
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then return 0; fi
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

apt_updated=
apt_install() {
  [ "$(id -u)" = 0 ] || die "missing $* and not root: install it (apt-get install $*) and run again"
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. PostgreSQL server binaries (the lab runs them as the postgres user).
if ! have_pg_bin; then
  apt_install postgresql
  have_pg_bin || die "PostgreSQL server binaries still missing after apt-get install postgresql; set PG_BIN"
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  die "running as root but there is no 'postgres' user to run PostgreSQL as (apt-get install postgresql creates it)"
fi
command -v runuser >/dev/null || [ "$(id -u)" != 0 ] || apt_install util-linux

# 2. Knot DNS: the real authoritative server the RFC 2136 provider is tested
#    against (tests/dns.rs starts its own knotd on a loopback port).
if ! command -v knotd >/dev/null && [ ! -x /usr/sbin/knotd ]; then
  apt_install knot
fi
if ! command -v kdig >/dev/null || ! command -v knsupdate >/dev/null; then
  apt_install knot-dnsutils
fi

# 2b. etcd: the lab's three coordination members (primary leases).
if ! command -v etcd >/dev/null && [ ! -x /usr/bin/etcd ]; then
  apt_install etcd-server
fi

# 3. moto_server in a virtualenv this script owns.
venv="$root/.venv-test"
if ! "$venv/bin/moto_server" --help >/dev/null 2>&1; then
  say "installing moto[server] into $venv"
  python3 -m venv "$venv" || die "python3 -m venv failed: install python3-venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi
if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
  say "installing schemathesis into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
export MOTO_SERVER="$venv/bin/moto_server"
export SCHEMATHESIS="$venv/bin/schemathesis"

# 4. Chromium for the dashboard's browser test (tests/dashboard.rs).
if ! command -v chromium >/dev/null; then
  apt_install chromium
fi
export CHROMIUM="$(command -v chromium)"

# 5. libfaketime for tests/clock_skew.rs.
if ! compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null; then
  apt_install faketime
fi

# 6. iproute2 for the namespaced lab (tests/netns.rs, lab_netns.rs,
#    lab_agents.rs: each region its own network namespace), and
#    systemd-analyze for the deploy units (tests/deploy.rs).
command -v ip >/dev/null || apt_install iproute2
command -v systemd-analyze >/dev/null || apt_install systemd

# 7. Gates before the suite: formatting and lints, of the workspace and of
#    the fuzz crate (its own workspace, so `--all` does not reach it). Either
#    failing stops the run here, naming which, before the long suite runs.
for tool in rustfmt clippy; do
  if ! cargo "${tool/rustfmt/fmt}" --version >/dev/null 2>&1; then
    command -v rustup >/dev/null || die "cargo $tool is missing and there is no rustup to add it"
    say "rustup component add $tool"
    rustup component add "$tool"
  fi
done
say "cargo fmt --check"
cargo fmt --all --check || die "cargo fmt --check failed: run 'cargo fmt --all' (and in fuzz/) and commit"
(cd "$root/fuzz" && cargo fmt --all --check) \
  || die "cargo fmt --check failed in fuzz/: run 'cargo fmt --all' in fuzz/ and commit"
say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings \
  || die "cargo clippy failed (warnings are errors): fix the lints above"

# 8. Build the binary the CLI tests run, then every test of the workspace.
say "cargo build"
cargo build --locked --workspace --bins
say "cargo test"
set +e
cargo test --locked --workspace --no-fail-fast "$@" 2>&1 | tee "$root/target/test-output.log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summing cargo's per-binary results.
# A binary killed mid-run (a signal, a timeout) has no result line: count
# those apart, so "0 failed" never hides one.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     /process didn.t exit successfully/ { b += 1 }
     END { printf "\ntests: %d passed, %d failed", p, f;
           if (b) printf " (%d test binaries did not pass)", b; printf "\n" }' "$root/target/test-output.log"

# 9. The fuzz targets, for a bounded time (not when a filter narrows the run).
if [ "$#" -eq 0 ]; then
  if bash "$root/tests/fuzz.sh"; then
    echo "fuzz: no crash (config, manifest, api, wal; ${FUZZ_SECONDS:-30}s each)"
  else
    echo "fuzz: CRASH (see above)"
    status=1
  fi
fi
exit "$status"
