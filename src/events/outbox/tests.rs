//! Outbox tests against a recording test sink and real journal files in temp directories.
//! No timing assertions: tests wait (with a generous limit) for conditions to become true.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use super::{Outbox, OutboxConfig, OutboxError};
use crate::events::outgoing::OutgoingEvent;
use crate::events::sink::{Sink, SinkError, SinkFuture};
use crate::metrics::SinkMetrics;

mod restart;

/// Records every attempt; can be switched down, fail the next N attempts, or hang.
#[derive(Default)]
struct TestSink {
    down: AtomicBool,
    fail_next: AtomicUsize,
    hang: AtomicBool,
    log: Mutex<SinkLog>,
}

#[derive(Default)]
struct SinkLog {
    delivered: Vec<OutgoingEvent>,
    /// Ids of every attempt, and whether it succeeded.
    attempts: Vec<(Vec<Uuid>, bool)>,
}

impl TestSink {
    fn down() -> Arc<Self> {
        let sink = Self::default();
        sink.down.store(true, Ordering::SeqCst);
        Arc::new(sink)
    }

    fn delivered(&self) -> Vec<OutgoingEvent> {
        self.log.lock().unwrap().delivered.clone()
    }

    fn attempts(&self) -> Vec<(Vec<Uuid>, bool)> {
        self.log.lock().unwrap().attempts.clone()
    }

    fn distinct_delivered(&self) -> usize {
        let log = self.log.lock().unwrap();
        log.delivered
            .iter()
            .map(|e| e.id)
            .collect::<HashSet<_>>()
            .len()
    }
}

impl Sink for TestSink {
    fn name(&self) -> &'static str {
        "test"
    }

    fn publish<'a>(&'a self, events: &'a [OutgoingEvent]) -> SinkFuture<'a> {
        Box::pin(async move {
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let fail = self.down.load(Ordering::SeqCst)
                || self
                    .fail_next
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            let mut log = self.log.lock().unwrap();
            log.attempts
                .push((events.iter().map(|e| e.id).collect(), !fail));
            if fail {
                return Err(SinkError::Unavailable {
                    sink: "test",
                    detail: "switched off".into(),
                });
            }
            log.delivered.extend_from_slice(events);
            Ok(())
        })
    }
}

/// A unique directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "asrgw-outbox-{tag}-{}-{n}-{}",
            std::process::id(),
            Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// The sink's journal directory.
    fn journal(&self) -> PathBuf {
        self.0.join("test")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &TempDir) -> OutboxConfig {
    OutboxConfig {
        memory_events: 100,
        journal_dir: dir.0.clone(),
        journal_max_bytes: 64 * 1024 * 1024,
        batch_max: 16,
        retry_initial_ms: 1,
        retry_max_ms: 5,
        shutdown_flush_ms: 50,
    }
}

/// An event shaped like ours: a one-line CloudEvents object (size varies with `n`).
fn event(n: usize) -> OutgoingEvent {
    let id = Uuid::new_v4();
    let json = format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"/asr-gateway/test","type":"asr.test","subject":"call-{}","data":{{"n":{n},"text":"{}"}}}}"#,
        n % 7,
        "w".repeat(n % 23)
    );
    OutgoingEvent::from_json(Bytes::from(json)).unwrap()
}

fn events(range: std::ops::Range<usize>) -> Vec<OutgoingEvent> {
    range.map(event).collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("gave up waiting for: {what}");
}

