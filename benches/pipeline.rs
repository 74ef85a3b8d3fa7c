//! Criterion bench: the whole per-20-ms pipeline for one stream (parse, jitter, decode,
//! resample 8 -> 16 kHz, VAD, chunking), through `Session::handle_rtp` + `poll_output`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use asr_gateway::media::session::{Output, Session, SessionConfig};
use asr_gateway::sender::{self, SendOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn session_config() -> SessionConfig {
    SessionConfig {
        idle_timeout: None,
        ..SessionConfig::default()
    }
}

/// Speech payloads from a fixture, as 20 ms RTP packets of `options`' codec.
fn speech_packets(options: &SendOptions) -> Vec<Vec<u8>> {
    let wav = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/two-phrases.wav");
    let (samples, rate) = sender::read_wav(&wav).expect("fixture");
    sender::packetize(&samples, rate, options, 0xA5A5_0001, 0).expect("packetize")
}

/// Rewrite sequence and timestamp so a fixture loops as one endless stream.
fn renumber(packet: &mut [u8], index: u64, step: u32) {
    packet[2..4].copy_from_slice(&(index as u16).to_be_bytes());
    packet[4..8].copy_from_slice(&((index as u32).wrapping_mul(step)).to_be_bytes());
}

fn bench_codec(c: &mut Criterion, name: &str, options: SendOptions, step: u32) {
    let mut packets = speech_packets(&options);
    // One long-running stream: set-up (25 us for the resampler's filter) is paid once per
    // call in production, so it stays out of the per-frame figure.
    let mut session = Session::new(session_config(), Instant::now()).unwrap();
    let mut now = Instant::now();
    let mut index = 0u64;
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            // One iteration = one 20 ms packet through the whole pipeline, outputs drained.
            let i = index as usize % packets.len();
            renumber(&mut packets[i], index, step);
            now += Duration::from_millis(20);
            index += 1;
            let _ = session.handle_rtp(now, &packets[i]);
            loop {
                if let Output::Timeout(_) = session.poll_output() {
                    break;
                }
            }
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    bench_codec(c, "pcmu_8k_to_16k_per_20ms", SendOptions::pcmu(), 160);
    bench_codec(c, "slin16_per_20ms", SendOptions::slin16(), 320);
}

criterion_group!(benches, bench);
criterion_main!(benches);
