//! Speech recognition: session-facing messages, the engine layer (driver, router, one file per wire protocol), the embedded engine.

pub mod client;
pub mod embedded;
pub mod engine;
pub mod proto;
pub mod replay;
pub mod router;
pub mod types;
pub mod wire;
