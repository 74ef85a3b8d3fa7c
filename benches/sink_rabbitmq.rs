//! Throughput of the rabbitmq sink with delivery confirmation (figures in benches/README.md).
//!
//! Plain `main` (harness = false) against the broker at `AMQP_URL` (default 127.0.0.1:5672):
//! publishes ~450-byte CloudEvents in batches, each batch awaited until every message is
//! confirmed, into a durable queue bound with `asr.#` (persistent messages, so the broker
//! writes them to disk before confirming). With one queue the broker's queue process is the
//! limit, not this client: queue version 2 is shown beside the default version 1. `cargo bench --no-default-features --bench
//! sink_rabbitmq` runs the full sizes; without `--bench` (as under `cargo test --benches`) it
//! does a small smoke run, and skips if no broker answers.

use std::time::Instant;

use asr_gateway::events::model::{Event, EventBody, SessionEvent};
use asr_gateway::events::outgoing::OutgoingEvent;
use asr_gateway::events::rabbitmq::{RabbitConfig, RabbitSink};
use asr_gateway::events::sink::Sink;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
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

/// One measurement: `events` published in batches of `batch` into a durable classic queue
/// of the given `x-queue-version` (1 is RabbitMQ 3.10's default; 2 stores messages faster).
struct Case {
    events: usize,
    batch: usize,
    queue_version: i32,
    /// A consumer drains the queue while publishing (call logic reading its events), on its
    /// own connection; without it the events pile up in the queue.
    consumer: bool,
}

const FULL: &[Case] = &[
    Case {
        events: 200_000,
        batch: 500,
        queue_version: 1,
        consumer: false,
    },
    Case {
        events: 200_000,
        batch: 500,
        queue_version: 2,
        consumer: false,
    },
    Case {
        events: 50_000,
        batch: 100,
        queue_version: 2,
        consumer: false,
    },
    Case {
        events: 5_000,
        batch: 1,
        queue_version: 1,
        consumer: false,
    },
    Case {
        events: 5_000,
        batch: 1,
        queue_version: 2,
        consumer: false,
    },
];
const WITH_CONSUMER: &[Case] = &[
    Case {
        events: 200_000,
        batch: 500,
        queue_version: 1,
        consumer: true,
    },
    Case {
        events: 200_000,
        batch: 500,
        queue_version: 2,
        consumer: true,
    },
];
const SMOKE: &[Case] = &[
    Case {
        events: 1_000,
        batch: 500,
        queue_version: 1,
        consumer: false,
    },
    Case {
        events: 50,
        batch: 1,
        queue_version: 2,
        consumer: false,
    },
];

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
    let channel = conn.create_channel().await.expect("channel");
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .expect("exchange");

    let sink = RabbitSink::connect(RabbitConfig {
        url: url.clone().into(),
        exchange: exchange.clone(),
        confirm_timeout_ms: 30_000,
        ..RabbitConfig::default()
    })
    .expect("config");
    sink.ensure_connected().await.expect("sink connects");

    // Other work on the machine shares the cores with the broker and this client.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("sink_rabbitmq: load average at start: {}", load.trim());
    let cases: Vec<&Case> = if full {
        FULL.iter().chain(WITH_CONSUMER).collect()
    } else {
        SMOKE.iter().collect()
    };
    for case in cases {
        let queue = format!(
            "bench.events.q{}{}.{suffix}",
            case.queue_version,
            if case.consumer { "c" } else { "" }
        );
        declare_queue(&channel, &exchange, &queue, case.queue_version).await;
        let drained = if case.consumer {
            Some(drain(&url, &queue).await)
        } else {
            None
        };
        let events = make_events(case.events);
        let bytes: usize = events.iter().map(|e| e.json.len()).sum();
        let start = Instant::now();
        for chunk in events.chunks(case.batch) {
            sink.publish(chunk).await.expect("batch confirmed");
        }
        let secs = start.elapsed().as_secs_f64();
        if let Some((consumer_conn, task)) = drained {
            task.abort();
            let _ = consumer_conn.close(200, "done".into()).await;
        }
        println!(
            "sink_rabbitmq: {} events of {} B, batch {}, queue v{}{}: {:.0} events/s confirmed, {:.1} MB/s, {:.3} ms per batch",
            case.events,
            bytes / case.events,
            case.batch,
            case.queue_version,
            if case.consumer { " with a consumer draining it" } else { "" },
            case.events as f64 / secs,
            bytes as f64 / secs / 1e6,
            secs * 1e3 / case.events.div_ceil(case.batch) as f64,
        );
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }

    sink.close().await;
    let _ = channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    let _ = conn.close(200, "done".into()).await;
}

/// A consumer (own connection, auto-ack) reading `queue` as fast as the broker delivers.
async fn drain(url: &str, queue: &str) -> (Connection, tokio::task::JoinHandle<()>) {
    use futures_util::StreamExt;
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("consumer connection");
    let channel = conn.create_channel().await.expect("consumer channel");
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "bench-drain".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let task = tokio::spawn(async move { while let Some(Ok(_)) = consumer.next().await {} });
    (conn, task)
}

/// A durable queue bound with `asr.#`: every event is routed to it and persisted.
async fn declare_queue(channel: &Channel, exchange: &str, queue: &str, version: i32) {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-version".into(), AMQPValue::LongInt(version));
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
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
