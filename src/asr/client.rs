//! gRPC client for the gateway's own protocol: one task per session, one stream per utterance or call.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::asr::types::{AsrRequest, AsrUpdate, StreamOptions};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `http://host:port` of a server of `asr.v1.Recognizer`.
    pub endpoint: String,
    pub connect_timeout: Duration,
    /// After `End`, how long to wait for the engine to close the stream before `Timeout`.
    pub final_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid engine endpoint {endpoint:?}: {detail}")]
    BadEndpoint { endpoint: String, detail: String },
}

/// Cheap to clone: shares one HTTP/2 connection (lazily connected) across sessions.
#[derive(Clone)]
pub struct AsrClient {}

impl AsrClient {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let _ = config;
        todo!()
    }

    /// Serve one session: read requests in order, open/close gRPC streams as told, send
    /// every result or failure to `updates`. Ends when `requests` closes and streams are done.
    pub fn spawn_session(
        &self,
        options: StreamOptions,
        requests: mpsc::Receiver<AsrRequest>,
        updates: mpsc::Sender<AsrUpdate>,
    ) -> JoinHandle<()> {
        let _ = (options, requests, updates);
        todo!()
    }
}
