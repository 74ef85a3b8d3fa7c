//! Control plane: the HTTP API, the command model and one command consumer per broker.

pub mod commands;
pub mod http;
pub mod limits;
pub mod nats;
pub mod rabbitmq;
pub mod redis_streams;
