//! NATS JetStream sink: stream created if missing, pipelined acked publishes, `Nats-Msg-Id` = event id.
//!
//! Subject of an event: `<subject_prefix>.<call id>.<event type>`, e.g.
//! `asr.1700000000_42.asr.transcript.final`. The call id becomes one subject token: `.`, `*`, `>`
//! and whitespace in it are replaced by `_` (the exact call id is in the body, `subject`).
//!
//! Delivery: every message carries `Nats-Msg-Id` = CloudEvents id, so a batch the outbox retries
//! after a lost ack is stored once as long as the retry lands within the stream's duplicate
//! window (`duplicate_window_s`). `publish` sends the whole batch, then awaits every PubAck.
//!
//! Server down or restarting: the client connects in the background (`retry_on_initial_connect`)
//! and reconnects by itself forever. `NatsSink::connect` waits at most `INITIAL_CONNECT_WAIT` for
//! the first connection and then returns anyway, so a gateway starts with NATS down. While not
//! connected, `publish` fails at once with `SinkError::Unavailable` (nothing is queued in the
//! client); a connection lost mid-batch ends in `Timeout` after at most `ack_timeout_ms`.
//! The stream is looked up (or created) on the first publish after connecting, and again after
//! the server answers "no stream".
//!
//! TLS: a `tls://` url requires it; a `nats://` server that asks for TLS gets it too. Either
//! way the server's certificate must chain to `tls.ca_file` (else the bundled Mozilla
//! roots), and `tls.client_cert_file` + `client_key_file` are presented when set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};

use crate::events::outgoing::OutgoingEvent;
use crate::events::sink::{Sink, SinkError, SinkFuture};
use crate::tls::{ClientTls, TlsError, TlsSettings};

const SINK: &str = "nats";

/// How long `NatsSink::connect` waits for the first connection before returning without one.
pub const INITIAL_CONNECT_WAIT: Duration = Duration::from_secs(2);

/// Acks in flight per client (async-nats default 5 000). Above any sane batch so that a batch
/// never waits on a permit held by one of its own unawaited acks.
const MAX_ACK_INFLIGHT: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL, e.g. `nats://127.0.0.1:4222` or `tls://nats.example:4222`.
    pub url: crate::secret::SecretUrl,
    /// JetStream stream name; created (file storage) if missing, left as is if present.
    pub stream: String,
    /// First subject token(s); the stream captures `<subject_prefix>.>`.
    pub subject_prefix: String,
    /// Server-side dedup window of the stream, seconds: a retry within it is stored once.
    pub duplicate_window_s: u64,
    /// Longest a batch may take from its first send to its last PubAck, ms.
    pub ack_timeout_ms: u64,
    /// CA and client certificate for TLS.
    pub tls: TlsSettings,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            stream: "ASR_EVENTS".into(),
            subject_prefix: "asr".into(),
            duplicate_window_s: 120,
            ack_timeout_ms: 5_000,
            tls: TlsSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("nats: `{field}` = {value:?} is invalid: {reason}")]
    InvalidConfig {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("nats: cannot use server url {url:?}: {source}")]
    Url {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("nats: {0}")]
    Tls(#[from] TlsError),
}

impl NatsConfig {
    /// Reject values the server would refuse later with a less clear message.
    pub fn validate(&self) -> Result<(), NatsError> {
        let invalid = |field, value: &str, reason| NatsError::InvalidConfig {
            field,
            value: value.to_owned(),
            reason,
        };
        check_name(&self.stream).map_err(|r| invalid("stream", &self.stream, r))?;
        check_subject(&self.subject_prefix, false)
            .map_err(|r| invalid("subject_prefix", &self.subject_prefix, r))?;
        if self.duplicate_window_s == 0 {
            return Err(invalid(
                "duplicate_window_s",
                "0",
                "must be > 0: retries are deduplicated only within it",
            ));
        }
        if self.ack_timeout_ms == 0 {
            return Err(invalid("ack_timeout_ms", "0", "must be > 0"));
        }
        Ok(())
    }
}

