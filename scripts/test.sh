#!/usr/bin/env bash
# The whole test suite: sets up, then runs unit and integration tests, fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
