//! Criterion bench: vad stage, one 20 ms frame per iteration (figures in benches/README.md).

use std::hint::black_box;

use asr_gateway::media::vad::{Segmenter, VadConfig, WebRtcVad};
use criterion::{criterion_group, criterion_main, Criterion};

/// Samples of the two-phrase fixture (16 kHz mono 16-bit), speech and silence mixed.
fn fixture_16k() -> Vec<i16> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/two-phrases.wav"
    );
    hound::WavReader::open(path)
        .expect("tests/fixtures/two-phrases.wav")
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect()
}

/// Every other sample: a crude 8 kHz version, good enough to time the detector.
fn decimate(samples: &[i16]) -> Vec<i16> {
    samples.iter().step_by(2).copied().collect()
}

/// Cycles through the frames of `audio` so the detector sees speech and silence.
fn bench_webrtc(c: &mut Criterion, name: &str, rate: u32, audio: &[i16]) {
    let mut vad = WebRtcVad::new(2, rate, 20).unwrap();
    let frames: Vec<&[i16]> = audio.chunks_exact(vad.frame_len()).collect();
    let mut i = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(vad.is_speech(black_box(frames[i])).unwrap())
        })
    });
}

fn bench(c: &mut Criterion) {
    let audio16 = fixture_16k();
    let audio8 = decimate(&audio16);
    bench_webrtc(c, "vad/webrtc_8k_20ms", 8000, &audio8);
    bench_webrtc(c, "vad/webrtc_16k_20ms", 16_000, &audio16);

    // Segmenter with default config; held audio drained as a session would.
    let mut seg = Segmenter::new(VadConfig::default(), 16_000).unwrap();
    let frames: Vec<&[i16]> = audio16.chunks_exact(seg.frame_len()).collect();
    let mut out = Vec::with_capacity(16_000);
    let mut i = 0;
    c.bench_function("vad/segmenter_16k_20ms", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            let v = seg.push_frame(black_box(frames[i])).unwrap();
            out.clear();
            seg.drain_held(&mut out);
            black_box(v)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
