//! `serve`: wires config, engine, ingest, control and sinks into one running gateway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::ari::controller::AriHub;
use crate::asr::client::{AsrClient, ClientError, DriverConfig};
use crate::asr::embedded::{self, EngineError};
use crate::asr::proto::recognizer_client::RecognizerClient;
use crate::asr::proto::{recognize_request, AudioEncoding, RecognizeRequest, StreamConfig};
use crate::asr::router::{BreakerPolicy, EngineSlot, Router, RouterError};
use crate::asr::wire::asr_v1::AsrV1Engine;
use crate::config::Config;
use crate::control::auth::ApiAuth;
use crate::control::commands::{CommandHandler, Dispatcher};
use crate::control::http::{self, ApiState};
use crate::control::http_server::{self, HttpLimits};
use crate::control::quota::ReservationQuota;
use crate::events::live_sessions::LiveSessions;
use crate::events::model::{EndCause, Event, EventBody, SessionEvent};
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
    #[error("{0}")]
    Router(#[from] RouterError),
    #[error("event sink {sink}: {detail}")]
    Sink { sink: &'static str, detail: String },
    #[error("{0}")]
    Outbox(#[from] OutboxError),
    #[error("{0}")]
    Ari(#[from] crate::ari::controller::AriStartError),
    #[error("cannot keep the live-session log in {dir} (outbox.journal_dir): {source}")]
    LiveSessions {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// The embedded engine serving `asr.v1.Recognizer` on `engine.listen`, proven to answer.
pub struct EmbeddedEngine {
    endpoint: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), EngineError>>,
}

impl EmbeddedEngine {
    /// Load the model, listen on `engine.listen` and open one probe stream.
    pub async fn start(config: &Config) -> Result<Self, ServeError> {
        embedded::check_model_dir(&config.engine.model_dir)?;
        start_embedded(config).await
    }

    /// `http://host:port` of the engine.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Stop serving and wait for the engine's task; errors are logged.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Err(err)) => tracing::error!(error = %err, "embedded engine stopped with an error"),
            Err(err) => tracing::error!(error = %err, "embedded engine task panicked"),
            Ok(Ok(())) => {}
        }
    }
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
        raise_open_files_limit();
        let config = Arc::new(config);
        crate::tls::install_default_provider();
        let http_tls = config.server_tls()?;
        if config.uses_embedded_engine() {
            embedded::check_model_dir(&config.engine.model_dir)?;
        }
        let metrics = Arc::new(Metrics::default());
        let engine = match config.uses_embedded_engine() {
            true => Some(start_embedded(&config).await?),
            false => None,
        };
        let (router, engine_endpoint) =
            build_router(&config, engine.as_ref().map(|e| e.endpoint.as_str()))?;
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
        let client = AsrClient::with_router(
            Arc::new(router),
            DriverConfig {
                final_timeout: Duration::from_millis(config.asr.final_timeout_ms),
                replay_seconds: config.asr.failover_replay_ms.div_ceil(1000) as u32,
            },
        );
        let sinks = build_sinks(&config).await?;
        let publisher = Publisher::start(sinks, &config.outbox, &metrics)?;
        let manager =
            SessionManager::new(config.clone(), client, publisher.clone(), metrics.clone());
        let live = end_orphaned_sessions(&config, &publisher)?;
        manager.track_live_sessions(live);
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
        let http_commands = config.commands.sources.iter().any(|s| s == "http");
        let server = &config.server;
        let auth = Arc::new(ApiAuth::new(
            &server.api_tokens,
            &server.public_paths,
            metrics.clone(),
        ));
        if !auth.is_enabled() {
            tracing::warn!(listen = %server.http_listen,
                "HTTP API has no bearer tokens (server.api_tokens): anyone who reaches it may use it");
        }
        let router = http::router(ApiState {
            commands: http_commands.then(|| dispatcher.clone()),
            manager: manager.clone(),
            metrics: metrics.clone(),
            media_host: manager.advertised_host(),
            auth,
            body_limit: server.http_body_limit,
            quota: ReservationQuota::new(server.max_sessions_per_client),
        });
        let limits = HttpLimits {
            max_connections: server.http_max_connections,
            header_timeout: Duration::from_millis(server.http_header_timeout_ms),
            idle_timeout: Duration::from_millis(server.http_idle_timeout_ms),
        };
        let (http_stop, http_stopped) = oneshot::channel::<()>();
        let http_metrics = metrics.clone();
        let http_task = tokio::spawn(async move {
            let shutdown = async {
                let _ = http_stopped.await;
            };
            let tls = http_tls.map(|tls| tokio_rustls::TlsAcceptor::from(tls.rustls_config()));
            http_server::serve(http_listener, router, limits, tls, http_metrics, shutdown).await;
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
            engine.stop().await;
        }
    }
}

/// Every connection and RTP port is a file handle: take the hard limit, not the (often 1024)
/// soft one, so the HTTP connection cap is what bounds connections.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let wanted = limit.rlim_max;
            limit.rlim_cur = wanted;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!(wanted, "cannot raise the open-file limit");
            }
        }
    }
}