/// Delivered events, first occurrence of each id, in delivery order. Asserts that every
/// repeat carries the same bytes as the first delivery.
fn first_occurrences(delivered: &[OutgoingEvent]) -> Vec<OutgoingEvent> {
    let mut seen: HashMap<Uuid, &OutgoingEvent> = HashMap::new();
    let mut out = Vec::new();
    for event in delivered {
        match seen.get(&event.id) {
            Some(first) => assert_eq!(*first, event, "a redelivery changed the event"),
            None => {
                seen.insert(event.id, event);
                out.push(event.clone());
            }
        }
    }
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Push with a yield now and then, so the delivery task runs in between (current-thread
/// runtime) and sees the sink fail.
async fn push_all(outbox: &Outbox, events: &[OutgoingEvent]) {
    for (i, event) in events.iter().enumerate() {
        outbox.push(event.clone());
        if i % 25 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test]
async fn delivers_in_order_across_batches() {
    let dir = TempDir::new("order");
    let sink = Arc::new(TestSink::default());
    let metrics = Arc::new(SinkMetrics::default());
    let mut cfg = config(&dir);
    cfg.memory_events = 10_000;
    cfg.batch_max = 7;
    let outbox = Outbox::start(sink.clone(), cfg, metrics.clone()).unwrap();
    let pushed = events(0..1000);
    push_all(&outbox, &pushed).await;
    wait_for("1000 delivered", || sink.delivered().len() >= 1000).await;
    assert_eq!(sink.delivered(), pushed);
    assert!(sink.attempts().iter().all(|(ids, _)| ids.len() <= 7));
    assert_eq!(metrics.confirmed.get(), 1000);
    assert_eq!(metrics.published.get(), 1000);
    assert_eq!(metrics.retried.get(), 0);
    assert_eq!(metrics.spilled.get(), 0);
    outbox.shutdown().await;
    assert_eq!(metrics.queued.get(), 0);
}

/// Memory overflows into the journal and back while the sink delivers concurrently: the
/// hand-over between memory and journal keeps order and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_spill_and_delivery_keep_order() {
    let dir = TempDir::new("interleave");
    let sink = Arc::new(TestSink::default());
    let metrics = Arc::new(SinkMetrics::default());
    let mut cfg = config(&dir);
    cfg.memory_events = 64;
    cfg.batch_max = 50;
    // 16 MiB bound: 1 MiB segments, so the ~4 MB pushed may roll segments but never drops.
    cfg.journal_max_bytes = 16 * 1024 * 1024;
    let outbox = Outbox::start(sink.clone(), cfg, metrics.clone()).unwrap();
    let pushed = events(0..20_000);
    let pusher = {
        let (outbox, pushed) = (outbox.clone(), pushed.clone());
        tokio::spawn(async move {
            for (i, event) in pushed.into_iter().enumerate() {
                outbox.push(event);
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    pusher.await.unwrap();
    wait_for("20000 delivered", || sink.distinct_delivered() >= 20_000).await;
    assert_eq!(first_occurrences(&sink.delivered()), pushed);
    assert_eq!(metrics.dropped.get(), 0);
    outbox.shutdown().await;
}

#[tokio::test]
async fn failed_batch_is_retried_with_the_same_ids() {
    let dir = TempDir::new("retry");
    let sink = Arc::new(TestSink::default());
    sink.fail_next.store(3, Ordering::SeqCst);
    let metrics = Arc::new(SinkMetrics::default());
    let outbox = Outbox::start(sink.clone(), config(&dir), metrics.clone()).unwrap();
    let pushed = events(0..5);
    push_all(&outbox, &pushed).await;
    wait_for("5 delivered", || sink.delivered().len() >= 5).await;
    assert_eq!(sink.delivered(), pushed);
    let attempts = sink.attempts();
    assert_eq!(attempts.iter().filter(|(_, ok)| !ok).count(), 3);
    let mut retried = 0;
    for pair in attempts.windows(2) {
        if !pair[0].1 {
            assert_eq!(pair[1].0, pair[0].0, "a retry must resend the same batch");
            retried += pair[1].0.len() as u64;
        }
    }
    assert_eq!(metrics.retried.get(), retried);
    outbox.shutdown().await;
}

#[tokio::test]
async fn sink_down_spills_to_journal_then_delivers_everything_in_order() {
    let dir = TempDir::new("spill");
    let sink = TestSink::down();
    let metrics = Arc::new(SinkMetrics::default());
    let mut cfg = config(&dir);
    cfg.memory_events = 10;
    let outbox = Outbox::start(sink.clone(), cfg, metrics.clone()).unwrap();
    let pushed = events(0..500);
    for (i, event) in pushed.iter().enumerate() {
        outbox.push(event.clone());
        assert!(outbox.stats().memory_events <= 10);
        if i % 25 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(metrics.spilled.get() > 0);
    assert!(!segment_files(&dir.journal()).is_empty());
    assert_eq!(metrics.queued.get(), 500);
    assert!(sink.delivered().is_empty());
    // While the sink is failing, an event is in the journal by the time `push` returns.
    wait_for("the outbox to see the sink fail", || outbox.stats().failing).await;
    let more = events(500..520);
    for event in &more {
        outbox.push(event.clone());
        assert_eq!(outbox.stats().memory_events, 0);
    }
    let pushed: Vec<_> = pushed.into_iter().chain(more).collect();

    sink.down.store(false, Ordering::SeqCst);
    wait_for("520 delivered", || sink.distinct_delivered() >= 520).await;
    assert_eq!(first_occurrences(&sink.delivered()), pushed);
    assert!(metrics.retried.get() > 0);
    assert_eq!(metrics.dropped.get(), 0);
    wait_for("queue empty", || metrics.queued.get() == 0).await;
    outbox.shutdown().await;
}

/// A publish that neither succeeds nor fails counts as a failing sink after `STALL_SPILL`:
/// memory is journaled and new events go straight to the journal.
#[tokio::test]
async fn a_hanging_publish_switches_to_journaling() {
    let dir = TempDir::new("stall");
    let sink = Arc::new(TestSink::default());
    sink.hang.store(true, Ordering::SeqCst);
    let mut cfg = config(&dir);
    cfg.memory_events = 1000;
    let outbox = Outbox::start(sink, cfg, Arc::new(SinkMetrics::default())).unwrap();
    push_all(&outbox, &events(0..5)).await;
    assert_eq!(outbox.stats().memory_events, 5);
    wait_for("the stalled publish to count as failing", || {
        outbox.stats().failing
    })
    .await;
    assert_eq!(outbox.stats().memory_events, 0);
    assert_eq!(outbox.stats().journal_events, 5);
    outbox.push(event(5));
    assert_eq!(outbox.stats().memory_events, 0);
    assert_eq!(outbox.stats().journal_events, 6);
    outbox.shutdown().await;
}

#[tokio::test]
async fn memory_stays_bounded_while_the_sink_is_down() {
    let dir = TempDir::new("membound");
    let sink = TestSink::down();
    let metrics = Arc::new(SinkMetrics::default());
    let mut cfg = config(&dir);
    cfg.memory_events = 10;
    let outbox = Outbox::start(sink.clone(), cfg, metrics.clone()).unwrap();
    for (i, event) in events(0..1000).into_iter().enumerate() {
        outbox.push(event);
        let stats = outbox.stats();
        assert!(
            stats.memory_events <= 10,
            "memory grew to {}",
            stats.memory_events
        );
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let stats = outbox.stats();
    assert_eq!(stats.memory_events as u64 + stats.journal_events, 1000);
    assert_eq!(metrics.queued.get(), 1000);
    assert!(metrics.spilled.get() >= 990);
    outbox.shutdown().await;
    assert_eq!(outbox.stats().journal_events, 1000);
}

#[tokio::test]
async fn disk_bound_drops_the_oldest_and_counts_them() {
    let dir = TempDir::new("diskbound");
    let sink = TestSink::down();
    let metrics = Arc::new(SinkMetrics::default());
    let mut cfg = config(&dir);
    cfg.memory_events = 10;
    cfg.journal_max_bytes = 4096;
    let outbox = Outbox::start(sink.clone(), cfg, metrics.clone()).unwrap();
    let pushed = events(0..200);
    push_all(&outbox, &pushed).await;
    // The task journals what memory still holds when it sees the failure (which may drop
    // more); after that nothing changes until the sink is back.
    wait_for("everything journaled", || {
        let stats = outbox.stats();
        stats.failing && stats.memory_events == 0
    })
    .await;
    let dropped = metrics.dropped.get() as usize;
    assert!(dropped > 0);
    assert!(outbox.stats().journal_bytes <= 4096);

    sink.down.store(false, Ordering::SeqCst);
    let newest = pushed.last().unwrap().id;
    wait_for("newest delivered", || {
        sink.delivered().iter().any(|e| e.id == newest)
    })
    .await;
    wait_for("queue empty", || metrics.queued.get() == 0).await;
    let delivered = first_occurrences(&sink.delivered());
    assert_eq!(
        metrics.dropped.get() as usize,
        dropped,
        "dropped after recovery"
    );
    assert_eq!(dropped, pushed.len() - delivered.len());
    assert_eq!(
        delivered,
        pushed[dropped..],
        "the oldest are dropped, the rest in order"
    );
    outbox.shutdown().await;
}

#[tokio::test]
async fn a_journal_dir_that_cannot_be_created_is_a_clear_error() {
    let dir = TempDir::new("baddir");
    let blocker = dir.0.join("blocker");
    std::fs::write(&blocker, b"a file where the journal directory should go").unwrap();
    let mut cfg = config(&dir);
    cfg.journal_dir = blocker.join("journal");
    let sink: Arc<dyn Sink> = Arc::new(TestSink::default());
    let err = match Outbox::start(sink, cfg, Arc::new(SinkMetrics::default())) {
        Ok(_) => panic!("started on an impossible journal directory"),
        Err(err) => err,
    };
    let OutboxError::Journal { dir: named, .. } = &err;
    assert_eq!(*named, blocker.join("journal").join("test"));
    let text = err.to_string();
    assert!(text.contains(&blocker.display().to_string()), "{text}");
}

#[tokio::test]
async fn a_second_outbox_on_the_same_journal_is_refused() {
    let dir = TempDir::new("locked");
    let first = Outbox::start(
        Arc::new(TestSink::default()),
        config(&dir),
        Arc::new(SinkMetrics::default()),
    )
    .unwrap();
    let second = Outbox::start(
        Arc::new(TestSink::default()),
        config(&dir),
        Arc::new(SinkMetrics::default()),
    );
    let err = second.err().expect("the journal is locked");
    assert!(err.to_string().contains("in use"), "{err}");
    first.shutdown().await;
    // Released on shutdown.
    let third = Outbox::start(
        Arc::new(TestSink::default()),
        config(&dir),
        Arc::new(SinkMetrics::default()),
    )
    .unwrap();
    third.shutdown().await;
}
