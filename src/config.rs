//! Typed configuration from TOML and environment, validated before anything binds.
//!
//! Sources, later wins: built-in defaults, the TOML file, then `ASRGW_<SECTION>__<KEY>`
//! environment variables (e.g. `ASRGW_ASR__ENDPOINT=http://10.0.0.5:50051`). Every error
//! names the key and what it allows.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::asr::client::ClientConfig;
use crate::asr::embedded::EngineConfig;
use crate::control::nats::NatsCommandsConfig;
use crate::control::rabbitmq::RabbitCommandsConfig;
use crate::control::redis_streams::RedisCommandsConfig;
use crate::events::nats::NatsConfig;
use crate::events::outbox::OutboxConfig;
use crate::events::rabbitmq::RabbitConfig;
use crate::events::redis_streams::RedisConfig;
use crate::events::webhook::WebhookConfig;
use crate::media::codec::{CodecKind, PayloadTypeMap};
use crate::media::jitter::JitterConfig;
use crate::media::vad::VadConfig;
use crate::tls::{TlsError, TlsSettings};

pub mod engines;
pub use engines::{EngineEntry, EnginePlan};

/// Prefix of environment overrides; `__` separates section and key.
pub const ENV_PREFIX: &str = "ASRGW_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Field { key: String, message: String },
    #[error("config key `{key}` = {value}: allowed {allowed}")]
    Invalid {
        key: String,
        value: String,
        allowed: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    /// A TLS file that cannot be read or used; names the key and the file.
    #[error("{0}")]
    Tls(#[from] TlsError),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerSection,
    pub session: SessionSection,
    pub vad: VadSection,
    pub asr: AsrSection,
    pub engine: EngineSection,
    /// Payload type → codec name, overriding Asterisk's static table, e.g. `"96" = "opus"`.
    pub payload_types: BTreeMap<String, String>,
    pub events: EventsSection,
    /// Per-sink delivery buffer: memory, then an on-disk journal.
    pub outbox: OutboxConfig,
    pub commands: CommandsSection,
    /// Asterisk servers controlled over ARI (Stasis and listen mode).
    pub ari: crate::ari::config::AriConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// HTTP API: sessions, /metrics, /healthz.
    pub http_listen: SocketAddr,
    /// Address RTP sockets bind to.
    pub rtp_bind: IpAddr,
    /// Inclusive UDP port range for RTP; one port per session.
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// Host returned to call logic in `host:port`; unset = the host the request was sent to.
    pub advertise_host: Option<String>,
    /// Names this gateway in the CloudEvents `source`; unset = the machine's hostname.
    pub instance: Option<String>,
    /// Bearer tokens the HTTP API accepts (`Authorization: Bearer <token>`), at least 16
    /// characters each. Empty = no authentication, allowed only when `http_listen` is a
    /// loopback address or `allow_unauthenticated = true`.
    #[serde(deserialize_with = "crate::secret::one_or_many")]
    pub api_tokens: Vec<crate::secret::Secret>,
    /// Paths served without a token: any of `/healthz`, `/readyz`, `/metrics`.
    pub public_paths: Vec<String>,
    /// Serve the API without tokens on a non-loopback address (e.g. behind your own proxy).
    pub allow_unauthenticated: bool,
    /// Most HTTP connections open at once; more are closed as they arrive (counted).
    pub http_max_connections: usize,
    /// A connection must send a complete request head within this long, ms.
    pub http_header_timeout_ms: u64,
    /// A connection with no request in flight is closed after this long, ms.
    pub http_idle_timeout_ms: u64,
    /// Largest request body, bytes.
    pub http_body_limit: usize,
    /// Sessions one API client (a token, or an address when there are no tokens) may hold
    /// through `POST /v1/sessions`; more get 429. 0 = no cap.
    pub max_sessions_per_client: usize,
    /// PEM certificate chain: set with `tls_key` to serve the HTTP API over HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            http_listen: "127.0.0.1:8080".parse().expect("literal"),
            rtp_bind: "0.0.0.0".parse().expect("literal"),
            rtp_port_min: 40000,
            rtp_port_max: 40999,
            advertise_host: None,
            instance: None,
            api_tokens: Vec::new(),
            public_paths: crate::control::auth::OPTIONALLY_PUBLIC
                .iter()
                .map(|p| p.to_string())
                .collect(),
            allow_unauthenticated: false,
            http_max_connections: 4096,
            http_header_timeout_ms: 10_000,
            http_idle_timeout_ms: 60_000,
            http_body_limit: 256 * 1024,
            max_sessions_per_client: 256,
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSection {
    /// End a session after this long without a packet; 0 = never. Asterisk stops sending
    /// while a bridge is silent, so keep it well above normal pauses.
    pub idle_timeout_ms: u64,
    /// A reserved session that receives no packet for this long ends (and frees its port),
    /// when shorter than `idle_timeout_ms`; 0 = only `idle_timeout_ms`.
    pub first_media_timeout_ms: u64,
    /// Reorder window: how long packets after a gap wait for it to fill.
    pub jitter_holdback_ms: u64,
    pub jitter_max_packets: usize,
    /// Requests queued from a session to its ASR stream before audio is dropped (counted).
    pub asr_queue: usize,
}

impl Default for SessionSection {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 30_000,
            first_media_timeout_ms: 10_000,
            jitter_holdback_ms: 60,
            jitter_max_packets: 64,
            asr_queue: 256,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VadSection {
    pub aggressiveness: u8,
    pub preroll_ms: u32,
    pub hangover_ms: u32,
    pub min_speech_ms: u32,
    pub max_utterance_ms: u32,
    pub frame_ms: u32,
}

impl Default for VadSection {
    fn default() -> Self {
        let d = VadConfig::default();
        Self {
            aggressiveness: d.aggressiveness,
            preroll_ms: d.preroll_ms,
            hangover_ms: d.hangover_ms,
            min_speech_ms: d.min_speech_ms,
            max_utterance_ms: d.max_utterance_ms,
            frame_ms: d.frame_ms,
        }
    }
}

/// What one recognition stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AsrMode {
    /// One stream per VAD utterance, pre-roll included.
    Utterance,
    /// One stream for the whole call, with end-of-speech markers.
    Call,
}

impl AsrMode {
    pub fn name(self) -> &'static str {
        match self {
            AsrMode::Utterance => "utterance",
            AsrMode::Call => "call",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsrSection {
    /// `http://host:port` of an `asr.v1.Recognizer`; unset = start the embedded engine in-process.
    pub endpoint: Option<String>,
    pub mode: AsrMode,
    /// Audio per gRPC message, 20 to 100 ms.
    pub chunk_ms: u32,
    /// Rate the engine receives, Hz (8000 or 16000).
    pub sample_rate: u32,
    pub language: String,
    pub interim_results: bool,
    pub hints: Vec<String>,
    pub connect_timeout_ms: u64,
    /// After a stream is closed, how long to wait for its final result.
    pub final_timeout_ms: u64,
    /// Call mode: first wait before a failed engine stream is opened again, ms; doubles per
    /// failure up to `retry_max_ms`. One `asr.error` per failure episode, one `asr.recovered`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Call mode: audio kept for the retry while the engine is down, ms (older is dropped).
    pub retry_keep_ms: u64,
    /// CA and client certificate for an `https://` endpoint.
    pub tls: TlsSettings,
    /// Named engines (`[asr.engines.NAME]`, see config/engines.rs); instead of `endpoint`.
    pub engines: BTreeMap<String, EngineEntry>,
    /// Profile name → engine names in priority order; `default` is used when a call names none.
    pub profiles: BTreeMap<String, Vec<String>>,
    /// A failed engine sits out this long before one stream probes it, ms; doubles per
    /// failed probe up to `breaker_max_cooldown_ms`.
    pub breaker_cooldown_ms: u64,
    pub breaker_max_cooldown_ms: u64,
    /// Audio kept per stream since its last final, for a failover to replay, ms.
    pub failover_replay_ms: u64,
}

impl Default for AsrSection {
    fn default() -> Self {
        Self {
            endpoint: None,
            mode: AsrMode::Utterance,
            chunk_ms: 100,
            sample_rate: 16000,
            language: "en".into(),
            interim_results: false,
            hints: Vec::new(),
            connect_timeout_ms: 2000,
            final_timeout_ms: 15_000,
            retry_initial_ms: 250,
            retry_max_ms: 10_000,
            retry_keep_ms: 10_000,
            tls: TlsSettings::default(),
            engines: BTreeMap::new(),
            profiles: BTreeMap::new(),
            breaker_cooldown_ms: 5_000,
            breaker_max_cooldown_ms: 60_000,
            failover_replay_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// A CTranslate2 Whisper model directory.
    pub model_dir: PathBuf,
    /// Decoding threads; 0 = number of cores.
    pub workers: usize,
    /// Utterances waiting for a worker before the engine answers "busy".
    pub queue: usize,
    /// Interim results by re-decoding every this many ms; 0 = finals only.
    pub interim_interval_ms: u64,
    /// Where the in-process engine listens (loopback; port 0 = any free port).
    pub listen: SocketAddr,
}

impl Default for EngineSection {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::from("models/whisper-tiny.en"),
            workers: 0,
            queue: 16,
            interim_interval_ms: 0,
            listen: "127.0.0.1:0".parse().expect("literal"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    /// Sinks to publish every event to, any of `stdout`, `rabbitmq`, `nats`, `redis`, `webhook`.
    pub sinks: Vec<String>,
    pub rabbitmq: RabbitConfig,
    pub nats: NatsConfig,
    pub redis: RedisConfig,
    pub webhook: WebhookConfig,
}

impl Default for EventsSection {
    fn default() -> Self {
        Self {
            sinks: vec!["stdout".into()],
            rabbitmq: RabbitConfig::default(),
            nats: NatsConfig::default(),
            redis: RedisConfig::default(),
            webhook: WebhookConfig::default(),
        }
    }
}

pub const KNOWN_SINKS: &[&str] = &["stdout", "rabbitmq", "nats", "redis", "webhook"];

/// Where commands from call logic come in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsSection {
    /// Any of `http` (`POST /v1/commands`), `rabbitmq`, `nats`, `redis`.
    pub sources: Vec<String>,
    pub rabbitmq: RabbitCommandsConfig,
    pub nats: NatsCommandsConfig,
    pub redis: RedisCommandsConfig,
}

impl Default for CommandsSection {
    fn default() -> Self {
        Self {
            sources: vec!["http".into()],
            rabbitmq: RabbitCommandsConfig::default(),
            nats: NatsCommandsConfig::default(),
            redis: RedisCommandsConfig::default(),
        }
    }
}

pub const KNOWN_COMMAND_SOURCES: &[&str] = &["http", "rabbitmq", "nats", "redis"];

impl Config {
    /// Load `path` (or defaults when None), apply `ASRGW_*` overrides from `env`, validate.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut doc = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: path.to_owned(),
                        message: e.message().to_owned(),
                    })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut doc, env)?;
        Self::from_table(doc)
    }

    /// Parse a TOML document (no environment), validate.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let doc = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::Syntax {
                path: PathBuf::from("<inline>"),
                message: e.message().to_owned(),
            })?;
        Self::from_table(doc)
    }

    fn from_table(doc: toml::Table) -> Result<Self, ConfigError> {
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(doc)).map_err(|e| {
                ConfigError::Field {
                    key: e.path().to_string(),
                    message: e.inner().message().to_owned(),
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        self.validate_api_access()?;
        check(
            s.rtp_port_min > 0 && s.rtp_port_min <= s.rtp_port_max,
            "server.rtp_port_min",
            s.rtp_port_min,
            || format!("1..={} (server.rtp_port_max)", s.rtp_port_max),
        )?;
        let v = &self.vad;
        check(
            v.aggressiveness <= 3,
            "vad.aggressiveness",
            v.aggressiveness,
            || "0, 1, 2 or 3".into(),
        )?;
        check(
            matches!(v.frame_ms, 10 | 20 | 30),
            "vad.frame_ms",
            v.frame_ms,
            || "10, 20 or 30".into(),
        )?;
        check(
            v.max_utterance_ms >= 1000,
            "vad.max_utterance_ms",
            v.max_utterance_ms,
            || ">= 1000".into(),
        )?;
        check(v.preroll_ms <= 2000, "vad.preroll_ms", v.preroll_ms, || {
            "0..=2000".into()
        })?;
        let a = &self.asr;
        check(
            (20..=100).contains(&a.chunk_ms),
            "asr.chunk_ms",
            a.chunk_ms,
            || "20..=100".into(),
        )?;
        check(
            matches!(a.sample_rate, 8000 | 16000),
            "asr.sample_rate",
            a.sample_rate,
            || "8000 or 16000".into(),
        )?;
        if let Some(endpoint) = &a.endpoint {
            check(
                endpoint.starts_with("http://") || endpoint.starts_with("https://"),
                "asr.endpoint",
                format!("{endpoint:?}"),
                || "an http:// or https:// URL".into(),
            )?;
        }
        self.validate_engines()?;
        if self.uses_embedded_engine() {
            check(
                a.sample_rate == 16000,
                "asr.sample_rate",
                a.sample_rate,
                || "16000 with the embedded engine (set asr.endpoint for another engine)".into(),
            )?;
        }
        check(
            self.session.asr_queue > 0,
            "session.asr_queue",
            self.session.asr_queue,
            || ">= 1".into(),
        )?;
        check(
            self.engine.queue > 0,
            "engine.queue",
            self.engine.queue,
            || ">= 1".into(),
        )?;
        for sink in &self.events.sinks {
            check(
                KNOWN_SINKS.contains(&sink.as_str()),
                "events.sinks",
                format!("{sink:?}"),
                || KNOWN_SINKS.join(", "),
            )?;
        }
        for source in &self.commands.sources {
            check(
                KNOWN_COMMAND_SOURCES.contains(&source.as_str()),
                "commands.sources",
                format!("{source:?}"),
                || KNOWN_COMMAND_SOURCES.join(", "),
            )?;
        }
        if self.sink_enabled("nats") {
            self.events
                .nats
                .validate()
                .map_err(|e| invalid_section("events.nats", e))?;
        }
        if self.sink_enabled("webhook") {
            let url = &self.events.webhook.url;
            check(
                url.expose().starts_with("http://") || url.expose().starts_with("https://"),
                "events.webhook.url",
                format!("{url:?}"),
                || "an http:// or https:// URL".into(),
            )?;
        }
        if self.commands.sources.iter().any(|s| s == "nats") {
            self.commands
                .nats
                .validate()
                .map_err(|e| invalid_section("commands.nats", e))?;
        }
        let o = &self.outbox;
        check(
            o.memory_events > 0,
            "outbox.memory_events",
            o.memory_events,
            || ">= 1".into(),
        )?;
        check(o.batch_max > 0, "outbox.batch_max", o.batch_max, || {
            ">= 1".into()
        })?;
        self.payload_map()?;
        if let Some((key, value, allowed)) = self.ari.problems() {
            return Err(ConfigError::Invalid {
                key,
                value,
                allowed,
            });
        }
        self.check_tls_files()
    }

    /// Load every TLS file a running gateway would use, so a missing or broken one fails
    /// here, naming its key, rather than at the first connection.
    fn check_tls_files(&self) -> Result<(), ConfigError> {
        let mut used: Vec<(&TlsSettings, String)> = Vec::new();
        if self.asr.endpoint.is_some() {
            used.push((&self.asr.tls, "asr.tls".into()));
        }
        for (name, engine) in &self.asr.engines {
            let remote = engine.endpoint != engines::EMBEDDED;
            match &engine.tls {
                Some(tls) if remote => used.push((tls, format!("asr.engines.{name}.tls"))),
                None if remote => used.push((&self.asr.tls, "asr.tls".into())),
                _ => {}
            }
        }
        for (i, server) in self.ari.servers.iter().enumerate() {
            used.push((&server.tls, format!("ari.servers[{i}].tls")));
        }
        let e = &self.events;
        for (sink, tls) in [
            ("rabbitmq", &e.rabbitmq.tls),
            ("nats", &e.nats.tls),
            ("redis", &e.redis.tls),
            ("webhook", &e.webhook.tls),
        ] {
            if self.sink_enabled(sink) {
                used.push((tls, format!("events.{sink}.tls")));
            }
        }
        let c = &self.commands;
        for (source, tls) in [
            ("rabbitmq", &c.rabbitmq.tls),
            ("nats", &c.nats.tls),
            ("redis", &c.redis.tls),
        ] {
            if c.sources.iter().any(|s| s == source) {
                used.push((tls, format!("commands.{source}.tls")));
            }
        }
        for (settings, section) in used {
            settings.load(&section)?;
        }
        self.server_tls()?;
        Ok(())
    }

    /// The HTTP API's certificate and key, when `server.tls_cert` and `server.tls_key` are set.
    pub fn server_tls(&self) -> Result<Option<crate::tls::ServerTls>, ConfigError> {
        let s = &self.server;
        match (&s.tls_cert, &s.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(crate::tls::ServerTls::load(
                "server.tls_cert",
                cert,
                "server.tls_key",
                key,
                &[b"http/1.1"],
            )?)),
            (Some(_), None) => Err(TlsError::Unpaired {
                key: "server.tls_cert".into(),
                other: "server.tls_key".into(),
            }
            .into()),
            (None, Some(_)) => Err(TlsError::Unpaired {
                key: "server.tls_key".into(),
                other: "server.tls_cert".into(),
            }
            .into()),
        }
    }

    pub fn sink_enabled(&self, name: &str) -> bool {
        self.events.sinks.iter().any(|s| s == name)
    }

    pub fn payload_map(&self) -> Result<PayloadTypeMap, ConfigError> {
        let mut map = PayloadTypeMap::default();
        for (pt, codec) in &self.payload_types {
            let key = format!("payload_types.\"{pt}\"");
            let number: u8 =
                pt.parse()
                    .ok()
                    .filter(|n| *n <= 127)
                    .ok_or_else(|| ConfigError::Invalid {
                        key: key.clone(),
                        value: pt.clone(),
                        allowed: "a payload type 0..=127 as the key".into(),
                    })?;
            let kind = CodecKind::from_name(codec).ok_or_else(|| ConfigError::Invalid {
                key,
                value: format!("{codec:?}"),
                allowed: "pcmu, pcma, g722, opus, telephone-event, l16/<rate>, or Asterisk's ulaw, alaw, slin, slin16, ...".into(),
            })?;
            map.set(number, Some(kind));
        }
        Ok(map)
    }

    pub fn vad(&self) -> VadConfig {
        let v = &self.vad;
        VadConfig {
            aggressiveness: v.aggressiveness,
            preroll_ms: v.preroll_ms,
            hangover_ms: v.hangover_ms,
            min_speech_ms: v.min_speech_ms,
            max_utterance_ms: v.max_utterance_ms,
            frame_ms: v.frame_ms,
        }
    }

    /// Jitter settings for a stream with the given RTP clock.
    pub fn jitter(&self, clock_rate: u32) -> JitterConfig {
        JitterConfig {
            holdback: Duration::from_millis(self.session.jitter_holdback_ms),
            clock_rate,
            max_packets: self.session.jitter_max_packets.max(1),
        }
    }

    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.session.idle_timeout_ms > 0)
            .then(|| Duration::from_millis(self.session.idle_timeout_ms))
    }

    pub fn client(&self, endpoint: String) -> ClientConfig {
        ClientConfig {
            endpoint,
            tls: self.asr.tls.clone(),
            connect_timeout: Duration::from_millis(self.asr.connect_timeout_ms),
            final_timeout: Duration::from_millis(self.asr.final_timeout_ms),
        }
    }

    pub fn engine(&self) -> EngineConfig {
        let e = &self.engine;
        EngineConfig {
            model_dir: e.model_dir.clone(),
            workers: if e.workers == 0 {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            } else {
                e.workers
            },
            queue: e.queue,
            interim_interval: (e.interim_interval_ms > 0)
                .then(|| Duration::from_millis(e.interim_interval_ms)),
        }
    }

    /// CloudEvents `source` of this gateway.
    pub fn event_source(&self) -> String {
        let instance = self.server.instance.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into())
        });
        format!("/asr-gateway/{instance}")
    }
}

