//! Control plane: HTTP API for sessions, health and metrics.
