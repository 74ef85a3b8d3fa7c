//! `serve`: wires config, engine, ingest, control and sinks into one running gateway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::asr::client::{AsrClient, ClientError};
use crate::asr::embedded::{self, EngineError};
use crate::asr::proto::recognizer_client::RecognizerClient;
use crate::asr::proto::{recognize_request, AudioEncoding, RecognizeRequest, StreamConfig};
use crate::config::Config;
use crate::control::http::{self, ApiState};
use crate::events::model::Event;
use crate::events::publisher::Publisher;
use crate::events::sink::Sink;
use crate::events::stdout::StdoutSink;
use crate::ingest::manager::SessionManager;
use crate::metrics::Metrics;

/// Files a CTranslate2 Whisper model directory must hold.
pub const MODEL_FILES: &[&str] = &[
    "model.bin",
    "config.json",
    "tokenizer.json",
    "preprocessor_config.json",
];

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        addr: SocketAddr,
        key: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("embedded engine failed to start: {0}")]
    Engine(#[from] EngineError),
    #[error("embedded engine did not become ready: {detail}")]
    EngineNotReady { detail: String },
    #[error("{0}")]
    Client(#[from] ClientError),
}

struct EmbeddedEngine {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), EngineError>>,
}

/// A running gateway. Drop does not stop it; call `shutdown`.
pub struct Gateway {
    http_addr: SocketAddr,
    engine_endpoint: String,
    metrics: Arc<Metrics>,
    publisher: Publisher,
    manager: Arc<SessionManager>,
    config: Arc<Config>,
    http_stop: oneshot::Sender<()>,
    http_task: JoinHandle<()>,
    sink_task: JoinHandle<()>,
    engine: Option<EmbeddedEngine>,
}

impl Gateway {
    /// Start everything. Fails before binding any port when the model is missing.
    pub async fn start(config: Config) -> Result<Self, ServeError> {
        let config = Arc::new(config);
        if config.asr.endpoint.is_none() {
            embedded::check_model_dir(&config.engine.model_dir)?;
        }
        let metrics = Arc::new(Metrics::default());
        let (engine_endpoint, engine) = match &config.asr.endpoint {
            Some(endpoint) => (endpoint.clone(), None),
            None => {
                let (endpoint, engine) = start_embedded(&config).await?;
                (endpoint, Some(engine))
            }
        };
        let http_listener =
            TcpListener::bind(config.server.http_listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.server.http_listen,
                    key: "server.http_listen",
                    source,
                })?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|source| ServeError::Bind {
                addr: config.server.http_listen,
                key: "server.http_listen",
                source,
            })?;
        let client = AsrClient::new(config.client(engine_endpoint.clone()))?;
        let sinks: Vec<Box<dyn Sink>> = config
            .events
            .sinks
            .iter()
            // Config validation admits only `stdout` today; brokers arrive with issue 3.
            .map(|_| Box::new(StdoutSink) as Box<dyn Sink>)
            .collect();
        let (publisher, sink_task) = Publisher::start(sinks, config.events.queue, metrics.clone());
        let manager =
            SessionManager::new(config.clone(), client, publisher.clone(), metrics.clone());
        let default_host = if config.server.rtp_bind.is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            config.server.rtp_bind.to_string()
        };
        let router = http::router(ApiState {
            manager: manager.clone(),
            metrics: metrics.clone(),
            advertise_host: config.server.advertise_host.clone(),
            default_host,
        });
        let (http_stop, http_stopped) = oneshot::channel::<()>();
        let http_task = tokio::spawn(async move {
            let shutdown = async {
                let _ = http_stopped.await;
            };
            if let Err(err) = axum::serve(http_listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %err, "HTTP server failed");
            }
        });
        tracing::info!(%http_addr, engine = %engine_endpoint, "gateway ready");
        Ok(Self {
            http_addr,
            engine_endpoint,
            metrics,
            publisher,
            manager,
            config,
            http_stop,
            http_task,
            sink_task,
            engine,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn engine_endpoint(&self) -> &str {
        &self.engine_endpoint
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Every event from now on, as published to the sinks.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.publisher.subscribe()
    }

    /// End all sessions (waiting for their finals), stop HTTP, flush sinks, stop the engine.
    pub async fn shutdown(self) {
        let wait = Duration::from_millis(self.config.asr.final_timeout_ms) + Duration::from_secs(5);
        self.manager.shutdown(wait).await;
        let _ = self.http_stop.send(());
        let _ = self.http_task.await;
        drop(self.manager);
        drop(self.publisher);
        let _ = self.sink_task.await;
        if let Some(engine) = self.engine {
            let _ = engine.stop.send(());
            match engine.task.await {
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "embedded engine stopped with an error")
                }
                Err(err) => tracing::error!(error = %err, "embedded engine task panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

async fn start_embedded(config: &Config) -> Result<(String, EmbeddedEngine), ServeError> {
    let listener = TcpListener::bind(config.engine.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.engine.listen,
            key: "engine.listen",
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.engine.listen,
        key: "engine.listen",
        source,
    })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(embedded::serve(config.engine(), listener, async {
        let _ = stopped.await;
    }));
    let endpoint = format!("http://{addr}");
    let mut engine = EmbeddedEngine { stop, task };
    if let Err(detail) = probe(&endpoint).await {
        if engine.task.is_finished() {
            if let Ok(Err(err)) = (&mut engine.task).await {
                return Err(err.into());
            }
        }
        return Err(ServeError::EngineNotReady { detail });
    }
    Ok((endpoint, engine))
}

/// Open and close one empty stream: proves the engine answers over real gRPC.
async fn probe(endpoint: &str) -> Result<(), String> {
    let mut client = RecognizerClient::connect(endpoint.to_owned())
        .await
        .map_err(|e| e.to_string())?;
    let config = RecognizeRequest {
        request: Some(recognize_request::Request::Config(StreamConfig {
            encoding: AudioEncoding::Linear16 as i32,
            sample_rate_hz: 16000,
            language: "en".into(),
            session_id: "probe".into(),
            call_id: "probe".into(),
            ..Default::default()
        })),
    };
    let mut responses = client
        .streaming_recognize(tokio_stream::iter(vec![config]))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    while responses
        .message()
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {}
    Ok(())
}
