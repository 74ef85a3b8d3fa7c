//! Criterion bench: rtp stage (figures in benches/README.md).

use std::hint::black_box;

use asr_gateway::media::rtp::{parse, RtpHeader, SequenceUnwrapper};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const HEADER: RtpHeader = RtpHeader {
    marker: false,
    payload_type: 0,
    sequence: 4242,
    timestamp: 160,
    ssrc: 0x1234_5678,
};

/// 12-byte header + 160 bytes of u-law (20 ms at 8 kHz): 172 bytes.
fn pcmu() -> Vec<u8> {
    let mut d = Vec::with_capacity(172);
    HEADER.write_to(&mut d);
    d.extend_from_slice(&[0xFF; 160]);
    d
}

/// Same payload behind 2 CSRCs and a 2-word extension, with 4 bytes of padding.
fn pcmu_csrc_ext_padding() -> Vec<u8> {
    let mut d = Vec::new();
    HEADER.write_to(&mut d);
    d[0] |= 0x20 | 0x10 | 2;
    d.extend_from_slice(&[0xC0; 8]);
    d.extend_from_slice(&[0xBE, 0xDE, 0, 2]);
    d.extend_from_slice(&[0xEE; 8]);
    d.extend_from_slice(&[0xFF; 160]);
    d.extend_from_slice(&[0, 0, 0, 4]);
    d
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtp");
    g.throughput(Throughput::Elements(1));
    let plain = pcmu();
    assert_eq!(plain.len(), 172);
    g.bench_function("parse_pcmu", |b| {
        b.iter(|| parse(black_box(&plain)).unwrap().payload.len())
    });
    let full = pcmu_csrc_ext_padding();
    assert_eq!(parse(&full).unwrap().payload, &plain[12..]);
    g.bench_function("parse_csrc_ext_padding", |b| {
        b.iter(|| parse(black_box(&full)).unwrap().payload.len())
    });
    let mut unwrapper = SequenceUnwrapper::default();
    let mut seq = 0u16;
    g.bench_function("unwrap_sequence", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            unwrapper.unwrap(black_box(seq))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
