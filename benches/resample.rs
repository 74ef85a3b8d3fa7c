//! Criterion bench: resample stage (figures in benches/README.md).
//!
//! One 20 ms frame per iteration through a resampler in steady state.

use std::hint::black_box;

use asr_gateway::media::resample::Resampler;
use criterion::{criterion_group, criterion_main, Criterion};

fn tone(rate: u32, samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            let t = i as f64 / rate as f64;
            ((2.0 * std::f64::consts::PI * 440.0 * t).sin() * 8_000.0) as i16
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample");
    for (name, from, to) in [
        ("8k_to_16k_20ms", 8_000, 16_000),
        ("48k_to_16k_20ms", 48_000, 16_000),
        ("16k_to_8k_20ms", 16_000, 8_000),
    ] {
        let frame = tone(from, from as usize / 50);
        let mut r = Resampler::new(from, to).unwrap();
        let mut out = Vec::with_capacity(to as usize / 50 * 2);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                r.process(black_box(&frame), &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
