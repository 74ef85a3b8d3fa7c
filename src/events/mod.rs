//! Recognition events: the CloudEvents model, the `Sink` trait, one file per broker, the durable outbox.

pub mod journal;
pub mod live_sessions;
pub mod model;
pub mod nats;
pub mod outbox;
pub mod outgoing;
pub mod publisher;
pub mod rabbitmq;
pub mod redis_streams;
pub mod sink;
pub mod stdout;
pub mod webhook;
