//! The embedded offline engine: Whisper (CTranslate2, via ct2rs) behind `asr.v1.Recognizer`.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// A CTranslate2 Whisper model directory (model.bin, config.json, tokenizer.json, preprocessor_config.json).
    pub model_dir: PathBuf,
    /// Decoding threads, each with its own model replica. Default: number of cores.
    pub workers: usize,
    /// Utterances waiting for a worker; beyond this the engine answers "busy".
    pub queue: usize,
    /// Re-decode the growing utterance this often for interim results; `None` = finals only.
    pub interim_interval: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model directory {dir} is missing {file}; run `make setup` or point engine.model_dir at a CTranslate2 Whisper model")]
    ModelFileMissing { dir: PathBuf, file: &'static str },
    #[error("loading the Whisper model from {dir}: {detail}")]
    ModelLoad { dir: PathBuf, detail: String },
    #[error("engine server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("engine listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Load the model (once per worker) and serve `asr.v1.Recognizer` on `listener` until `shutdown` resolves.
pub async fn serve(
    config: EngineConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), EngineError> {
    let _ = (config, listener, shutdown);
    todo!()
}
