//! Control plane: the HTTP API, the command model and one command consumer per broker.

pub mod auth;
pub mod commands;
pub mod http;
pub mod http_server;
pub mod limits;
pub mod nats;
pub mod quota;
pub mod rabbitmq;
pub mod redis_streams;