/// A stream or consumer name: non-empty, no `.`, `*`, `>`, `/`, `\` or whitespace.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name
        .chars()
        .any(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace())
    {
        return Err("must not contain '.', '*', '>', '/', '\\' or whitespace");
    }
    Ok(())
}

/// A literal subject (wildcards refused unless `wildcards`): dot-separated non-empty tokens.
pub(crate) fn check_subject(subject: &str, wildcards: bool) -> Result<(), &'static str> {
    if subject.is_empty() || subject.split('.').any(str::is_empty) {
        return Err("must be dot-separated non-empty tokens");
    }
    if subject.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace");
    }
    if !wildcards && subject.contains(['*', '>']) {
        return Err("must not contain wildcards '*' or '>'");
    }
    Ok(())
}

/// Append `raw` as subject token(s): characters NATS gives a meaning to become `_`; with
/// `split_dots` the dots are kept as token separators (each empty token becomes `_`).
fn push_tokens(subject: &mut String, raw: &str, split_dots: bool) {
    let mut token_empty = true;
    for c in raw.chars() {
        if c == '.' && split_dots {
            if token_empty {
                subject.push('_');
            }
            subject.push('.');
            token_empty = true;
            continue;
        }
        let bad = matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control();
        subject.push(if bad { '_' } else { c });
        token_empty = false;
    }
    if token_empty {
        subject.push('_');
    }
}

/// `<prefix>.<call id as one token>.<event type>`.
pub fn subject_for(prefix: &str, event: &OutgoingEvent) -> String {
    let mut subject =
        String::with_capacity(prefix.len() + event.call_id.len() + event.kind.len() + 2);
    subject.push_str(prefix);
    subject.push('.');
    push_tokens(&mut subject, &event.call_id, false);
    subject.push('.');
    push_tokens(&mut subject, &event.kind, true);
    subject
}

/// Publishes event batches to one JetStream stream. Cheap to share (`Arc<NatsSink>`).
pub struct NatsSink {
    config: NatsConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    /// Set once the stream is known to exist on the current server; cleared when a publish is
    /// answered "no stream" (e.g. a fresh server without our storage).
    stream_ready: AtomicBool,
}

