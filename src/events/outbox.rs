//! The outbox between sessions and one sink: bounded memory, spill to an on-disk journal,
//! in-order retry with backoff, replay after restart. Nothing accepted is lost silently.
//!
//! Design (per sink):
//! - Every accepted event gets a sequence number (`seq`). The queue is the journal (oldest)
//!   followed by memory (newest): every journaled event is older than every event in memory,
//!   so "journal first, then memory" is delivery order. One task delivers, one batch at a time;
//!   a batch stays where it is (memory or journal) until `publish` returns Ok, so it is never
//!   only in the task's hands.
//! - Normal: `push` appends to the memory queue (O(1), at most `memory_events`).
//! - Spill: when memory is full, or once the sink fails (publish Err, or a publish still
//!   pending after `STALL_SPILL`), memory is appended to the journal in one write, and
//!   from then on every new event goes straight to the journal (one `write`, no fsync) until a
//!   publish succeeds. While the sink is failing an event is in the journal (the OS page
//!   cache) when `push` returns, so SIGKILL does not lose it; a power loss may lose what was
//!   not yet fsynced (segments are fsynced when sealed and on shutdown).
//! - Crash window: events in memory while the sink looked healthy (at most `memory_events`,
//!   usually about one batch) and, for a publish that hangs, up to `STALL_SPILL`.
//! - Retry: the same batch (same ids and bytes) until Ok, backoff doubling from
//!   `retry_initial_ms` to `retry_max_ms`. Events the journal dropped meanwhile (size bound)
//!   are trimmed from the batch. Redelivery after a crash is at-least-once, same ids.
//! - Bound: the journal drops its oldest segments to stay under `journal_max_bytes`
//!   (`SinkMetrics::dropped`, one error log per drop with the count); an event dropped while
//!   its batch is in the air may still arrive, and stays counted. Torn or garbage journal
//!   lines are skipped, logged and counted in `dropped` too (see `OutboxStats::skipped_lines`).
//! - Disk errors: if a journal write fails, new events stay in memory while there is room (the
//!   journal is retried after a second), else they are dropped, counted and logged.
//! - Locking: one std `Mutex` per outbox, never held across `.await`. `push` holds it for a
//!   queue insert, or in journal mode for one `write` (a few µs); the task does journal reads,
//!   acks and fsyncs on the blocking pool.
//! - Shutdown: deliver for up to `shutdown_flush_ms`, then journal memory, fsync, write the
//!   cursor, release the directory lock (later pushes are dropped and counted). `start` on the
//!   same directory replays the journal first, in order, before anything pushed after it.
//!
//! Journal format: see `events::journal`.

mod deliver;
pub(crate) mod journal_format;
pub(crate) mod journal_reader;
mod queue;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::events::journal::Journal;
use crate::events::outgoing::OutgoingEvent;
use crate::events::sink::Sink;
use crate::metrics::SinkMetrics;

use queue::Shared;

/// A publish still pending after this long counts as a failing sink: memory is journaled.
pub const STALL_SPILL: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Events held in memory per sink before new ones spill to the journal.
    pub memory_events: usize,
    /// Journals live in `<journal_dir>/<sink name>/`.
    pub journal_dir: PathBuf,
    /// Disk bound per sink; beyond it the oldest journaled events are dropped (counted, logged).
    pub journal_max_bytes: u64,
    /// Most events per `Sink::publish` call.
    pub batch_max: usize,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// On shutdown, how long to keep delivering before journaling the rest.
    pub shutdown_flush_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            memory_events: 10_000,
            journal_dir: PathBuf::from("var/journal"),
            journal_max_bytes: 256 * 1024 * 1024,
            batch_max: 500,
            retry_initial_ms: 100,
            retry_max_ms: 5_000,
            shutdown_flush_ms: 5_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("journal directory {dir}: {source}")]
    Journal {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A snapshot of one outbox, for tests, health and debugging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStats {
    /// Events waiting in memory.
    pub memory_events: usize,
    /// Journal lines not yet delivered.
    pub journal_events: u64,
    pub journal_bytes: u64,
    pub journal_segments: usize,
    /// Torn or garbage journal lines skipped since start (also counted in `dropped`).
    pub skipped_lines: u64,
    /// The last publish failed (or stalled): new events go straight to the journal.
    pub failing: bool,
}

/// Handle to one sink's outbox. Cheap to clone. When the last clone is dropped without
/// `shutdown`, the delivery task shuts down on its own (flushing in the background).
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
    _last_handle: Arc<StopOnDrop>,
}

struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.request_stop();
    }
}

impl Outbox {
    /// Open (and replay first) the sink's journal, then start delivering. Needs a tokio
    /// runtime. Blocks while indexing the journal (one sequential read of it).
    pub fn start(
        sink: Arc<dyn Sink>,
        config: OutboxConfig,
        metrics: Arc<SinkMetrics>,
    ) -> Result<Self, OutboxError> {
        let dir = config.journal_dir.join(sink.name());
        let journal = Journal::open(
            dir.clone(),
            config.journal_max_bytes,
            sink.name(),
            metrics.clone(),
        )
        .map_err(|e| OutboxError::Journal {
            dir,
            source: e.into_io(),
        })?;
        let pending = journal.pending();
        if pending > 0 {
            tracing::info!(sink = sink.name(), events = pending, dir = %journal.dir().display(),
                "replaying journaled events before new ones");
        }
        let (stop_tx, stop_rx) = watch::channel(None);
        let shared = Arc::new(Shared::new(sink.name(), &config, metrics, journal, stop_tx));
        tokio::spawn(deliver::run(
            shared.clone(),
            sink,
            deliver::Retry::from(&config),
            stop_rx,
        ));
        Ok(Self {
            _last_handle: Arc::new(StopOnDrop(shared.clone())),
            shared,
        })
    }

    /// Accept an event. Never blocks on the sink; O(1) in memory, or a journal append when
    /// memory is full or the sink is down.
    pub fn push(&self, event: OutgoingEvent) {
        self.shared.push(event);
    }

    /// Deliver what is queued for up to `shutdown_flush_ms`, journal the rest, stop.
    /// Events pushed afterwards are dropped (counted, logged). Safe to call more than once.
    pub async fn shutdown(&self) {
        self.shared.request_stop();
        let mut done = self.shared.done.subscribe();
        // The sender lives in `shared`, which we hold: this only ends with `true`.
        let _ = done.wait_for(|done| *done).await;
    }

    pub fn stats(&self) -> OutboxStats {
        self.shared.stats()
    }
}
