#!/usr/bin/env bash
# Rebuilds the speech fidelity corpus in tests/fixtures/speech/: every *.wav there and
# transcripts.tsv (SOURCE.md is written by hand and left alone).
#
# Real human speech is taken from three packages at pinned versions: two source
# distributions from PyPI (pocketsphinx 5.1.1, pywhispercpp 1.5.1) and one Debian
# bookworm package (asterisk-core-sounds-en-wav 1.6.1-1). Each download is checked
# against its sha256 before anything is taken out of it. The synthetic clips are
# spoken by espeak-ng; one of them is mixed with pink noise at 12 dB SNR. Everything is converted to 16 kHz mono 16-bit PCM WAV with sox in its
# repeatable mode (-R) and without dither (-D), so two runs give byte-identical files.
#
# Usage:
#   scripts/extract-speech-corpus.sh            rebuild tests/fixtures/speech/
#   scripts/extract-speech-corpus.sh --check    rebuild into a temporary folder and
#                                               compare with the committed files
#   SPEECH_CORPUS_CACHE=DIR ...                 keep the downloads in DIR and reuse
#                                               them (still verified) on the next run
#
# Needs: python3 with pip, apt-get and dpkg-deb (Debian; run `apt-get update` first if
# the pinned .deb version is not found), tar, sox, espeak-ng, sha256sum, awk.
# The espeak-ng clips were made with espeak-ng 1.51; another version may speak them
# slightly differently, and the script warns when the version differs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/tests/fixtures/speech"
CHECK=0
case "${1:-}" in
    "") ;;
    --check) CHECK=1 ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

die() { echo "extract-speech-corpus: error: $*" >&2; exit 1; }
say() { echo "extract-speech-corpus: $*" >&2; }

for tool in python3 tar sox espeak-ng sha256sum awk apt-get dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
ESPEAK_VERSION="$(espeak-ng --version | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+/) { print $i; exit }}')"
[ "$ESPEAK_VERSION" = "1.51" ] ||
    say "warning: espeak-ng is $ESPEAK_VERSION, the committed clips come from 1.51; synthetic clips may differ"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
DL="${SPEECH_CORPUS_CACHE:-$WORK/dl}"
mkdir -p "$DL" "$WORK/src" "$WORK/out"
OUT="$WORK/out"

# ---------------------------------------------------------------- downloads

verify() { # file sha256
    local got
    got="$(sha256sum "$1" | cut -d' ' -f1)"
    [ "$got" = "$2" ] || die "$(basename "$1"): sha256 $got, expected $2"
}

fetch_pypi() { # project version file sha256 -- a source distribution from PyPI
    local project=$1 version=$2 file=$3 sha=$4
    if [ ! -f "$DL/$file" ]; then
        say "pip download $project==$version (sdist)"
        python3 -m pip download --quiet --no-deps --no-binary "$project" \
            "$project==$version" -d "$DL" >&2 || die "pip download $project==$version failed"
    fi
    [ -f "$DL/$file" ] || die "pip did not leave $file in $DL"
    verify "$DL/$file" "$sha"
}

fetch_deb() { # package version arch file sha256 -- a Debian package
    local package=$1 version=$2 arch=$3 file=$4 sha=$5
    if [ ! -f "$DL/$file" ]; then
        say "apt-get download $package:$arch=$version"
        (cd "$DL" && apt-get download -q "$package:$arch=$version" >&2) ||
            die "apt-get download $package:$arch=$version failed (try apt-get update; the version is Debian 12 bookworm's)"
    fi
    verify "$DL/$file" "$sha"
}

PS_SDIST=pocketsphinx-5.1.1.tar.gz
WCPP_SDIST=pywhispercpp-1.5.1.tar.gz
AST_DEB=asterisk-core-sounds-en-wav_1.6.1-1_all.deb

fetch_pypi pocketsphinx 5.1.1 "$PS_SDIST" 675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355
fetch_pypi pywhispercpp 1.5.1 "$WCPP_SDIST" 5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5
fetch_deb asterisk-core-sounds-en-wav 1.6.1-1 all "$AST_DEB" 2be3ea287d83299d143815fa804f11179a75b7affd4a758b98b55f5afc18a35d

# ---------------------------------------------------------------- unpacking