impl NatsSink {
    /// Start the client. Fails only on invalid configuration: an unreachable server is not an
    /// error (publishes fail with `Unavailable` until it is reached).
    pub async fn connect(config: NatsConfig) -> Result<Self, NatsError> {
        config.validate()?;
        let tls = config.tls.load("events.nats.tls")?;
        let client = connect_client(config.url.expose(), "asr-gateway events", &tls).await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(config.ack_timeout_ms))
            .max_ack_inflight(MAX_ACK_INFLIGHT)
            .build(client.clone());
        let sink = Self {
            config,
            client,
            js,
            stream_ready: AtomicBool::new(false),
        };
        if sink.connected() {
            if let Err(err) = sink.ensure_stream().await {
                tracing::warn!(error = %err, "nats: stream not ready yet; retried on publish");
            }
        } else {
            tracing::warn!(url = %sink.config.url,
                "nats: server not reachable; connecting in the background");
        }
        Ok(sink)
    }

    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    /// The JetStream context (tests and tools use it to inspect the stream).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    fn unavailable(detail: impl ToString) -> SinkError {
        SinkError::Unavailable {
            sink: SINK,
            detail: detail.to_string(),
        }
    }

    /// Look the stream up, creating it if missing. An existing stream is not changed.
    async fn ensure_stream(&self) -> Result<(), SinkError> {
        let wanted = stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.>", self.config.subject_prefix)],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(self.config.duplicate_window_s),
            ..Default::default()
        };
        let found = self
            .js
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|err| Self::unavailable(format!("stream {}: {err}", wanted.name)))?;
        let have = &found.cached_info().config;
        if have.duplicate_window != wanted.duplicate_window {
            tracing::warn!(stream = %wanted.name, have_s = have.duplicate_window.as_secs(),
                want_s = self.config.duplicate_window_s,
                "nats: existing stream has another duplicate window; left unchanged");
        }
        if !have.subjects.iter().any(|s| s == &wanted.subjects[0]) {
            tracing::warn!(stream = %wanted.name, subjects = ?have.subjects,
                want = %wanted.subjects[0],
                "nats: existing stream does not list the sink's subjects; left unchanged");
        }
        self.stream_ready.store(true, Ordering::Release);
        Ok(())
    }

    fn map_publish_error(&self, err: PublishError) -> SinkError {
        match err.kind() {
            PublishErrorKind::TimedOut => SinkError::Timeout {
                sink: SINK,
                after_ms: self.config.ack_timeout_ms,
            },
            PublishErrorKind::StreamNotFound => {
                // No responder on the subject: look the stream up again before the next batch.
                self.stream_ready.store(false, Ordering::Release);
                Self::unavailable(err)
            }
            PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
                Self::unavailable(err)
            }
            PublishErrorKind::WrongLastMessageId
            | PublishErrorKind::WrongLastSequence
            | PublishErrorKind::MaxPayloadExceeded
            | PublishErrorKind::Other => SinkError::Rejected {
                sink: SINK,
                detail: err.to_string(),
            },
        }
    }

    async fn publish_batch(&self, events: &[OutgoingEvent]) -> Result<(), SinkError> {
        if !self.connected() {
            return Err(Self::unavailable("not connected to the server"));
        }
        if !self.stream_ready.load(Ordering::Acquire) {
            self.ensure_stream().await?;
        }
        // Pipelined: all messages go out back to back on the one connection (so the stream
        // stores them in batch order), then the acks are awaited in order.
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(events.len());
        for event in events {
            let message = PublishMessage::build()
                .payload(event.json.clone())
                .message_id(event.id.to_string());
            let ack = self
                .js
                .send_publish(subject_for(&self.config.subject_prefix, event), message)
                .await
                .map_err(|err| self.map_publish_error(err))?;
            acks.push(ack);
        }
        for ack in acks {
            // A `duplicate: true` ack means the server already holds this id: delivered.
            ack.await.map_err(|err| self.map_publish_error(err))?;
        }
        Ok(())
    }
}

