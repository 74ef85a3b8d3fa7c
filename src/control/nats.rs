//! Command consumer over NATS JetStream: a durable pull consumer shared by every gateway process
//! (competing consumers), ack after handling, `Term` on rejection.
//!
//! Delivery is at least once: a command is acked only after `CommandHandler::handle` returns, so
//! a process that dies first leaves it unacked and the server redelivers it to another process
//! after `ack_wait_s` (at most `max_deliver` deliveries in all). Handlers must be idempotent.
//! While a handler runs longer than half of `ack_wait_s`, "in progress" acks keep the command
//! from being redelivered elsewhere meanwhile.
//!
//! Commands are handled one at a time per process, in the order the server delivers them.
//! Server down or restarting: the client reconnects by itself; whenever the message iterator
//! fails (missed heartbeats, consumer gone, server unreachable) it is rebuilt, stream and
//! consumer included, after a backoff of 100 ms doubling up to 5 s.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer, StreamError};
use async_nats::jetstream::context::CreateStreamError;
use async_nats::jetstream::stream::{self, ConsumerError};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;

use crate::control::commands::{CommandHandler, CommandOutcome};
use crate::events::nats::{check_name, check_subject, connect_client, NatsError};

/// Timeout of JetStream API requests (stream and consumer lookups).
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// A pull request waits this long on the server before it is renewed.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// The server sends a heartbeat this often on an idle pull; two missed ones rebuild the iterator.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsCommandsConfig {
    pub url: crate::secret::SecretUrl,
    /// Work-queue stream holding the commands; created if missing, left as is if present.
    pub stream: String,
    /// Subject call logic publishes commands to (the stream captures exactly this subject).
    pub subject: String,
    /// Durable consumer name; processes bound to the same one share the commands.
    pub durable: String,
    /// Seconds a delivered command may stay unacked before it is redelivered.
    pub ack_wait_s: u64,
    /// Most deliveries of one command (first one included).
    pub max_deliver: i64,
    /// Commands fetched per pull request. Fetched commands wait locally with their `ack_wait`
    /// running, so keep it small: a few handled per second each.
    pub pull_batch: usize,
    /// CA and client certificate for TLS (`tls://` url, or a server that asks for it).
    pub tls: crate::tls::TlsSettings,
}

impl Default for NatsCommandsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            stream: "ASR_COMMANDS".into(),
            // Outside the events stream's `asr.>`: JetStream refuses overlapping streams.
            subject: "asr-commands".into(),
            durable: "asr-gateway".into(),
            ack_wait_s: 30,
            max_deliver: 5,
            pull_batch: 10,
            tls: crate::tls::TlsSettings::default(),
        }
    }
}