/// Open this process's live-session log; end in the event stream each session the previous
/// process left live (cause `gateway_restart`).
fn end_orphaned_sessions(
    config: &Config,
    publisher: &Publisher,
) -> Result<Arc<LiveSessions>, ServeError> {
    let dir = &config.outbox.journal_dir;
    let (live, orphans) = LiveSessions::open(dir).map_err(|source| ServeError::LiveSessions {
        dir: dir.clone(),
        source,
    })?;
    let source: Arc<str> = config.event_source().into();
    for orphan in orphans {
        tracing::warn!(session = %orphan.session_id, call = %orphan.call_id,
            "session left live by the previous process: ending it (gateway_restart)");
        let ended = SessionEvent {
            offset_ms: 0,
            body: EventBody::SessionEnded {
                cause: EndCause::GatewayRestart,
                duration_ms: 0,
                codec: None,
                payload_type: None,
                utterances: 0,
                stats: Default::default(),
            },
        };
        publisher.publish(Event::stamp(
            source.clone(),
            orphan.session_id.into(),
            orphan.call_id.into(),
            ended,
            chrono::Utc::now(),
        ));
    }
    Ok(Arc::new(live))
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

/// The router over every configured engine (`embedded` is the in-process engine's
/// address), and the endpoint of the default profile's first engine.
fn build_router(config: &Config, embedded: Option<&str>) -> Result<(Router, String), ServeError> {
    let first = config
        .engine_profiles()
        .into_iter()
        .find(|(p, _)| p == crate::asr::router::DEFAULT_PROFILE)
        .and_then(|(_, engines)| engines.into_iter().next());
    let mut first_endpoint = None;
    let mut slots = Vec::new();
    for plan in config.engine_plans() {
        let mut client = plan.client;
        if client.endpoint == crate::config::engines::EMBEDDED {
            client.endpoint = embedded
                .expect("the embedded engine starts when an engine uses it")
                .to_string();
        }
        if first_endpoint.is_none() || first.as_deref() == Some(plan.name.as_str()) {
            first_endpoint = Some(client.endpoint.clone());
        }
        let engine = AsrV1Engine::new(plan.name, &client)?;
        slots.push(EngineSlot::new(Arc::new(engine), plan.max_streams));
    }
    let a = &config.asr;
    let policy = BreakerPolicy {
        cooldown: Duration::from_millis(a.breaker_cooldown_ms),
        max_cooldown: Duration::from_millis(a.breaker_max_cooldown_ms),
    };
    let router = Router::new(slots, &config.engine_profiles(), policy)?;
    Ok((router, first_endpoint.unwrap_or_default()))
}

async fn start_embedded(config: &Config) -> Result<EmbeddedEngine, ServeError> {
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
    let mut engine = EmbeddedEngine {
        endpoint,
        stop,
        task,
    };
    if let Err(detail) = probe(&engine.endpoint).await {
        if engine.task.is_finished() {
            if let Ok(Err(err)) = (&mut engine.task).await {
                return Err(err.into());
            }
        }
        return Err(ServeError::EngineNotReady { detail });
    }
    Ok(engine)
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