PS="pocketsphinx-5.1.1/test/data"
tar -xzf "$DL/$PS_SDIST" -C "$WORK/src" \
    "$PS/librivox" "$PS/cards" "$PS/goforward.raw" "$PS/forever/input_2_16k.wav"
WCPP="pywhispercpp-1.5.1/whisper.cpp/samples/jfk.wav"
tar -xzf "$DL/$WCPP_SDIST" -C "$WORK/src" "$WCPP"
mkdir -p "$WORK/src/ast"
dpkg-deb -x "$DL/$AST_DEB" "$WORK/src/ast"
AST="$WORK/src/ast/usr/share/asterisk/sounds/en_US_f_Allison"

# ---------------------------------------------------------------- conversion

TSV="$OUT/transcripts.tsv"
: >"$TSV"

# to16k IN OUT.wav [input format options...]: 16 kHz mono 16-bit PCM, no dither.
to16k() {
    local in=$1 out=$2
    shift 2
    sox -R -D "$@" "$in" -e signed-integer -b 16 "$out" remix - rate -v 16000
}

clip() { # name transcript -- record the transcript of OUT/name.wav
    [ -f "$OUT/$1.wav" ] || die "$1.wav was not made"
    printf '%s.wav\t%s\n' "$1" "$2" >>"$TSV"
}

real() { # name source transcript [input format options...]
    local name=$1 src=$2 text=$3
    shift 3
    [ -f "$src" ] || die "missing in the package: $src"
    to16k "$src" "$OUT/$name.wav" "$@"
    clip "$name" "$text"
}

# Asterisk core prompts, recorded by Allison Smith (8 kHz WAV in the package).
real ivr-echo-test "$AST/demo-echotest.wav" \
    "you are about to enter an echo test in this mode everything you say will be repeated back to you just as soon as it is received the purpose of this test is to give you an audible sense of the latency between you and the machine that is running the echo test application you may end the test by hanging up or by pressing the pound key"
real ivr-voicemail-options "$AST/vm-options.wav" \
    "press one to record your unavailable message press two to record your busy message press three to record your name press four to record your temporary greeting press five to change your password press star to return to the main menu"
real ivr-queue-announce "$AST/queue-periodic-announce.wav" \
    "all of our representatives are currently busy please stay on the line and your call will be answered by the next available representative"
real ivr-not-in-service "$AST/ss-noservice.wav" \
    "the number you have dialed is not in service please check the number and try again"
real ivr-please-hold "$AST/priv-introsaved.wav" \
    "thank you please hold while i attempt to connect you with your party"
real ivr-not-at-desk "$AST/followme/status.wav" \
    "the person you are calling is not at their desk i will try to locate them for you"
real ivr-after-the-tone "$AST/vm-rec-temp.wav" \
    "after the tone say your temporary message and then press the pound key"
real ivr-enter-password "$AST/agent-pass.wav" \
    "please enter your password followed by the pound key"
real ivr-cannot-complete "$AST/cannot-complete-as-dialed.wav" \
    "your call cannot be completed as dialed"

# LibriVox reading of Sense and Sensibility, chapter 1 (pocketsphinx test data).
LV="$WORK/src/$PS/librivox/sense_and_sensibility_01_austen_64kb"
real librivox-0870 "$LV-0870.wav" \
    "and mister john dashwood had then leisure to consider how much there might be prudently in his power to do for them"
real librivox-0880 "$LV-0880.wav" "he was not an ill disposed young man"
real librivox-0890 "$LV-0890.wav" \
    "unless to be rather cold hearted and rather selfish is to be ill disposed"
real librivox-0920 "$LV-0920.wav" \
    "had he married a more a amiable woman he might have been made still more respectable than he was"
real librivox-0930 "$LV-0930.wav" "he might even have been made amiable himself"

# Other pocketsphinx test recordings.
real cards-001 "$WORK/src/$PS/cards/001.wav" "ten of clubs"
real cards-003 "$WORK/src/$PS/cards/003.wav" "seven of clubs"
real cards-005 "$WORK/src/$PS/cards/005.wav" "eight of spades four of clubs seven of hearts"
real go-forward "$WORK/src/$PS/goforward.raw" "go forward ten meters" \
    -t raw -r 16000 -e signed-integer -b 16 -c 1 -L
real forever "$WORK/src/$PS/forever/input_2_16k.wav" "feels like these days go on forever"

