//! Commands from call logic (start, stop, update recognition), whatever transport brought them.
//!
//! Transports (HTTP, RabbitMQ, JetStream, Redis) hand the raw payload to a `CommandHandler`
//! and ack it once handled: `Accepted` → ack; `Rejected` → nack without requeue (or
//! dead-letter). The handler publishes the acknowledging event itself.

use std::future::Future;
use std::pin::Pin;

/// What became of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    Accepted,
    /// Malformed, unknown call, or refused: never redeliver.
    Rejected {
        reason: String,
    },
}

pub type CommandFuture<'a> = Pin<Box<dyn Future<Output = CommandOutcome> + Send + 'a>>;

/// Acts on one command payload (JSON bytes as received) and reports the outcome.
pub trait CommandHandler: Send + Sync {
    fn handle<'a>(&'a self, payload: &'a [u8]) -> CommandFuture<'a>;
}