impl NatsCommandsConfig {
    pub fn validate(&self) -> Result<(), NatsError> {
        let invalid = |field, value: String, reason| NatsError::InvalidConfig {
            field,
            value,
            reason,
        };
        check_name(&self.stream).map_err(|r| invalid("stream", self.stream.clone(), r))?;
        check_name(&self.durable).map_err(|r| invalid("durable", self.durable.clone(), r))?;
        check_subject(&self.subject, true)
            .map_err(|r| invalid("subject", self.subject.clone(), r))?;
        if self.ack_wait_s == 0 {
            return Err(invalid("ack_wait_s", "0".into(), "must be > 0"));
        }
        if self.max_deliver == 0 || self.max_deliver < -1 {
            return Err(invalid(
                "max_deliver",
                self.max_deliver.to_string(),
                "must be > 0 (or -1 for unlimited)",
            ));
        }
        if self.pull_batch == 0 {
            return Err(invalid("pull_batch", "0".into(), "must be > 0"));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandsError {
    #[error(transparent)]
    Config(#[from] NatsError),
    #[error("nats commands: stream {stream}: {source}")]
    Stream {
        stream: String,
        #[source]
        source: CreateStreamError,
    },
    #[error("nats commands: consumer {durable}: {source}")]
    Consumer {
        durable: String,
        #[source]
        source: ConsumerError,
    },
    #[error("nats commands: cannot start pulling: {0}")]
    Pull(#[source] StreamError),
    #[error("nats commands: message iterator failed: {0}")]
    Messages(#[source] pull::MessagesError),
    #[error("nats commands: message iterator ended")]
    Ended,
}

/// Create the work-queue stream if missing, and create or update the durable pull consumer to
/// this configuration (explicit acks). Idempotent: every process calls it on (re)start.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    config: &NatsCommandsConfig,
) -> Result<PullConsumer, CommandsError> {
    let stream = js
        .get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![config.subject.clone()],
            // A command is removed once acked (or terminated): the stream is a queue, not a log.
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|source| CommandsError::Stream {
            stream: config.stream.clone(),
            source,
        })?;
    stream
        .create_consumer(pull::Config {
            durable_name: Some(config.durable.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(config.ack_wait_s),
            max_deliver: config.max_deliver,
            ..Default::default()
        })
        .await
        .map_err(|source| CommandsError::Consumer {
            durable: config.durable.clone(),
            source,
        })
}

/// Consume commands until `shutdown` completes. Returns an error only for an invalid
/// configuration; an unreachable or restarting server is waited for, never fatal. On shutdown
/// the command being handled is finished and acked first; commands fetched but not yet handled
/// are redelivered after `ack_wait_s`.
pub async fn run(
    config: NatsCommandsConfig,
    handler: Arc<dyn CommandHandler>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CommandsError> {
    config.validate()?;
    let tls = config
        .tls
        .load("commands.nats.tls")
        .map_err(NatsError::from)?;
    let client = connect_client(config.url.expose(), "asr-gateway commands", &tls).await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(API_TIMEOUT)
        .build(client.clone());
    tokio::pin!(shutdown);
    let mut backoff = BACKOFF_INITIAL;
    loop {
        match consume(&js, &config, &*handler, &mut shutdown, &mut backoff).await {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!(error = %err, retry_ms = backoff.as_millis() as u64,
                    "nats commands: consumer interrupted; rebuilding");
            }
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    // Acks are fire-and-forget writes; push out the last ones before the connection closes.
    let _ = tokio::time::timeout(API_TIMEOUT, client.flush()).await;
    Ok(())
}

/// One life of the message iterator. Ok(()) means shutdown was requested.
async fn consume<S: Future<Output = ()> + Unpin>(
    js: &jetstream::Context,
    config: &NatsCommandsConfig,
    handler: &dyn CommandHandler,
    shutdown: &mut S,
    backoff: &mut Duration,
) -> Result<(), CommandsError> {
    let consumer = tokio::select! {
        () = &mut *shutdown => return Ok(()),
        c = ensure_consumer(js, config) => c?,
    };
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(config.pull_batch)
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
        .map_err(CommandsError::Pull)?;
    let ack_wait = Duration::from_secs(config.ack_wait_s);
    loop {
        // Shutdown is only observed between commands: a started command is handled and acked.
        let next = tokio::select! {
            biased;
            () = &mut *shutdown => return Ok(()),
            next = messages.next() => next,
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(err)) => return Err(CommandsError::Messages(err)),
            None => return Err(CommandsError::Ended),
        };
        *backoff = BACKOFF_INITIAL;
        handle_one(&message, handler, ack_wait).await;
    }
}

async fn handle_one(
    message: &jetstream::Message,
    handler: &dyn CommandHandler,
    ack_wait: Duration,
) {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(0);
    if delivered > 1 {
        tracing::info!(delivered, "nats commands: redelivered command");
    }
    let outcome = {
        let handling = handler.handle(&message.payload);
        tokio::pin!(handling);
        let period = ack_wait / 2;
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                outcome = &mut handling => break outcome,
                _ = progress.tick() => {
                    if let Err(err) = message.ack_with(AckKind::Progress).await {
                        tracing::warn!(error = %err, "nats commands: in-progress ack failed");
                    }
                }
            }
        }
    };
    let result = match outcome {
        CommandOutcome::Accepted => message.ack().await,
        CommandOutcome::Rejected { reason } => {
            tracing::warn!(%reason, delivered, "nats commands: command rejected; not redelivered");
            message.ack_with(AckKind::Term).await
        }
    };
    if let Err(err) = result {
        // The server redelivers it after ack_wait: handled twice, hence idempotent handlers.
        tracing::warn!(error = %err, "nats commands: ack failed; command will be redelivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let c: NatsCommandsConfig = toml::from_str("").unwrap();
        assert_eq!(c, NatsCommandsConfig::default());
        assert_eq!(c.url.expose(), "nats://127.0.0.1:4222");
        assert_eq!(c.stream, "ASR_COMMANDS");
        assert_eq!(c.subject, "asr-commands");
        assert_eq!(c.durable, "asr-gateway");
        assert_eq!((c.ack_wait_s, c.max_deliver), (30, 5));
        assert!(c.validate().is_ok());
        assert!(toml::from_str::<NatsCommandsConfig>("queue = \"x\"").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let err = |c: NatsCommandsConfig| c.validate().unwrap_err().to_string();
        let base = NatsCommandsConfig::default;
        assert!(err(NatsCommandsConfig {
            durable: "a.b".into(),
            ..base()
        })
        .contains("`durable`"));
        assert!(err(NatsCommandsConfig {
            subject: "".into(),
            ..base()
        })
        .contains("`subject`"));
        assert!(err(NatsCommandsConfig {
            max_deliver: 0,
            ..base()
        })
        .contains("`max_deliver`"));
        assert!(err(NatsCommandsConfig {
            ack_wait_s: 0,
            ..base()
        })
        .contains("`ack_wait_s`"));
    }
}
