//! Throughput of the rabbitmq sink with delivery confirmation (figures in benches/README.md).
//!
//! Plain `main` (harness = false) against the broker at `AMQP_URL` (default 127.0.0.1:5672):
//! publishes ~400-byte CloudEvents in batches, each batch awaited until every message is
//! confirmed, into a durable queue bound with `asr.#` (persistent messages, so the broker
//! writes them to disk before confirming). `cargo bench --no-default-features --bench
//! sink_rabbitmq` runs the full sizes; without `--bench` (as under `cargo test --benches`) it
//! does a small smoke run, and skips if no broker answers.

use std::time::Instant;

use asr_gateway::events::model::{Event, EventBody, SessionEvent};
use asr_gateway::events::outgoing::OutgoingEvent;
use asr_gateway::events::rabbitmq::{RabbitConfig, RabbitSink};
use asr_gateway::events::sink::Sink;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(full));
}

/// (events, batch size) per case.
const FULL: &[(usize, usize)] = &[(200_000, 500), (50_000, 100), (5_000, 1)];
const SMOKE: &[(usize, usize)] = &[(1_000, 500), (50, 1)];

async fn run(full: bool) {
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = match Connection::connect(&url, ConnectionProperties::default()).await {
        Ok(conn) => conn,
        Err(e) if !full => {
            eprintln!("sink_rabbitmq: skipped, no broker at {url}: {e}");
            return;
        }
        Err(e) => panic!("sink_rabbitmq: no broker at {url}: {e}"),
    };
    let suffix = uuid::Uuid::new_v4().simple();
    let exchange = format!("bench.events.{suffix}");
    let queue = format!("bench.events.q.{suffix}");
    let channel = conn.create_channel().await.expect("channel");
    declare(&channel, &exchange, &queue).await;

    let sink = RabbitSink::connect(RabbitConfig {
        url,
        exchange: exchange.clone(),
        confirm_timeout_ms: 30_000,
        ..RabbitConfig::default()
    })
    .expect("config");
    sink.ensure_connected().await.expect("sink connects");

    // Other work on the machine shares the cores with the broker and this client.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("sink_rabbitmq: load average at start: {}", load.trim());
    for &(count, batch) in if full { FULL } else { SMOKE } {
        let events = make_events(count);
        let bytes: usize = events.iter().map(|e| e.json.len()).sum();
        let start = Instant::now();
        for chunk in events.chunks(batch) {
            sink.publish(chunk).await.expect("batch confirmed");
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "sink_rabbitmq: {count} events of {} B, batch {batch}, confirmed: {:.0} events/s, {:.1} MB/s, {:.3} ms per batch",
            bytes / count,
            count as f64 / secs,
            bytes as f64 / secs / 1e6,
            secs * 1e3 / count.div_ceil(batch) as f64,
        );
        let _ = channel
            .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
            .await;
    }

    sink.close().await;
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    let _ = conn.close(200, "done".into()).await;
}

async fn declare(channel: &Channel, exchange: &str, queue: &str) {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .expect("exchange");
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect("queue");
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "asr.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
}

/// Final transcripts of ~400 bytes of JSON, spread over 50 calls.
fn make_events(count: usize) -> Vec<OutgoingEvent> {
    (0..count)
        .map(|i| {
            let body = EventBody::TranscriptFinal {
                utterance: i as u32,
                text: "please call me back".into(),
                confidence: 0.91,
                words: Vec::new(),
                start_ms: 1_000,
                end_ms: 2_200,
                latency_ms: Some(180),
            };
            let event = Event::stamp(
                "/asr-gateway/bench".into(),
                "8c1f6c1e-1f7a-4a55-9a37-0f1e2d3c4b5a".into(),
                format!("1712345678.{}", i % 50).into(),
                SessionEvent {
                    offset_ms: i as u64 * 20,
                    body,
                },
                chrono::Utc::now(),
            );
            OutgoingEvent::from(&event)
        })
        .collect()
}
