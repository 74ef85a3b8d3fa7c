#!/usr/bin/env bash
# The whole test suite: sets up, starts the brokers it needs (RabbitMQ, NATS, Redis) if
# they are not running, then runs fmt, clippy, and unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/services.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
