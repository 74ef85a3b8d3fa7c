//! Redis Streams sink: XADD with an approximate MAXLEN cap, one stream per app or per call.
//!
//! Each batch is one pipeline of XADDs (one entry per event, in batch order) on one
//! multiplexed connection; `publish` is Ok only once Redis answered every XADD with an entry
//! id. Entry fields: `id` (CloudEvents id, stable across retries), `type`, `call_id`, `event`
//! (the CloudEvents JSON, byte for byte).
//!
//! Connection: a `redis::aio::ConnectionManager`, created lazily on the first publish, so
//! building the sink and starting the gateway never fail because Redis is down. A publish
//! while Redis is unreachable fails with `SinkError::Unavailable` (or `Timeout`), and the
//! manager reconnects in the background; the outbox's retry then succeeds once Redis is back.
//! A pipeline cut off midway may have written a prefix of the batch: the retry writes those
//! events again with the same `id` field, so consumers dedup by `id` (at-least-once).
//!
//! TLS: a `rediss://` url connects over TLS; the server's certificate must chain to
//! `tls.ca_file` (else the bundled Mozilla roots), and `tls.client_cert_file` +
//! `client_key_file` are presented when set ([`open_client`], shared with the commands).

use std::borrow::Cow;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};
use tokio::sync::OnceCell;

use crate::events::outgoing::OutgoingEvent;
use crate::events::sink::{Sink, SinkError, SinkFuture};
use crate::tls::{ClientTls, TlsError, TlsSettings};

const SINK: &str = "redis";

/// Which stream key an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamPer {
    /// Every event in one stream, `stream`.
    #[default]
    App,
    /// One stream per call, `<stream>:<call id>`.
    Call,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://...` for TLS.
    pub url: crate::secret::SecretUrl,
    pub stream_per: StreamPer,
    /// The stream key (per-app mode) or the key prefix (per-call mode: `<stream>:<call id>`).
    pub stream: String,
    /// Approximate cap (`MAXLEN ~`) on every stream written, per-call streams included.
    /// Redis trims whole macro nodes, so a stream may hold somewhat more. 0 = no cap.
    pub maxlen: usize,
    /// Bound on one publish (connecting included) and on each Redis reply.
    pub timeout_ms: u64,
    /// CA and client certificate for a `rediss://` url.
    pub tls: TlsSettings,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            stream_per: StreamPer::App,
            stream: "asr:events".into(),
            maxlen: 100_000,
            timeout_ms: 5_000,
            tls: TlsSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisSinkError {
    #[error("redis sink: invalid url {url:?}: {source}")]
    Url {
        url: crate::secret::SecretUrl,
        #[source]
        source: RedisError,
    },
    #[error("redis sink: {0}")]
    Tls(#[from] TlsError),
}

/// The Redis Streams sink. Cheap to share; `publish` may be called concurrently, but the
/// outbox calls it one batch at a time, which is what keeps per-call order across batches.
pub struct RedisSink {
    client: redis::Client,
    config: RedisConfig,
    timeout: Duration,
    /// Created on first use (needs a tokio runtime); reconnects by itself afterwards.
    connection: OnceCell<ConnectionManager>,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisSink {
    /// Check the URL; no connection is made here (see the module docs).
    pub fn new(config: RedisConfig) -> Result<Self, RedisSinkError> {
        let tls = config.tls.load("events.redis.tls")?;
        let client =
            open_client(config.url.expose(), &tls).map_err(|source| RedisSinkError::Url {
                url: config.url.clone(),
                source,
            })?;
        Ok(Self {
            client,
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            config,
            connection: OnceCell::new(),
        })
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The stream key `event` is written to.
    pub fn stream_key(&self, event: &OutgoingEvent) -> Cow<'_, str> {
        match self.config.stream_per {
            StreamPer::App => Cow::Borrowed(&self.config.stream),
            StreamPer::Call => Cow::Owned(format!("{}:{}", self.config.stream, event.call_id)),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, SinkError> {
        self.connection
            .get_or_try_init(|| async {
                // Few, short reconnect attempts per try: the outbox owns the long backoff,
                // and a publish must fail within `timeout` rather than hang on retries.
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(100))
                    .set_max_delay(Duration::from_secs(1));
                ConnectionManager::new_lazy_with_config(self.client.clone(), manager_config)
            })
            .await
            .cloned()
            .map_err(|e| classify(&e))
    }

    fn pipeline(&self, events: &[OutgoingEvent]) -> redis::Pipeline {
        let mut pipe = redis::Pipeline::with_capacity(events.len());
        for event in events {
            pipe.cmd("XADD").arg(self.stream_key(event).as_ref());
            if self.config.maxlen > 0 {
                pipe.arg("MAXLEN").arg("~").arg(self.config.maxlen);
            }
            pipe.arg("*")
                .arg("id")
                .arg(event.id.to_string())
                .arg("type")
                .arg(event.kind.as_str())
                .arg("call_id")
                .arg(event.call_id.as_str())
                .arg("event")
                .arg(event.json.as_ref());
        }
        pipe
    }
}

/// A client for `url`: over TLS with `tls` for `rediss://`, plain otherwise.
pub(crate) fn open_client(url: &str, tls: &ClientTls) -> Result<redis::Client, RedisError> {
    if !url.starts_with("rediss://") {
        return redis::Client::open(url);
    }
    // redis builds its rustls configuration on the process-wide provider.
    crate::tls::install_default_provider();
    let certificates = redis::TlsCertificates {
        client_tls: tls
            .identity_pem()
            .map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.to_vec(),
                client_key: key.to_vec(),
            }),
        root_cert: tls.ca_pem().map(<[u8]>::to_vec),
    };
    redis::Client::build_with_tls(url, certificates)
}

impl Sink for RedisSink {
    fn name(&self) -> &'static str {
        SINK
    }

    fn publish<'a>(&'a self, events: &'a [OutgoingEvent]) -> SinkFuture<'a> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            let pipe = self.pipeline(events);
            let attempt = async {
                let mut conn = self.connection().await?;
                pipe.query_async::<Vec<Value>>(&mut conn)
                    .await
                    .map_err(|e| classify(&e))
            };
            let replies = tokio::time::timeout(self.timeout, attempt)
                .await
                .map_err(|_| SinkError::Timeout {
                    sink: SINK,
                    after_ms: self.timeout.as_millis() as u64,
                })??;
            // Invariant for Ok: one entry id per event. Anything else is not a confirmation.
            let confirmed = replies
                .iter()
                .filter(|v| matches!(v, Value::BulkString(_) | Value::SimpleString(_)))
                .count();
            if confirmed != events.len() {
                return Err(SinkError::Rejected {
                    sink: SINK,
                    detail: format!(
                        "{confirmed} entry ids for {} XADDs ({} replies)",
                        events.len(),
                        replies.len()
                    ),
                });
            }
            Ok(())
        })
    }
}

