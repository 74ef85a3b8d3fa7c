//! Criterion bench: the durable outbox, per event (figures in benches/README.md).
//!
//! - `push_memory`: `push` with a healthy sink (memory queue; the delivery task runs on
//!   another worker thread meanwhile).
//! - `push_journal`: `push` while the sink is failing: one journal append (`write`, no fsync)
//!   per event, at the disk bound (oldest segments deleted as it goes).
//! - `replay`: `Outbox::start` on a journal of `REPLAY_EVENTS` events until the sink has
//!   confirmed all of them (index, read, parse, publish, ack, cursor, delete).
//!
//! Events are ~420-byte CloudEvents JSON lines, like a final transcript with a few words.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asr_gateway::events::outbox::{Outbox, OutboxConfig};
use asr_gateway::events::outgoing::OutgoingEvent;
use asr_gateway::events::sink::{Sink, SinkError, SinkFuture};
use asr_gateway::metrics::SinkMetrics;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use uuid::Uuid;

const REPLAY_EVENTS: usize = 50_000;

/// Confirms everything at once, or (down) refuses everything at once.
struct BenchSink {
    down: bool,
}

impl Sink for BenchSink {
    fn name(&self) -> &'static str {
        "bench"
    }

    fn publish<'a>(&'a self, events: &'a [OutgoingEvent]) -> SinkFuture<'a> {
        let down = self.down;
        Box::pin(async move {
            black_box(events);
            if down {
                return Err(SinkError::Unavailable {
                    sink: "bench",
                    detail: "down".into(),
                });
            }
            Ok(())
        })
    }
}

fn event(n: usize) -> OutgoingEvent {
    let id = Uuid::new_v4();
    let json = format!(
        concat!(
            r#"{{"specversion":"1.0","id":"{id}","source":"/asr-gateway/gw-1","type":"asr.transcript.final","#,
            r#""subject":"call-{call}","time":"2026-01-01T00:00:00.000Z","datacontenttype":"application/json","#,
            r#""data":{{"session_id":"s-{call}","offset_ms":{n},"utterance":7,"text":"yes I would like to "#,
            r#"check the balance of my account please","confidence":0.93,"start_ms":1000,"end_ms":3400,"#,
            r#""engine":"embedded","language":"en"}}}}"#
        ),
        id = id,
        call = n % 1000,
        n = n,
    );
    OutgoingEvent::from_json(Bytes::from(json)).expect("valid event")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "asrgw-outbox-bench-{tag}-{}-{}",
        std::process::id(),
        Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn config(dir: &Path) -> OutboxConfig {
    OutboxConfig {
        memory_events: 1 << 20,
        journal_dir: dir.to_path_buf(),
        journal_max_bytes: 64 * 1024 * 1024,
        batch_max: 500,
        retry_initial_ms: 1,
        retry_max_ms: 50,
        shutdown_flush_ms: 1000,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn push(c: &mut Criterion) {
    let events: Vec<OutgoingEvent> = (0..4096).map(event).collect();
    let rt = runtime();
    let mut group = c.benchmark_group("outbox");
    group.throughput(Throughput::Elements(1));

    let dir = temp_dir("memory");
    let outbox = rt.block_on(async {
        Outbox::start(
            Arc::new(BenchSink { down: false }),
            config(&dir),
            Arc::new(SinkMetrics::default()),
        )
        .expect("outbox")
    });
    let mut i = 0;
    group.bench_function("push_memory", |b| {
        b.iter(|| {
            outbox.push(events[i % events.len()].clone());
            i += 1;
        })
    });
    rt.block_on(outbox.shutdown());
    let _ = std::fs::remove_dir_all(&dir);

    let dir = temp_dir("journal");
    let mut cfg = config(&dir);
    cfg.memory_events = 0;
    let outbox = rt.block_on(async {
        let outbox = Outbox::start(
            Arc::new(BenchSink { down: true }),
            cfg,
            Arc::new(SinkMetrics::default()),
        )
        .expect("outbox");
        outbox.push(events[0].clone());
        wait_until(|| outbox.stats().failing).await;
        outbox
    });
    group.bench_function("push_journal", |b| {
        b.iter(|| {
            outbox.push(events[i % events.len()].clone());
            i += 1;
        })
    });
    rt.block_on(outbox.shutdown());
    let _ = std::fs::remove_dir_all(&dir);
    group.finish();
}

fn replay(c: &mut Criterion) {
    let rt = runtime();
    let template = temp_dir("replay-template");
    rt.block_on(async {
        let mut cfg = config(&template);
        cfg.memory_events = 0;
        cfg.shutdown_flush_ms = 0;
        let outbox = Outbox::start(
            Arc::new(BenchSink { down: true }),
            cfg,
            Arc::new(SinkMetrics::default()),
        )
        .expect("outbox");
        for n in 0..REPLAY_EVENTS {
            outbox.push(event(n));
        }
        outbox.shutdown().await;
    });
    let mut group = c.benchmark_group("outbox");
    group.throughput(Throughput::Elements(REPLAY_EVENTS as u64));
    group.sample_size(10);
    group.bench_function("replay", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = temp_dir("replay");
                copy_dir(&template.join("bench"), &dir.join("bench"));
                let metrics = Arc::new(SinkMetrics::default());
                let started = Instant::now();
                rt.block_on(async {
                    let outbox = Outbox::start(
                        Arc::new(BenchSink { down: false }),
                        config(&dir),
                        metrics.clone(),
                    )
                    .expect("outbox");
                    wait_until(|| metrics.confirmed.get() >= REPLAY_EVENTS as u64).await;
                    outbox.shutdown().await;
                });
                total += started.elapsed();
                let _ = std::fs::remove_dir_all(&dir);
            }
            total
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&template);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("list") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n != "lock") {
            std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
        }
    }
}

criterion_group!(benches, push, replay);
criterion_main!(benches);
