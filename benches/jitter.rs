//! Criterion bench: jitter stage (figures in benches/README.md).
//!
//! One iteration = one 20 ms u-law packet pushed and everything released polled out.

use std::hint::black_box;
use std::time::{Duration, Instant};

use asr_gateway::media::jitter::{JitterBuffer, JitterConfig};
use asr_gateway::media::rtp::RtpHeader;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{rngs::StdRng, Rng, SeedableRng};

const FRAME: Duration = Duration::from_millis(20);

/// Slot order for `n` packets with about `rate` of adjacent pairs swapped.
fn arrival_order(n: usize, rate: f64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(4733);
    let mut order: Vec<u64> = (0..n as u64).collect();
    let mut i = 0;
    while i + 1 < n {
        if rng.random_bool(rate) {
            order.swap(i, i + 1);
            i += 2;
        } else {
            i += 1;
        }
    }
    order
}

/// Feeds packets in `order` (repeated, each round shifted by its length), 20 ms apart.
fn run(c: &mut Criterion, name: &str, order: &[u64]) {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let payload = [0xFFu8; 160];
    let start = Instant::now();
    let mut i: u64 = 0;
    let mut group = c.benchmark_group("jitter");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            let n = order.len() as u64;
            let slot = order[(i % n) as usize] + i / n * n;
            let now = start + FRAME * i as u32;
            let header = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: 1000u16.wrapping_add(slot as u16),
                timestamp: (160 * (slot + 1)) as u32,
                ssrc: 0x1234_5678,
            };
            jb.push(now, &header, &payload);
            while let Some(out) = jb.poll(now) {
                black_box(out);
            }
            i += 1;
        })
    });
    group.finish();
    let st = jb.stats();
    assert_eq!((st.lost, st.late), (0, 0), "{name}: {st:?}");
}

fn bench(c: &mut Criterion) {
    run(c, "push_poll_in_order", &arrival_order(1000, 0.0));
    run(c, "push_poll_reorder_5pct", &arrival_order(1000, 0.05));
}

criterion_group!(benches, bench);
criterion_main!(benches);
