//! Criterion bench: codec stage (figures in benches/README.md).
//!
//! One 20 ms RTP payload per iteration, decoded into a preallocated Vec.

use std::hint::black_box;

use asr_gateway::media::codec::{CodecKind, Decoder};
use audiopus::coder::Encoder;
use audiopus::{Application, Bitrate, Channels, SampleRate};
use criterion::{criterion_group, criterion_main, Criterion};

/// Real G.722 speech from ffmpeg's encoder (tests/fixtures/codec/README.md).
const G722_SPEECH: &[u8] = include_bytes!("../tests/fixtures/codec/speech.g722");

/// Deterministic noise bytes (table decoders do not care about content).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x1234_5678u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// One 20 ms Opus packet (48 kHz mono, 32 kbit/s, VoIP) of a voiced-like signal.
fn opus_packet() -> Vec<u8> {
    let enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).unwrap();
    let mut enc = enc;
    enc.set_bitrate(Bitrate::BitsPerSecond(32_000)).unwrap();
    let mut buf = [0u8; 1500];
    let mut packet = Vec::new();
    // Encode a few frames so the packet is from a warmed-up encoder.
    for f in 0..5 {
        let pcm: Vec<i16> = (0..960)
            .map(|i| {
                let t = (f * 960 + i) as f64 / 48_000.0;
                let v = (2.0 * std::f64::consts::PI * 180.0 * t).sin() * 6_000.0
                    + (2.0 * std::f64::consts::PI * 1_100.0 * t).sin() * 2_000.0;
                v as i16
            })
            .collect();
        let n = enc.encode(&pcm, &mut buf).unwrap();
        packet = buf[..n].to_vec();
    }
    packet
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let cases: Vec<(&str, CodecKind, Vec<u8>)> = vec![
        ("pcmu_20ms", CodecKind::Pcmu, noise(160)),
        ("pcma_20ms", CodecKind::Pcma, noise(160)),
        ("l16_8k_20ms", CodecKind::L16 { rate: 8_000 }, noise(320)),
        ("l16_16k_20ms", CodecKind::L16 { rate: 16_000 }, noise(640)),
        (
            "g722_20ms",
            CodecKind::G722,
            G722_SPEECH[3_200..3_360].to_vec(),
        ),
        ("opus_20ms", CodecKind::Opus, opus_packet()),
    ];
    for (name, kind, payload) in cases {
        let mut dec = Decoder::new(kind).unwrap();
        let mut out = Vec::with_capacity(960);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                dec.decode(black_box(&payload), &mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
