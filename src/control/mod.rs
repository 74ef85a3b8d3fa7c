//! Control plane: the HTTP API for sessions, health and metrics.

pub mod http;
