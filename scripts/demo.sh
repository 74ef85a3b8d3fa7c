#!/usr/bin/env bash
# The demo: sets up, builds, and runs the gateway with its embedded engine on the bundled
# sample calls, sent as real RTP. Events print as JSON lines, then one summary line per call.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked
exec ./target/release/asr-gateway demo "$@"