/// A client that connects in the background and reconnects forever. Only a malformed URL fails.
/// TLS, when the url (`tls://`) or the server asks for it, uses `tls`.
///
/// Credentials in the URL (`nats://user:password@host`, `nats://token@host`) are taken out
/// of it and given to the client apart: the client logs the server address it dials at
/// debug level, and a password must not be in it.
pub(crate) async fn connect_client(
    url: &str,
    name: &str,
    tls: &ClientTls,
) -> Result<async_nats::Client, NatsError> {
    let (url, credentials) = split_credentials(url);
    let url = url.as_str();
    let options = match credentials {
        Some((user, Some(password))) => {
            async_nats::ConnectOptions::with_user_and_password(user, password)
        }
        Some((token, None)) => async_nats::ConnectOptions::with_token(token),
        None => async_nats::ConnectOptions::new(),
    };
    let client = options
        .name(name)
        .tls_client_config(rustls::ClientConfig::clone(&tls.rustls_config()))
        .require_tls(url.starts_with("tls://"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        // A silent peer (no FIN) is noticed after two missed pings.
        .ping_interval(Duration::from_secs(10))
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .map_err(|source| NatsError::Url {
            url: crate::secret::redact_url(url),
            source,
        })?;
    let deadline = Instant::now() + INITIAL_CONNECT_WAIT;
    while client.connection_state() != State::Connected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(client)
}

/// The URL without its userinfo, and the user (or token) and password that were in it.
fn split_credentials(url: &str) -> (String, Option<(String, Option<String>)>) {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return (url.to_owned(), None);
    };
    if parsed.username().is_empty() && parsed.password().is_none() {
        return (url.to_owned(), None);
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(parsed.username());
    let password = parsed.password().map(decode);
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    (parsed.to_string(), Some((user, password)))
}

impl Sink for NatsSink {
    fn name(&self) -> &'static str {
        SINK
    }

    fn publish<'a>(&'a self, events: &'a [OutgoingEvent]) -> SinkFuture<'a> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            let budget = Duration::from_millis(self.config.ack_timeout_ms);
            // The whole batch shares one deadline, so no step (a full client queue during an
            // outage, a lost ack) can hold the caller longer than `ack_timeout_ms`.
            match tokio::time::timeout(budget, self.publish_batch(events)).await {
                Ok(result) => result,
                Err(_) => Err(SinkError::Timeout {
                    sink: SINK,
                    after_ms: self.config.ack_timeout_ms,
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_before_the_client_sees_it() {
        assert_eq!(
            split_credentials("nats://user:p%40ss@127.0.0.1:4222"),
            (
                "nats://127.0.0.1:4222".to_owned(),
                Some(("user".to_owned(), Some("p@ss".to_owned())))
            )
        );
        assert_eq!(
            split_credentials("tls://s3cr3t@h:4222"),
            ("tls://h:4222".to_owned(), Some(("s3cr3t".to_owned(), None)))
        );
        assert_eq!(
            split_credentials("nats://127.0.0.1:4222"),
            ("nats://127.0.0.1:4222".to_owned(), None)
        );
    }
    use bytes::Bytes;
    use uuid::Uuid;

    fn event(call_id: &str, kind: &str) -> OutgoingEvent {
        OutgoingEvent {
            id: Uuid::new_v4(),
            kind: kind.into(),
            call_id: call_id.into(),
            json: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn subject_is_prefix_call_and_type() {
        let e = event("call-7", "asr.transcript.final");
        assert_eq!(subject_for("asr", &e), "asr.call-7.asr.transcript.final");
        assert_eq!(
            subject_for("acme.asr", &e),
            "acme.asr.call-7.asr.transcript.final"
        );
    }

    #[test]
    fn call_id_becomes_one_safe_token() {
        let e = event("1700000000.42", "asr.speech.started");
        assert_eq!(
            subject_for("asr", &e),
            "asr.1700000000_42.asr.speech.started"
        );
        let e = event("a b*c>\td", "asr.error");
        assert_eq!(subject_for("asr", &e), "asr.a_b_c__d.asr.error");
        let e = event("", "asr..x.");
        assert_eq!(subject_for("asr", &e), "asr._.asr._.x._");
        for s in [
            subject_for("asr", &e),
            subject_for("asr", &event("x.y", "t")),
        ] {
            assert!(check_subject(&s, false).is_ok(), "{s}");
        }
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: NatsConfig = toml::from_str("").unwrap();
        assert_eq!(c, NatsConfig::default());
        assert_eq!(c.url.expose(), "nats://127.0.0.1:4222");
        assert_eq!(c.stream, "ASR_EVENTS");
        assert_eq!(c.subject_prefix, "asr");
        assert_eq!(c.duplicate_window_s, 120);
        assert_eq!(c.ack_timeout_ms, 5000);
        assert!(c.validate().is_ok());
        assert!(toml::from_str::<NatsConfig>("stream_name = \"x\"").is_err());
        let c: NatsConfig = toml::from_str("stream = \"E\"\nack_timeout_ms = 10").unwrap();
        assert_eq!((c.stream.as_str(), c.ack_timeout_ms), ("E", 10));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |c: NatsConfig| c.validate().unwrap_err().to_string();
        let base = NatsConfig::default;
        assert!(bad(NatsConfig {
            stream: "a.b".into(),
            ..base()
        })
        .contains("`stream`"));
        assert!(bad(NatsConfig {
            subject_prefix: "asr.>".into(),
            ..base()
        })
        .contains("`subject_prefix`"));
        assert!(bad(NatsConfig {
            subject_prefix: "asr.".into(),
            ..base()
        })
        .contains("`subject_prefix`"));
        assert!(bad(NatsConfig {
            duplicate_window_s: 0,
            ..base()
        })
        .contains("`duplicate_window_s`"));
    }
}
