//! Throughput of the NATS JetStream sink with PubAcks, against the nats-server on 127.0.0.1:4222.
//!
//! `cargo bench --bench sink_nats`: 200,000 events of ~400 bytes in batches of 500 (each batch
//! pipelined, then all its acks awaited, as the outbox does), then 5,000 with batch 1 for
//! contrast. Without `--bench` (`cargo test --benches`) it runs a tiny smoke version.
//! Each run uses its own stream and deletes it afterwards.

use std::time::{Duration, Instant};

use asr_gateway::events::model::{Event, EventBody, SessionEvent};
use asr_gateway::events::nats::{NatsConfig, NatsSink};
use asr_gateway::events::outgoing::OutgoingEvent;
use asr_gateway::events::sink::Sink;

/// Final transcripts of ~400 bytes of JSON, spread over 100 calls.
fn events(n: usize) -> Vec<OutgoingEvent> {
    (0..n)
        .map(|i| {
            let body = EventBody::TranscriptFinal {
                utterance: (i / 100) as u32,
                text: "yes I would like to hear more".into(),
                confidence: 0.93,
                words: Vec::new(),
                start_ms: 1_000,
                end_ms: 3_400,
                latency_ms: Some(180),
            };
            let event = Event::stamp(
                "/asr-gateway/bench".into(),
                format!("session-{}", i % 100).into(),
                format!("1700000000.{}", i % 100).into(),
                SessionEvent {
                    offset_ms: i as u64,
                    body,
                },
                chrono::Utc::now(),
            );
            OutgoingEvent::from(&event)
        })
        .collect()
}

async fn case(total: usize, batch: usize) {
    let tag = format!("{}x{}x{batch}", std::process::id(), total);
    let config = NatsConfig {
        stream: format!("BENCH_{tag}"),
        subject_prefix: format!("bench{tag}"),
        ack_timeout_ms: 30_000,
        ..NatsConfig::default()
    };
    let sink = NatsSink::connect(config.clone())
        .await
        .expect("valid config");
    let events = events(total);
    let bytes: usize = events.iter().map(|e| e.json.len()).sum();
    // First batch outside the clock: creates the stream.
    let (warm, timed) = events.split_at(batch.min(total));
    sink.publish(warm).await.expect("nats-server reachable");

    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    for chunk in timed.chunks(batch) {
        let t = Instant::now();
        sink.publish(chunk).await.expect("batch acked");
        slowest = slowest.max(t.elapsed());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = timed.len() as f64;
    println!(
        "nats sink, batch {batch:>4}: {:>8} events ({:.0} B avg) in {elapsed:.2} s = {:>8.0} events/s, {:.1} MB/s; mean batch {:.2} ms, slowest {:.1} ms",
        timed.len(),
        bytes as f64 / total as f64,
        n / elapsed,
        n * (bytes as f64 / total as f64) / elapsed / 1e6,
        elapsed * 1e3 / (n / batch as f64).ceil(),
        slowest.as_secs_f64() * 1e3,
    );
    let _ = sink.jetstream().delete_stream(&config.stream).await;
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        if full {
            case(200_000, 500).await;
            case(5_000, 1).await;
        } else {
            case(1_000, 500).await;
            case(100, 1).await;
        }
    });
}
