//! asr-gateway: a media streaming and speech-recognition gateway for Asterisk.
//!
//! The media core (`media`) is sans-IO; everything else is the thin tokio shell
//! around it. See ARCHITECTURE.md in the repository for the data flow.

pub mod ari;
pub mod asr;
pub mod bench;
pub mod config;
pub mod control;
pub mod demo;
pub mod events;
pub mod ids;
pub mod ingest;
pub mod media;
pub mod metrics;
pub mod secret;
pub mod sender;
pub mod serve;
pub mod text_norm;
pub mod tls;
pub mod transcribe;
