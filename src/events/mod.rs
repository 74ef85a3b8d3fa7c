//! Recognition events: the CloudEvents model, the `Sink` trait and the publisher that feeds sinks.

pub mod model;
pub mod publisher;
pub mod sink;
pub mod stdout;
