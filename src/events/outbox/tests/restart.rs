//! Outbox tests around restarts: shutdown and replay, crashes (a dropped runtime, and a real
//! SIGKILL of a child process), torn journal lines.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::{
    config, event, events, first_occurrences, push_all, segment_files, wait_for, TempDir, TestSink,
};
use crate::events::outbox::{Outbox, OutboxConfig};
use crate::events::outgoing::OutgoingEvent;
use crate::metrics::SinkMetrics;

#[tokio::test]
async fn shutdown_journals_everything_and_a_restart_replays_it_first() {
    let dir = TempDir::new("restart");
    let down = TestSink::down();
    let metrics = Arc::new(SinkMetrics::default());
    let mut cfg = config(&dir);
    cfg.memory_events = 50;
    let outbox = Outbox::start(down.clone(), cfg.clone(), metrics.clone()).unwrap();
    let old = events(0..300);
    push_all(&outbox, &old).await;
    outbox.shutdown().await;
    assert_eq!(outbox.stats().journal_events, 300);
    assert_eq!(outbox.stats().memory_events, 0);
    assert_eq!(metrics.dropped.get(), 0);
    assert!(!segment_files(&dir.journal()).is_empty());
    drop(outbox);

    let sink = Arc::new(TestSink::default());
    let metrics = Arc::new(SinkMetrics::default());
    let outbox = Outbox::start(sink.clone(), cfg, metrics.clone()).unwrap();
    let new = events(300..310);
    push_all(&outbox, &new).await;
    wait_for("310 delivered", || sink.distinct_delivered() >= 310).await;
    let expected: Vec<_> = old.iter().chain(&new).cloned().collect();
    // Same ids and the same bytes, journaled ones first.
    assert_eq!(first_occurrences(&sink.delivered()), expected);
    outbox.shutdown().await;
}

#[tokio::test]
async fn shutdown_journals_memory_when_a_publish_hangs() {
    let dir = TempDir::new("hang");
    let hanging = Arc::new(TestSink::default());
    hanging.hang.store(true, Ordering::SeqCst);
    let mut cfg = config(&dir);
    cfg.memory_events = 1000;
    let outbox = Outbox::start(hanging, cfg.clone(), Arc::new(SinkMetrics::default())).unwrap();
    let pushed = events(0..100);
    push_all(&outbox, &pushed).await;
    outbox.shutdown().await;
    assert_eq!(outbox.stats().journal_events, 100);
    drop(outbox);

    let sink = Arc::new(TestSink::default());
    let outbox = Outbox::start(sink.clone(), cfg, Arc::new(SinkMetrics::default())).unwrap();
    wait_for("100 delivered", || sink.distinct_delivered() >= 100).await;
    assert_eq!(first_occurrences(&sink.delivered()), pushed);
    outbox.shutdown().await;
}

/// Progress through the journal is recorded as batches are confirmed, not only on shutdown:
/// after a crash (the runtime dropped, no `shutdown`) nothing delivered is replayed.
#[test]
fn delivered_journal_events_are_not_replayed_after_a_crash() {
    let dir = TempDir::new("cursor");
    let mut cfg = config(&dir);
    cfg.memory_events = 10;
    let crashing = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = Arc::new(SinkMetrics::default());
    let outbox = crashing.block_on(async {
        let sink = TestSink::down();
        let outbox = Outbox::start(sink.clone(), cfg.clone(), metrics.clone()).unwrap();
        push_all(&outbox, &events(0..100)).await;
        assert!(!segment_files(&dir.journal()).is_empty());
        sink.down.store(false, Ordering::SeqCst);
        wait_for("100 delivered", || sink.distinct_delivered() >= 100).await;
        wait_for("queue empty", || metrics.queued.get() == 0).await;
        outbox
    });
    drop(crashing); // the delivery task dies without journaling or closing anything
    drop(outbox);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(restart_delivers_only_new_events(cfg));
}

async fn restart_delivers_only_new_events(cfg: OutboxConfig) {
    let sink = Arc::new(TestSink::default());
    let outbox = Outbox::start(sink.clone(), cfg, Arc::new(SinkMetrics::default())).unwrap();
    assert_eq!(outbox.stats().journal_events, 0);
    let fresh = event(100);
    outbox.push(fresh.clone());
    wait_for("1 delivered", || !sink.delivered().is_empty()).await;
    outbox.shutdown().await;
    assert_eq!(sink.delivered(), vec![fresh]);
}

