//! The embedded offline engine: Whisper (CTranslate2, via ct2rs) behind `asr.v1.Recognizer`.
//!
//! `pool` runs the decoders on a bounded set of threads, `service` speaks the gRPC protocol,
//! `whisper` (cargo feature `whisper`) drives ct2rs with reference Whisper's log-mel features
//! (`mel`) and prompt (`tokens`). Audio is 16 kHz mono LINEAR16 only.

#[cfg(feature = "whisper")]
mod mel;
mod pool;
mod service;
#[cfg(feature = "whisper")]
mod tokens;
#[cfg(feature = "whisper")]
mod whisper;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use pool::{DecodeError, Decoder, Pool};
pub use service::RecognizerService;

/// The only sample rate the engine accepts, Hz (Whisper's feature extractor rate).
pub const SAMPLE_RATE_HZ: u32 = 16_000;

/// Files a CTranslate2 Whisper model directory must hold, checked before loading.
pub const MODEL_FILES: [&str; 4] = [
    "model.bin",
    "config.json",
    "tokenizer.json",
    "preprocessor_config.json",
];

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

impl EngineConfig {
    /// Defaults for `model_dir`: one worker per core, a queue of two utterances per worker,
    /// finals only.
    pub fn with_defaults(model_dir: impl Into<PathBuf>) -> Self {
        let workers = default_workers();
        EngineConfig {
            model_dir: model_dir.into(),
            workers,
            queue: 2 * workers,
            interim_interval: None,
        }
    }
}

/// The number of cores this process may use (1 if unknown).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model directory {dir} is missing {file}; run scripts/fetch-model.sh or point engine.model_dir (--model-dir) at a CTranslate2 Whisper model")]
    ModelFileMissing { dir: PathBuf, file: &'static str },
    #[error("loading the Whisper model from {dir}: {detail}")]
    ModelLoad { dir: PathBuf, detail: String },
    #[error("engine.workers must be at least 1")]
    NoWorkers,
    #[error("this binary was built without the embedded engine (cargo feature `whisper`); rebuild with default features, or point the gateway at an external engine")]
    NotBuiltIn,
    #[error("engine server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("engine listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Fails with `ModelFileMissing` naming the first file of `MODEL_FILES` absent from `dir`.
pub fn check_model_dir(dir: &Path) -> Result<(), EngineError> {
    for file in MODEL_FILES {
        if !dir.join(file).is_file() {
            return Err(EngineError::ModelFileMissing {
                dir: dir.to_path_buf(),
                file,
            });
        }
    }
    Ok(())
}

/// Load the model (once per worker) and serve `asr.v1.Recognizer` on `listener` until `shutdown` resolves.
#[cfg(feature = "whisper")]
pub async fn serve(
    config: EngineConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), EngineError> {
    check_model_dir(&config.model_dir)?;
    let dir = config.model_dir.clone();
    let (workers, queue) = (config.workers, config.queue);
    // Loading runs the model's CPU conversion on each worker thread; keep it off the runtime.
    let pool = tokio::task::spawn_blocking(move || {
        Pool::start(workers, queue, move || whisper::WhisperDecoder::load(&dir))
    })
    .await
    .map_err(|e| EngineError::ModelLoad {
        dir: config.model_dir.clone(),
        detail: format!("loader thread failed: {e}"),
    })??;
    tracing::info!(
        model_dir = %config.model_dir.display(),
        workers,
        queue,
        "embedded Whisper engine ready"
    );
    serve_with_pool(pool, config.interim_interval, listener, shutdown).await
}

/// Without the `whisper` feature there is no engine to serve.
#[cfg(not(feature = "whisper"))]
pub async fn serve(
    config: EngineConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), EngineError> {
    let _ = (config, listener, shutdown);
    Err(EngineError::NotBuiltIn)
}

/// Serve `asr.v1.Recognizer` backed by an already started pool (any `Decoder`).
pub async fn serve_with_pool(
    pool: Pool,
    interim_interval: Option<Duration>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), EngineError> {
    let service = RecognizerService::new(pool, interim_interval);
    tonic::transport::Server::builder()
        .add_service(crate::asr::proto::recognizer_server::RecognizerServer::new(
            service,
        ))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_model_file_is_named() {
        let dir = std::env::temp_dir().join(format!("asr-no-model-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.bin"), b"x").unwrap();
        let err = check_model_dir(&dir).unwrap_err();
        assert!(matches!(
            err,
            EngineError::ModelFileMissing {
                file: "config.json",
                ..
            }
        ));
        assert!(err.to_string().contains("config.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(not(feature = "whisper"))]
    #[tokio::test]
    async fn without_the_feature_serve_says_so() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = serve(EngineConfig::with_defaults("m"), listener, async {})
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::NotBuiltIn));
        assert!(err
            .to_string()
            .contains("built without the embedded engine"));
    }

    #[test]
    fn defaults_scale_with_cores() {
        let c = EngineConfig::with_defaults("m");
        assert!(c.workers >= 1);
        assert_eq!(c.queue, 2 * c.workers);
        assert_eq!(c.interim_interval, None);
    }
}
