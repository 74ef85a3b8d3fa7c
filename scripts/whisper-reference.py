#!/usr/bin/env python3
# The reference transcripts the embedded engine is checked against (tests/whisper_reference.rs):
# faster-whisper (PyPI, pinned in tests/reference/requirements.txt) runs the SAME CTranslate2
# model directory on whole WAV files, decoded as the embedded engine decodes: INT8 on one CPU
# thread, beam 5, temperature 0 with no fallback, no timestamps, no VAD filter, no conditioning
# on previous text, no initial prompt, no "no speech" skipping. faster-whisper builds the prompt
# and the log-mel features itself, so it is an independent check of ours.
#
# Usage: scripts/whisper-reference.py [--model DIR] [--beam-size N] FILE.wav...
# Prints one JSON object {file: text} on stdout, keyed by the paths as given.
# WAV files must be 16 kHz mono 16-bit PCM (what the engine takes); samples are scaled by
# 1/32768 exactly as the engine does, so no resampler sits between the two.
import argparse
import json
import sys
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_wav(path):
    import numpy as np

    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16000, 1, 2):
            raise SystemExit(
                f"whisper-reference: {path}: need 16 kHz mono 16-bit PCM, got "
                f"{w.getframerate()} Hz, {w.getnchannels()} channel(s), {8 * w.getsampwidth()}-bit"
            )
        pcm = w.readframes(w.getnframes())
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(ROOT / "models/whisper-tiny.en"))
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--language", default=None, help="ISO 639-1 code; default: en for .en models, else detect")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()

    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise SystemExit(
            f"whisper-reference: faster-whisper is not installed ({e}); run "
            "python3 -m pip install -r tests/reference/requirements.txt (scripts/setup.sh does)"
        )

    model = WhisperModel(args.model, device="cpu", compute_type="int8", cpu_threads=1, num_workers=1)
    out = {}
    for f in args.files:
        segments, _info = model.transcribe(
            load_wav(f),
            language=args.language,
            beam_size=args.beam_size,
            temperature=0.0,
            compression_ratio_threshold=None,
            log_prob_threshold=None,
            no_speech_threshold=None,
            condition_on_previous_text=False,
            initial_prompt=None,
            without_timestamps=True,
            vad_filter=False,
            word_timestamps=False,
        )
        out[f] = " ".join(s.text.strip() for s in segments).strip()
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == "__main__":
    main()
