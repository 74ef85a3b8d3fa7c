#!/usr/bin/env bash
# The whole test suite: sets up, starts the brokers it needs (RabbitMQ, NATS, Redis) if
# they are not running, builds the real Asterisk the ARI tests run against (once; cached
# outside the repo), then runs fmt, clippy, unit and integration tests, and a short run of
# every fuzz target (scripts/fuzz.sh short: about 20 s each).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/services.sh

# Without an Asterisk source tarball the real-Asterisk tests skip, and say so here.
rc=0
prefix="$(./scripts/asterisk.sh build)" || rc=$?
case "$rc" in
  0) export ASTERISK_PREFIX="$prefix" REAL_ASTERISK=required
     echo "test: real-Asterisk tests run against $prefix" ;;
  3) echo "test: SKIPPING the real-Asterisk tests (tests/asterisk_real.rs): no Asterisk source tarball;" \
          "set ASTERISK_SRC=/path/to/asterisk-23.x.tar.gz or ASTERISK_PREFIX=<an install> to run them" >&2 ;;
  *) exit "$rc" ;;
esac

cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
./scripts/fuzz.sh short
