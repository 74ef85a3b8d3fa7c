//! The `Sink` trait: where events go (stdout, RabbitMQ, NATS JetStream, Redis Streams, webhooks).

use std::future::Future;
use std::pin::Pin;

use crate::events::outgoing::OutgoingEvent;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{sink}: write failed: {source}")]
    Io {
        sink: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Not connected, connection lost, or the broker is down. Retry later.
    #[error("{sink}: unavailable: {detail}")]
    Unavailable { sink: &'static str, detail: String },
    /// The broker or receiver refused the batch (nack, error status). Retry later.
    #[error("{sink}: rejected: {detail}")]
    Rejected { sink: &'static str, detail: String },
    #[error("{sink}: no confirmation within {after_ms} ms")]
    Timeout { sink: &'static str, after_ms: u64 },
}

pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// An event destination. `publish` returns Ok only once every event of the batch is
/// delivered (confirmed or acknowledged by the broker), in order. On error none of the
/// batch may be assumed delivered: the outbox retries the whole batch with the same ids,
/// so a sink may deliver duplicates (same id), never loses.
pub trait Sink: Send + Sync {
    /// Short name for logs and metric labels, e.g. `rabbitmq`.
    fn name(&self) -> &'static str;
    fn publish<'a>(&'a self, events: &'a [OutgoingEvent]) -> SinkFuture<'a>;
}