fn invalid_section(section: &str, error: impl std::fmt::Display) -> ConfigError {
    ConfigError::Field {
        key: section.into(),
        message: error.to_string(),
    }
}

impl Config {
    /// Call mode's retry of a failed engine stream.
    pub fn call_retry(&self) -> crate::media::session::RetryPolicy {
        let a = &self.asr;
        crate::media::session::RetryPolicy {
            initial_backoff: Duration::from_millis(a.retry_initial_ms),
            max_backoff: Duration::from_millis(a.retry_max_ms.max(a.retry_initial_ms)),
            keep_samples: (a.retry_keep_ms * a.sample_rate as u64 / 1000) as usize,
            stable_after: Duration::from_millis(a.retry_max_ms.clamp(1000, 5000)),
        }
    }

    /// Tokens long enough, known public paths, and no open API on a reachable address.
    fn validate_api_access(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        for (i, token) in s.api_tokens.iter().enumerate() {
            check(
                token.expose().len() >= 16 && token.expose().bytes().all(|b| b.is_ascii_graphic()),
                &format!("server.api_tokens[{i}]"),
                token,
                || "at least 16 printable ASCII characters, no spaces".into(),
            )?;
        }
        for path in &s.public_paths {
            check(
                crate::control::auth::OPTIONALLY_PUBLIC.contains(&path.as_str()),
                "server.public_paths",
                path,
                || crate::control::auth::OPTIONALLY_PUBLIC.join(", "),
            )?;
        }
        check(
            !s.api_tokens.is_empty() || s.http_listen.ip().is_loopback() || s.allow_unauthenticated,
            "server.api_tokens",
            "[]",
            || {
                format!(
                    "at least one token while server.http_listen ({}) is not a loopback address \
                     (or set server.allow_unauthenticated = true)",
                    s.http_listen
                )
            },
        )?;
        check(
            (10..=600_000).contains(&self.asr.retry_initial_ms),
            "asr.retry_initial_ms",
            self.asr.retry_initial_ms,
            || "10..=600000".into(),
        )?;
        check(
            self.asr.retry_keep_ms <= 60_000,
            "asr.retry_keep_ms",
            self.asr.retry_keep_ms,
            || "0..=60000".into(),
        )?;
        check(
            s.http_max_connections >= 1,
            "server.http_max_connections",
            s.http_max_connections,
            || ">= 1".into(),
        )?;
        check(
            s.http_header_timeout_ms >= 100,
            "server.http_header_timeout_ms",
            s.http_header_timeout_ms,
            || ">= 100".into(),
        )?;
        check(
            s.http_idle_timeout_ms >= 100,
            "server.http_idle_timeout_ms",
            s.http_idle_timeout_ms,
            || ">= 100".into(),
        )?;
        check(
            s.http_body_limit >= 1024,
            "server.http_body_limit",
            s.http_body_limit,
            || ">= 1024".into(),
        )
    }
}

