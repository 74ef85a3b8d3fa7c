//! Throughput of the redis sink with delivery confirmation (figures in benches/README.md).
//!
//! `cargo bench --no-default-features --bench sink_redis`: 200,000 events of ~400 bytes in
//! batches of 500, one batch in flight at a time (as the outbox drives a sink), against
//! Redis at 127.0.0.1:6379 (or `REDIS_URL`), per-app and per-call (20 calls) streams with the
//! default `MAXLEN ~ 100000`. Under `cargo test --benches` it runs a tiny smoke pass.

use std::time::Instant;

use asr_gateway::events::outgoing::OutgoingEvent;
use asr_gateway::events::redis_streams::{RedisConfig, RedisSink, StreamPer};
use asr_gateway::events::sink::Sink;
use bytes::Bytes;
use uuid::Uuid;

const BATCH: usize = 500;
const CALLS: usize = 20;

fn event(n: usize) -> OutgoingEvent {
    let id = Uuid::new_v4();
    let call = format!("bench-call-{}", n % CALLS);
    let json = format!(
        "{{\"specversion\":\"1.0\",\"id\":\"{id}\",\"source\":\"/asr-gateway/bench\",\
         \"type\":\"asr.transcript.final\",\"subject\":\"{call}\",\"time\":\"2025-01-01T00:00:00Z\",\
         \"datacontenttype\":\"application/json\",\"data\":{{\"seq\":{n},\"utterance\":1,\
         \"text\":\"the quick brown fox jumps over the lazy dog and keeps on running far away\",\
         \"confidence\":0.93,\"start_ms\":1200,\"end_ms\":3400,\"offset_ms\":3420}}}}"
    );
    OutgoingEvent {
        id,
        kind: "asr.transcript.final".into(),
        call_id: call,
        json: Bytes::from(json),
    }
}

async fn run(url: &str, per: StreamPer, events: &[OutgoingEvent]) -> f64 {
    let stream = format!("bench:asr:events:{}", Uuid::new_v4());
    let sink = RedisSink::new(RedisConfig {
        url: url.into(),
        stream: stream.clone(),
        stream_per: per,
        ..RedisConfig::default()
    })
    .unwrap();
    // Connect (and warm up) outside the timed part.
    sink.publish(&events[..1]).await.unwrap();
    let start = Instant::now();
    for batch in events.chunks(BATCH) {
        sink.publish(batch).await.unwrap();
    }
    let rate = events.len() as f64 / start.elapsed().as_secs_f64();
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut keys = vec![stream.clone()];
    keys.extend((0..CALLS).map(|c| format!("{stream}:bench-call-{c}")));
    let _: redis::Value = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    rate
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only a smoke pass.
    let full = std::env::args().any(|a| a == "--bench");
    let count = if full { 200_000 } else { 1_000 };
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .is_err()
        {
            eprintln!("sink_redis: skipped, no Redis at {url}");
            return;
        }
        let events: Vec<OutgoingEvent> = (0..count).map(event).collect();
        let bytes = events.iter().map(|e| e.json.len()).sum::<usize>() / count;
        for per in [StreamPer::App, StreamPer::Call] {
            let rate = run(&url, per, &events).await;
            println!(
                "sink_redis {per:?}: {count} events x {bytes} B, batches of {BATCH}: {rate:.0} events/s ({:.1} MB/s)",
                rate * bytes as f64 / 1e6
            );
        }
    });
}
