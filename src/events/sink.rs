//! The `Sink` trait: where stamped events go (stdout today; brokers and webhooks plug in here).

use std::future::Future;
use std::pin::Pin;

use crate::events::model::Event;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{sink}: write failed: {source}")]
    Io {
        sink: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// An event destination. `publish` returns once the batch is delivered (or confirmed by the
/// broker), in order; an error means none of the batch may be assumed delivered.
pub trait Sink: Send + Sync {
    /// Short name for logs and metric labels, e.g. `stdout`.
    fn name(&self) -> &'static str;
    fn publish<'a>(&'a self, events: &'a [Event]) -> SinkFuture<'a>;
}