fn check<V: std::fmt::Display>(
    ok: bool,
    key: &str,
    value: V,
    allowed: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: key.into(),
            value: value.to_string(),
            allowed: allowed(),
        })
    }
}

/// `ASRGW_VAD__HANGOVER_MS=800` sets `vad.hangover_ms = 800`. Values parse as TOML
/// (numbers, booleans, arrays), falling back to a plain string.
fn apply_env(
    doc: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, raw) in env {
        let Some(path) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(|k| k.is_empty()) {
            return Err(ConfigError::Env {
                var,
                message: "expected ASRGW_<SECTION>__<KEY>".into(),
            });
        }
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw));
        let (last, parents) = keys.split_last().expect("split gives at least one key");
        let mut table = &mut *doc;
        for key in parents {
            let entry = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        message: format!("`{key}` is not a section"),
                    })
                }
            };
        }
        table.insert(last.clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.asr.mode, AsrMode::Utterance);
        assert_eq!(c.vad().preroll_ms, 300);
        assert_eq!(c.vad().hangover_ms, 600);
        assert_eq!(c.session.jitter_holdback_ms, 60);
        assert_eq!(c.idle_timeout(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("[vad]\nhangover = 3\n");
        assert!(e.contains("hangover"), "{e}");
        assert!(e.contains("hangover_ms"), "should list allowed keys: {e}");
    }

    #[test]
    fn bad_enum_names_key_and_values() {
        let e = err("[asr]\nmode = \"sentence\"\n");
        assert!(e.contains("asr.mode"), "{e}");
        assert!(e.contains("utterance") && e.contains("call"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_key_and_range() {
        let e = err("[vad]\naggressiveness = 7\n");
        assert!(
            e.contains("vad.aggressiveness") && e.contains("0, 1, 2 or 3"),
            "{e}"
        );
        let e = err("[asr]\nchunk_ms = 500\n");
        assert!(e.contains("asr.chunk_ms") && e.contains("20..=100"), "{e}");
        let e = err("[server]\nrtp_port_min = 5000\nrtp_port_max = 4000\n");
        assert!(e.contains("server.rtp_port_min"), "{e}");
        let e = err("[events]\nsinks = [\"kafka\"]\n");
        assert!(
            e.contains("events.sinks") && e.contains("stdout") && e.contains("nats"),
            "{e}"
        );
        let e = err("[commands]\nsources = [\"smtp\"]\n");
        assert!(e.contains("commands.sources") && e.contains("http"), "{e}");
        let e = err("[events]\nsinks = [\"webhook\"]\n");
        assert!(e.contains("events.webhook.url"), "{e}");
        let e = err("[events.redis]\nstream_per = \"galaxy\"\n");
        assert!(e.contains("events.redis.stream_per"), "{e}");
    }

    #[test]
    fn wrong_type_names_key() {
        let e = err("[session]\nidle_timeout_ms = \"soon\"\n");
        assert!(e.contains("session.idle_timeout_ms"), "{e}");
    }

    #[test]
    fn payload_type_overrides() {
        let c = Config::from_toml("[payload_types]\n\"96\" = \"opus\"\n").unwrap();
        assert_eq!(c.payload_map().unwrap().get(96), Some(CodecKind::Opus));
        let e = err("[payload_types]\n\"96\" = \"mp3\"\n");
        assert!(
            e.contains("payload_types") && e.contains("mp3") && e.contains("pcmu"),
            "{e}"
        );
        let e = err("[payload_types]\n\"300\" = \"pcmu\"\n");
        assert!(e.contains("0..=127"), "{e}");
    }

    #[test]
    fn api_access_rules() {
        let e = err("[server]\nhttp_listen = \"0.0.0.0:8080\"\n");
        assert!(
            e.contains("server.api_tokens") && e.contains("allow_unauthenticated"),
            "{e}"
        );
        let open = "[server]\nhttp_listen = \"0.0.0.0:8080\"\nallow_unauthenticated = true\n";
        assert!(Config::from_toml(open).is_ok());
        let e = err("[server]\napi_tokens = [\"short\"]\n");
        assert!(
            e.contains("server.api_tokens[0]") && e.contains("at least 16"),
            "{e}"
        );
        assert!(!e.contains("short"), "a token is echoed: {e}");
        let e = err("[server]\npublic_paths = [\"/v1/sessions\"]\n");
        assert!(e.contains("server.public_paths"), "{e}");
        let env = vec![(
            "ASRGW_SERVER__API_TOKENS".to_string(),
            "first-token-0123456789,second-token-0123456789".to_string(),
        )];
        let c = Config::load(None, env).unwrap();
        let tokens: Vec<&str> = c.server.api_tokens.iter().map(|t| t.expose()).collect();
        assert_eq!(
            tokens,
            ["first-token-0123456789", "second-token-0123456789"]
        );
        let remote =
            "[server]\nhttp_listen = \"0.0.0.0:8080\"\napi_tokens = \"a-long-enough-token-1\"\n";
        assert!(Config::from_toml(remote).is_ok());
    }

    #[test]
    fn env_overrides_file_values() {
        let env = vec![
            ("ASRGW_VAD__HANGOVER_MS".to_string(), "800".to_string()),
            (
                "ASRGW_ASR__ENDPOINT".to_string(),
                "http://10.1.2.3:50051".to_string(),
            ),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let c = Config::load(None, env).unwrap();
        assert_eq!(c.vad.hangover_ms, 800);
        assert_eq!(c.asr.endpoint.as_deref(), Some("http://10.1.2.3:50051"));
    }

    #[test]
    fn env_errors_name_the_variable() {
        let env = vec![("ASRGW_VAD__AGGRESSIVENESS".to_string(), "9".to_string())];
        let e = Config::load(None, env).unwrap_err().to_string();
        assert!(e.contains("vad.aggressiveness"), "{e}");
    }
}
