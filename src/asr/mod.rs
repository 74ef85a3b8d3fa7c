//! Speech recognition: session-facing messages, the gRPC client, the embedded engine.

pub mod client;
pub mod embedded;
pub mod proto;
pub mod types;