#[tokio::test]
async fn torn_and_garbage_journal_lines_are_skipped_and_counted() {
    let dir = TempDir::new("torn");
    let mut cfg = config(&dir);
    cfg.memory_events = 5;
    let outbox = Outbox::start(
        TestSink::down(),
        cfg.clone(),
        Arc::new(SinkMetrics::default()),
    )
    .unwrap();
    let pushed = events(0..20);
    push_all(&outbox, &pushed).await;
    outbox.shutdown().await;
    drop(outbox);
    let last = segment_files(&dir.journal()).pop().expect("a segment");
    let mut tail = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    use std::io::Write;
    tail.write_all(b"not an event at all\n").unwrap();
    tail.write_all(br#"123456 {"specversion":"1.0","id":"a5f"#)
        .unwrap();
    drop(tail);

    let sink = Arc::new(TestSink::default());
    let metrics = Arc::new(SinkMetrics::default());
    let outbox = Outbox::start(sink.clone(), cfg, metrics.clone()).unwrap();
    wait_for("20 delivered", || sink.distinct_delivered() >= 20).await;
    wait_for("journal read to the end", || {
        outbox.stats().skipped_lines == 2
    })
    .await;
    assert_eq!(first_occurrences(&sink.delivered()), pushed);
    assert_eq!(metrics.dropped.get(), 2);
    outbox.shutdown().await;
}

const SIGKILL_CHILD_DIR: &str = "ASRGW_OUTBOX_SIGKILL_DIR";

/// Deterministic ids, so the parent knows which events the child pushed.
fn numbered(n: u64) -> OutgoingEvent {
    let id = Uuid::from_u128(u128::from(n) + 1);
    let json = format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"/asr-gateway/test","type":"asr.test","subject":"call-1","data":{{"n":{n}}}}}"#
    );
    OutgoingEvent::from_json(Bytes::from(json)).unwrap()
}

fn sigkill_config(dir: PathBuf) -> OutboxConfig {
    OutboxConfig {
        memory_events: 10,
        journal_dir: dir,
        batch_max: 16,
        retry_initial_ms: 1,
        retry_max_ms: 5,
        ..OutboxConfig::default()
    }
}

/// Child half of `sigkill_loses_no_journaled_event`: with the sink down, waits until the
/// outbox is failing, then pushes forever, printing `pushed <n>` after each push returned.
#[test]
#[ignore = "run as a child process by sigkill_loses_no_journaled_event"]
fn sigkill_child() {
    let Some(dir) = std::env::var_os(SIGKILL_CHILD_DIR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let metrics = Arc::new(SinkMetrics::default());
        let outbox = Outbox::start(TestSink::down(), sigkill_config(dir.into()), metrics).unwrap();
        outbox.push(numbered(0));
        wait_for("the sink to fail", || outbox.stats().failing).await;
        use std::io::Write;
        for n in 1.. {
            outbox.push(numbered(n));
            // Not the captured `println!`: straight to the pipe the parent reads.
            let mut out = std::io::stdout();
            writeln!(out, "pushed {n}")
                .and_then(|()| out.flush())
                .unwrap();
            if n % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
}

/// A real crash: SIGKILL a child process mid-stream. Every event it pushed while the sink was
/// failing must be delivered after a restart on its journal, in order.
#[test]
fn sigkill_loses_no_journaled_event() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = TempDir::new("sigkill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "events::outbox::tests::restart::sigkill_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SIGKILL_CHILD_DIR, &dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last = 0u64;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if let Some(n) = line.unwrap().strip_prefix("pushed ") {
            last = n.parse().unwrap();
            if last >= 3000 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(last >= 3000, "the child stopped after {last} events");
    // What the child reported before it died is still in the pipe: the true last push.
    for line in lines {
        if let Some(n) = line.unwrap().strip_prefix("pushed ") {
            last = n.parse().unwrap();
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sink = Arc::new(TestSink::default());
        let metrics = Arc::new(SinkMetrics::default());
        let outbox = Outbox::start(sink.clone(), sigkill_config(dir.0.clone()), metrics).unwrap();
        let pushed: HashSet<Uuid> = (1..=last).map(|n| numbered(n).id).collect();
        wait_for("every reported event", || {
            let delivered = sink.delivered();
            let ids: HashSet<Uuid> = delivered.iter().map(|e| e.id).collect();
            ids.is_superset(&pushed)
        })
        .await;
        let got: Vec<Uuid> = first_occurrences(&sink.delivered())
            .into_iter()
            .map(|e| e.id)
            .filter(|id| pushed.contains(id))
            .collect();
        let expected: Vec<Uuid> = (1..=last).map(|n| numbered(n).id).collect();
        assert_eq!(got, expected);
        outbox.shutdown().await;
    });
}