/// Connection trouble and transient server states are `Unavailable`; other server errors
/// (e.g. WRONGTYPE: the key holds something else) are `Rejected`.
fn classify(e: &RedisError) -> SinkError {
    let transient = e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::ClusterDown
            )
        );
    if transient {
        SinkError::Unavailable {
            sink: SINK,
            detail: e.to_string(),
        }
    } else {
        tracing::error!(error = %e, "redis refused the XADD pipeline");
        SinkError::Rejected {
            sink: SINK,
            detail: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn event(call: &str) -> OutgoingEvent {
        OutgoingEvent {
            id: uuid::Uuid::new_v4(),
            kind: "asr.speech.started".into(),
            call_id: call.into(),
            json: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn config_defaults_and_parsing() {
        let c = RedisConfig::default();
        assert_eq!(c.url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(c.stream_per, StreamPer::App);
        assert_eq!(
            (c.stream.as_str(), c.maxlen, c.timeout_ms),
            ("asr:events", 100_000, 5_000)
        );
        let c: RedisConfig = toml::from_str("stream_per = \"call\"\nmaxlen = 10").unwrap();
        assert_eq!((c.stream_per, c.maxlen), (StreamPer::Call, 10));
        assert!(toml::from_str::<RedisConfig>("streams = \"x\"").is_err());
        assert!(toml::from_str::<RedisConfig>("stream_per = \"session\"").is_err());
    }

    #[test]
    fn stream_keys_per_app_and_per_call() {
        let app = RedisSink::new(RedisConfig::default()).unwrap();
        assert_eq!(app.stream_key(&event("c1")), "asr:events");
        let call = RedisSink::new(RedisConfig {
            stream_per: StreamPer::Call,
            ..RedisConfig::default()
        })
        .unwrap();
        assert_eq!(call.stream_key(&event("c1")), "asr:events:c1");
    }

    #[test]
    fn bad_url_fails_at_construction() {
        let err = RedisSink::new(RedisConfig {
            url: "http://nope".into(),
            ..RedisConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("invalid url"), "{err}");
    }

    #[tokio::test]
    async fn down_at_startup_is_unavailable_not_a_panic() {
        // Port 1 on loopback: nothing listens there.
        let sink = RedisSink::new(RedisConfig {
            url: "redis://127.0.0.1:1".into(),
            timeout_ms: 2_000,
            ..RedisConfig::default()
        })
        .unwrap();
        let err = sink.publish(&[event("c")]).await.unwrap_err();
        assert!(
            matches!(
                err,
                SinkError::Unavailable { .. } | SinkError::Timeout { .. }
            ),
            "{err}"
        );
        assert!(sink.publish(&[]).await.is_ok());
    }
}
