#!/usr/bin/env bash
# Installs what the gateway needs to build and run its demo and tests on Debian.
# As root it installs missing apt packages itself; otherwise it prints the exact command.
# Then it fetches the embedded engine's model (scripts/fetch-model.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# command-or-check -> Debian package
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have cmake || need+=(cmake)
have g++ || need+=(g++)
have make || need+=(make)
have pkg-config || need+=(pkg-config)
{ have pkg-config && pkg-config --exists opus; } || need+=(libopus-dev)
have ffmpeg || need+=(ffmpeg)
# The engine tests synthesise speech.
have espeak-ng || need+=(espeak-ng)
have sox || need+=(sox)
have python3 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && have apt-get; then
    echo "setup: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: missing packages. Install them, then run this again:" >&2
    echo "  sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi

./scripts/fetch-model.sh

# The example consumer's client library (the test suite runs examples/consumer.py).
if ! python3 -c 'import aio_pika' 2>/dev/null; then
  # Debian's system Python refuses plain pip installs (PEP 668); a venv-less CI box needs the flag.
  python3 -m pip install -q -r examples/requirements.txt 2>/dev/null \
    || python3 -m pip install -q --break-system-packages -r examples/requirements.txt
fi

# The reference Whisper the embedded engine is checked against (tests/whisper_reference.rs);
# pinned, so this is a quick no-op once installed.
python3 -m pip install -q -r tests/reference/requirements.txt 2>/dev/null \
  || python3 -m pip install -q --break-system-packages -r tests/reference/requirements.txt
