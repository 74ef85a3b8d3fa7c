//! The outbox between sessions and one sink: bounded memory, spill to an on-disk journal,
//! in-order retry with backoff, replay after restart. Nothing accepted is lost silently.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::events::outgoing::OutgoingEvent;
use crate::events::sink::Sink;
use crate::metrics::SinkMetrics;

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

/// Handle to one sink's outbox. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {}

impl Outbox {
    /// Open (and replay first) the sink's journal, then start delivering.
    pub fn start(
        sink: Arc<dyn Sink>,
        config: OutboxConfig,
        metrics: Arc<SinkMetrics>,
    ) -> Result<Self, OutboxError> {
        let _ = (sink, config, metrics, Duration::ZERO);
        todo!()
    }

    /// Accept an event. Never blocks on the sink; O(1) in memory, or a journal append when
    /// memory is full or the sink is down.
    pub fn push(&self, event: OutgoingEvent) {
        let _ = event;
        todo!()
    }

    /// Deliver what is queued for up to `shutdown_flush_ms`, journal the rest, stop.
    pub async fn shutdown(&self) {
        todo!()
    }
}
