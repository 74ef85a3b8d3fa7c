//! `serve`: wires config, engine, ingest, control and sinks into one running gateway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::ari::controller::AriHub;
use crate::asr::client::{AsrClient, ClientError};
use crate::asr::embedded::{self, EngineError};
use crate::asr::proto::recognizer_client::RecognizerClient;
use crate::asr::proto::{recognize_request, AudioEncoding, RecognizeRequest, StreamConfig};
use crate::config::Config;
use crate::control::commands::{CommandHandler, Dispatcher};
use crate::control::http::{self, ApiState};
use crate::events::model::Event;
use crate::events::outbox::OutboxError;
use crate::events::publisher::Publisher;
use crate::events::sink::Sink;
use crate::events::stdout::StdoutSink;
use crate::ingest::manager::SessionManager;
use crate::metrics::Metrics;

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
    #[error("event sink {sink}: {detail}")]
    Sink { sink: &'static str, detail: String },
    #[error("{0}")]
    Outbox(#[from] OutboxError),
    #[error("{0}")]
    Ari(#[from] crate::ari::controller::AriStartError),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
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
    ari: Option<Arc<AriHub>>,
    config: Arc<Config>,
    http_stop: oneshot::Sender<()>,
    http_task: JoinHandle<()>,
    /// Tells command consumers to stop taking new commands.
    commands_stop: tokio::sync::watch::Sender<bool>,
    command_tasks: Vec<JoinHandle<()>>,
    engine: Option<EmbeddedEngine>,
}

impl Gateway {
    /// Start everything. Fails before binding any port when the model is missing.
    pub async fn start(config: Config) -> Result<Self, ServeError> {
        let config = Arc::new(config);
        crate::tls::install_default_provider();
        let http_tls = config.server_tls()?;
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
        let sinks = build_sinks(&config).await?;
        let publisher = Publisher::start(sinks, &config.outbox, &metrics)?;
        let manager =
            SessionManager::new(config.clone(), client, publisher.clone(), metrics.clone());
        let ari = AriHub::start(
            &config.ari,
            manager.clone(),
            publisher.clone(),
            config.event_source().into(),
            metrics.clone(),
            manager.advertised_host(),
        )
        .await?
        .map(Arc::new);
        let dispatcher = Arc::new(Dispatcher::new(
            manager.clone(),
            publisher.clone(),
            config.event_source().into(),
            config.vad(),
            ari.clone(),
        ));
        let (commands_stop, commands_stopped) = tokio::sync::watch::channel(false);
        let command_tasks = start_command_sources(&config, &dispatcher, &commands_stopped);
        let default_host = if config.server.rtp_bind.is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            config.server.rtp_bind.to_string()
        };
        let http_commands = config.commands.sources.iter().any(|s| s == "http");
        let router = http::router(ApiState {
            commands: http_commands.then(|| dispatcher.clone()),
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
            let served = match http_tls {
                Some(tls) => match crate::tls::TlsListener::new(http_listener, &tls) {
                    Ok(listener) => {
                        axum::serve(listener, router)
                            .with_graceful_shutdown(shutdown)
                            .await
                    }
                    Err(err) => Err(err),
                },
                None => {
                    axum::serve(http_listener, router)
                        .with_graceful_shutdown(shutdown)
                        .await
                }
            };
            if let Err(err) = served {
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
            ari,
            config,
            http_stop,
            http_task,
            commands_stop,
            command_tasks,
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
        let _ = self.commands_stop.send(true);
        for task in self.command_tasks {
            let _ = task.await;
        }
        let wait = Duration::from_millis(self.config.asr.final_timeout_ms) + Duration::from_secs(5);
        self.manager.shutdown(wait).await;
        if let Some(ari) = &self.ari {
            // Sessions have ended: their taps delete what they created on Asterisk.
            ari.shutdown(wait).await;
        }
        let _ = self.http_stop.send(());
        let _ = self.http_task.await;
        self.publisher.shutdown().await;
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

/// The configured sinks, connected lazily: a broker that is down at startup does not stop
/// the gateway; its outbox holds events until it is reachable.
async fn build_sinks(config: &Config) -> Result<Vec<Arc<dyn Sink>>, ServeError> {
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    for name in &config.events.sinks {
        let sink: Arc<dyn Sink> =
            match name.as_str() {
                "stdout" => Arc::new(StdoutSink),
                "rabbitmq" => Arc::new(
                    crate::events::rabbitmq::RabbitSink::connect(config.events.rabbitmq.clone())
                        .map_err(|e| ServeError::Sink {
                            sink: "rabbitmq",
                            detail: e.to_string(),
                        })?,
                ),
                "nats" => Arc::new(
                    crate::events::nats::NatsSink::connect(config.events.nats.clone())
                        .await
                        .map_err(|e| ServeError::Sink {
                            sink: "nats",
                            detail: e.to_string(),
                        })?,
                ),
                "redis" => Arc::new(
                    crate::events::redis_streams::RedisSink::new(config.events.redis.clone())
                        .map_err(|e| ServeError::Sink {
                            sink: "redis",
                            detail: e.to_string(),
                        })?,
                ),
                "webhook" => Arc::new(
                    crate::events::webhook::WebhookSink::new(config.events.webhook.clone())
                        .map_err(|e| ServeError::Sink {
                            sink: "webhook",
                            detail: e.to_string(),
                        })?,
                ),
                other => unreachable!("config validation admits only known sinks, not {other}"),
            };
        sinks.push(sink);
    }
    Ok(sinks)
}

/// One task per broker command source; each stops when `stop` turns true.
fn start_command_sources(
    config: &Config,
    dispatcher: &Arc<Dispatcher>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for source in &config.commands.sources {
        let handler: Arc<dyn CommandHandler> = dispatcher.clone();
        let mut stop = stop.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        let task = match source.as_str() {
            "http" => continue,
            "rabbitmq" => {
                let cfg = config.commands.rabbitmq.clone();
                tokio::spawn(async move {
                    if let Err(e) = crate::control::rabbitmq::run(cfg, handler, shutdown).await {
                        tracing::error!(error = %e, "RabbitMQ command consumer stopped");
                    }
                })
            }
            "nats" => {
                let cfg = config.commands.nats.clone();
                tokio::spawn(async move {
                    if let Err(e) = crate::control::nats::run(cfg, handler, shutdown).await {
                        tracing::error!(error = %e, "NATS command consumer stopped");
                    }
                })
            }
            "redis" => {
                let cfg = config.commands.redis.clone();
                tokio::spawn(async move {
                    if let Err(e) = crate::control::redis_streams::run(cfg, handler, shutdown).await
                    {
                        tracing::error!(error = %e, "Redis command consumer stopped");
                    }
                })
            }
            other => {
                unreachable!("config validation admits only known command sources, not {other}")
            }
        };
        tasks.push(task);
    }
    tasks
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