# whisper.cpp's sample inside pywhispercpp: John F. Kennedy, inaugural address, 1961.
real jfk "$WORK/src/$WCPP" \
    "and so my fellow americans ask not what your country can do for you ask what you can do for your country"

# ---------------------------------------------------------------- synthetic (espeak-ng)

speak() { # voice words-per-minute text out.wav
    espeak-ng -v "$1" -s "$2" -w "$WORK/espeak.wav" "$3"
    to16k "$WORK/espeak.wav" "$4"
}

synth() { # name voice words-per-minute text
    speak "$2" "$3" "$4" "$OUT/$1.wav"
    clip "$1" "$4"
}

synth espeak-us-f3-order en-us+f3 175 "i would like to check the status of my order"
synth espeak-gb-account en-gb 150 "my account number is four seven two nine one"
synth espeak-rp-transfer en-gb-x-rp 190 "can you transfer me to the billing department please"
synth espeak-scotland-cancel en-gb-scotland 160 "i need to cancel my appointment on tuesday"
synth espeak-us-m3-fast en-us+m3 230 "yes that is correct thank you very much goodbye"

# The noisy one: en-us+f2 with 0.5 s of lead-in and tail, pink noise over the whole clip
# at 12 dB below the RMS of the spoken part (espeak-ng's own output, with its short
# pauses). The speech is first brought to a peak of -6 dBFS so the mix does not clip.
NOISY_TEXT="hello i am calling about the bill i received last week"
speak en-us+f2 170 "$NOISY_TEXT" "$WORK/noisy-speech.wav"
sox -R -D "$WORK/noisy-speech.wav" "$WORK/noisy-norm.wav" gain -n -6
rms() { sox -R -D "$1" -n stat 2>&1 | awk '/^RMS +amplitude/ { print $3 }'; }
SPEECH_RMS="$(rms "$WORK/noisy-norm.wav")"
sox -R -D "$WORK/noisy-norm.wav" "$WORK/noisy-padded.wav" pad 0.5 0.5
NOISY_SECONDS="$(soxi -D "$WORK/noisy-padded.wav")"
sox -R -D -n -r 16000 -c 1 -e signed-integer -b 16 "$WORK/noise.wav" \
    synth "$NOISY_SECONDS" pinknoise
NOISE_RMS="$(rms "$WORK/noise.wav")"
NOISE_GAIN="$(awk -v s="$SPEECH_RMS" -v n="$NOISE_RMS" 'BEGIN { printf "%.6f", s / n / 10 ^ (12 / 20) }')"
sox -R -D -m -v 1 "$WORK/noisy-padded.wav" -v "$NOISE_GAIN" "$WORK/noise.wav" \
    -e signed-integer -b 16 "$OUT/espeak-us-f2-noisy-12db.wav"
clip espeak-us-f2-noisy-12db "$NOISY_TEXT"

# ---------------------------------------------------------------- result

for wav in "$OUT"/*.wav; do
    [ "$(soxi -r "$wav")" = 16000 ] && [ "$(soxi -c "$wav")" = 1 ] && [ "$(soxi -b "$wav")" = 16 ] ||
        die "$(basename "$wav") is not 16 kHz mono 16-bit"
done
TOTAL="$(for wav in "$OUT"/*.wav; do soxi -D "$wav"; done | awk '{ s += $1 } END { printf "%.1f", s }')"

if [ "$CHECK" = 1 ]; then
    status=0
    for f in "$OUT"/*; do
        cmp -s "$f" "$DEST/$(basename "$f")" || { say "differs: $(basename "$f")"; status=1; }
    done
    for f in "$DEST"/*.wav "$DEST"/transcripts.tsv; do
        [ -e "$f" ] || continue
        [ -e "$OUT/$(basename "$f")" ] || { say "not made by this script: $(basename "$f")"; status=1; }
    done
    [ "$status" = 0 ] && say "tests/fixtures/speech matches a fresh build ($TOTAL s of audio)"
    exit "$status"
fi

mkdir -p "$DEST"
rm -f "$DEST"/*.wav "$DEST"/transcripts.tsv
cp "$OUT"/* "$DEST"/
say "wrote $(ls "$OUT"/*.wav | wc -l) clips, $TOTAL s of audio, to ${DEST#"$ROOT"/}"
