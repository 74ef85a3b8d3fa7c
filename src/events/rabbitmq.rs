//! RabbitMQ sink (AMQP 0-9-1, lapin): durable topic exchange, persistent messages, publisher confirms.
//!
//! Wire form of one event: exchange `exchange` (topic, durable), routing key
//! `<routing_prefix>.<call id>.<event type>`, body = the CloudEvents JSON (structured mode),
//! `delivery_mode` 2 (persistent), `content_type` `application/cloudevents+json`,
//! `message_id` = event id (stable across retries, for dedup), `type` = event type.
//! Every `.` in the call id becomes `_` in the routing key, so the call id is exactly one
//! topic word and bindings such as `asr.*.asr.transcript.final` or `asr.<call>.#` work.
//!
//! Connection is lazy: [`RabbitSink::connect`] only validates the configuration and never
//! fails because the broker is down. The first `publish` connects; a lost connection is
//! noticed by the next `publish`, which reconnects once (bounded by `connect_timeout_ms`)
//! and otherwise returns [`SinkError::Unavailable`] for the outbox to retry with backoff.
//!
//! TLS: an `amqps://` url connects over TLS; the broker's certificate must chain to
//! `tls.ca_file` (trusted in addition to the bundled Mozilla roots), and
//! `tls.client_cert_file` + `client_key_file` are presented when set ([`amqp_tls`], shared
//! with the commands).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    PublisherConfirm,
};
use tokio::sync::Mutex;

use crate::events::outgoing::OutgoingEvent;
use crate::events::sink::{Sink, SinkError, SinkFuture};
use crate::tls::{ClientTls, TlsSettings};

const SINK: &str = "rabbitmq";
const CONTENT_TYPE: &str = "application/cloudevents+json";
/// AMQP short strings (exchange, routing key, properties) hold at most 255 bytes.
const SHORT_MAX: usize = 255;
/// Leaves room for a 128-byte call id and the longest event type within `SHORT_MAX`.
const PREFIX_MAX: usize = 96;

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitConfig {
    /// AMQP URI with credentials and vhost (`%2f` is `/`), `?heartbeat=N` honoured; `amqps://` for TLS.
    pub url: crate::secret::SecretUrl,
    /// Topic exchange the events go to; declared durable on every (re)connect.
    pub exchange: String,
    /// First part of every routing key: `<routing_prefix>.<call id>.<event type>`.
    pub routing_prefix: String,
    /// Longest wait for one batch to be written and confirmed by the broker, ms.
    pub confirm_timeout_ms: u64,
    /// Longest wait for TCP connect, AMQP handshake and the exchange declaration, ms.
    pub connect_timeout_ms: u64,
    /// Publish with `mandatory`: an event no queue is bound for comes back and is retried
    /// (held in the outbox) instead of being discarded by the broker. Off by default, since
    /// with it on a deployment with no consumer bound yet holds every event behind the first.
    pub mandatory: bool,
    /// CA and client certificate for an `amqps://` url.
    pub tls: TlsSettings,
}

impl Default for RabbitConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "asr.events".into(),
            routing_prefix: "asr".into(),
            confirm_timeout_ms: 5_000,
            connect_timeout_ms: 3_000,
            mandatory: false,
            tls: TlsSettings::default(),
        }
    }
}

/// A connection and its confirm-mode channel.
struct Link {
    connection: Connection,
    channel: Channel,
}

impl Link {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

/// Why a batch failed on a live link.
enum BatchError {
    /// The connection or channel failed: the link is unusable.
    Link(String),
    /// The broker nacked or returned (unroutable) a message; the link stays usable.
    Refused(String),
}

/// Publishes event batches to a RabbitMQ topic exchange with publisher confirms.
pub struct RabbitSink {
    config: RabbitConfig,
    uri: AMQPUri,
    /// Holds the client key, if any: never logged or printed.
    tls: OwnedTLSConfig,
    exchange: ShortString,
    /// `host:port (vhost v)`, for logs and errors (never the credentials).
    endpoint: String,
    /// Invariant: a link in the slot has no unresolved publisher confirms. A batch takes the
    /// link out and puts it back only once every confirm of the batch is in; a failed or
    /// cancelled batch leaves the slot empty, so the next call starts on a fresh connection.
    link: Mutex<Option<Link>>,
}

impl RabbitSink {
    /// Validate the configuration. Does no network IO: the connection is opened by the first
    /// `publish` (or [`RabbitSink::ensure_connected`]), so a broker that is down at startup
    /// is not an error here. Fails only on an unparsable URL or over-long names.
    pub fn connect(config: RabbitConfig) -> Result<Self, SinkError> {
        let invalid = |detail: String| SinkError::Unavailable {
            sink: SINK,
            detail: format!("invalid configuration: {detail}"),
        };
        let uri: AMQPUri = config
            .url
            .expose()
            .parse()
            .map_err(|e| invalid(format!("url: {e}")))?;
        if config.exchange.is_empty() {
            return Err(invalid("exchange must not be empty".into()));
        }
        let exchange = ShortString::try_new(config.exchange.clone())
            .map_err(|e| invalid(format!("exchange: {e}")))?;
        if config.routing_prefix.len() > PREFIX_MAX {
            return Err(invalid(format!(
                "routing_prefix is {} bytes, at most {PREFIX_MAX} allowed",
                config.routing_prefix.len()
            )));
        }
        let endpoint = format!(
            "{}:{} (vhost {})",
            uri.authority.host, uri.authority.port, uri.vhost
        );
        let tls = config
            .tls
            .load("events.rabbitmq.tls")
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            config,
            uri,
            tls: amqp_tls(&tls),
            exchange,
            endpoint,
            link: Mutex::new(None),
        })
    }

    /// Connect now if not connected (e.g. at startup, to log the broker's state early).
    pub async fn ensure_connected(&self) -> Result<(), SinkError> {
        let mut slot = self.link.lock().await;
        self.take_usable(&mut slot).await.map(|link| {
            *slot = Some(link);
        })
    }

    /// Close the connection politely (graceful shutdown). A later `publish` reconnects.
    pub async fn close(&self) {
        if let Some(link) = self.link.lock().await.take() {
            let _ = link.connection.close(200, "shutdown".into()).await;
        }
    }

    /// The current link if it is still usable, else a new one.
    async fn take_usable(&self, slot: &mut Option<Link>) -> Result<Link, SinkError> {
        match slot.take() {
            Some(link) if link.usable() => Ok(link),
            Some(_) => {
                tracing::warn!(sink = SINK, endpoint = %self.endpoint,
                    "connection to broker lost; reconnecting");
                self.open().await
            }
            None => self.open().await,
        }
    }

    async fn open(&self) -> Result<Link, SinkError> {
        let props =
            ConnectionProperties::default().with_connection_name("asr-gateway events".into());
        let attempt = async {
            let connection = Connection::connect_uri_with_config(
                self.uri.clone(),
                props,
                self.tls.clone(),
                lapin::runtime::default_runtime()?,
            )
            .await?;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            };
            channel
                .exchange_declare(
                    self.exchange.clone(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>(Link {
                connection,
                channel,
            })
        };
        let limit = Duration::from_millis(self.config.connect_timeout_ms);
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(link)) => {
                tracing::info!(sink = SINK, endpoint = %self.endpoint,
                    exchange = %self.config.exchange, "connected to broker");
                Ok(link)
            }
            Ok(Err(e)) => Err(self.unavailable(format!("connect: {e}"))),
            Err(_) => Err(self.unavailable(format!(
                "connect: no answer within {} ms",
                self.config.connect_timeout_ms
            ))),
        }
    }

    fn unavailable(&self, detail: String) -> SinkError {
        SinkError::Unavailable {
            sink: SINK,
            detail: format!("{}: {detail}", self.endpoint),
        }
    }

    async fn publish_batch(&self, events: &[OutgoingEvent]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut slot = self.link.lock().await;
        let link = self.take_usable(&mut slot).await?;
        let limit = Duration::from_millis(self.config.confirm_timeout_ms);
        match tokio::time::timeout(limit, self.send_and_confirm(&link.channel, events)).await {
            Ok(Ok(())) => {
                *slot = Some(link);
                Ok(())
            }
            Ok(Err(BatchError::Refused(detail))) => {
                *slot = Some(link);
                Err(SinkError::Rejected { sink: SINK, detail })
            }
            // The link is dropped (closed) here: the next call reconnects.
            Ok(Err(BatchError::Link(detail))) => {
                tracing::warn!(sink = SINK, endpoint = %self.endpoint, error = %detail,
                    "connection to broker lost; the next publish reconnects");
                Err(self.unavailable(detail))
            }
            Err(_) => Err(SinkError::Timeout {
                sink: SINK,
                after_ms: self.config.confirm_timeout_ms,
            }),
        }
    }

    /// Publish every event, then await every confirm. Ok only if all were acked and routed.
    async fn send_and_confirm(
        &self,
        channel: &Channel,
        events: &[OutgoingEvent],
    ) -> Result<(), BatchError> {
        let link_err = |e: lapin::Error| BatchError::Link(format!("publish: {e}"));
        let mut writes = Vec::with_capacity(events.len());
        for event in events {
            let mut write = Box::pin(channel.basic_publish(
                self.exchange.clone(),
                short(routing_key(
                    &self.config.routing_prefix,
                    &event.call_id,
                    &event.kind,
                )),
                BasicPublishOptions {
                    mandatory: self.config.mandatory,
                    immediate: false,
                },
                &event.json,
                properties(event),
            ));
            // The first poll assigns the delivery tag and queues the frames, synchronously and
            // in call order (so the batch keeps its order on the wire and in the queues); only
            // the wait for the socket write is left. Queuing the whole batch before waiting
            // avoids a round trip through lapin's IO loop per message.
            writes.push(match poll_once(&mut write).await {
                Poll::Ready(result) => Write::Done(result),
                Poll::Pending => Write::Queued(write),
            });
        }
        let mut pending = Vec::with_capacity(events.len());
        for write in writes {
            let confirm = match write {
                Write::Done(result) => result,
                Write::Queued(write) => write.await,
            };
            pending.push(confirm.map_err(link_err)?);
        }
        let mut refused: Option<String> = None;
        for (confirm, event) in pending.into_iter().zip(events) {
            // Keep awaiting after a refusal so no confirm of this batch is left unresolved.
            match confirm.await.map_err(link_err)? {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(returned)) => {
                    refused.get_or_insert_with(|| {
                        format!(
                            "event {} returned as unroutable ({} {}): no queue bound for routing key {}",
                            event.id,
                            returned.reply_code,
                            returned.reply_text,
                            returned.delivery.routing_key
                        )
                    });
                }
                Confirmation::Nack(_) => {
                    refused
                        .get_or_insert_with(|| format!("event {} nacked by the broker", event.id));
                }
                Confirmation::NotRequested => {
                    return Err(BatchError::Link("channel is not in confirm mode".into()));
                }
            }
        }
        match refused {
            None => Ok(()),
            Some(detail) => Err(BatchError::Refused(detail)),
        }
    }
}

/// One `basic_publish` after its first poll.
enum Write<F> {
    Done(lapin::Result<PublisherConfirm>),
    Queued(Pin<Box<F>>),
}

/// Poll `fut` once, handing back its output if it finished.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

impl Sink for RabbitSink {
    fn name(&self) -> &'static str {
        SINK
    }

    fn publish<'a>(&'a self, events: &'a [OutgoingEvent]) -> SinkFuture<'a> {
        Box::pin(self.publish_batch(events))
    }
}

/// `<prefix>.<call id>.<type>` (no leading dot when the prefix is empty); dots in the call id
/// become `_` so the call id is one topic word.
/// lapin's TLS settings: the CA (added to the bundled roots) and the client certificate.
pub(crate) fn amqp_tls(tls: &ClientTls) -> OwnedTLSConfig {
    OwnedTLSConfig {
        identity: tls.identity_pem().map(|(cert, key)| OwnedIdentity::PKCS8 {
            pem: cert.to_vec(),
            key: key.to_vec(),
        }),
        cert_chain: tls
            .ca_pem()
            .map(|pem| String::from_utf8_lossy(pem).into_owned()),
    }
}

pub fn routing_key(prefix: &str, call_id: &str, kind: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + call_id.len() + kind.len() + 2);
    if !prefix.is_empty() {
        key.push_str(prefix);
        key.push('.');
    }
    key.extend(call_id.chars().map(|c| if c == '.' { '_' } else { c }));
    key.push('.');
    key.push_str(kind);
    key
}

fn properties(event: &OutgoingEvent) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(short(event.id.to_string()))
        .with_type(short(event.kind.clone()))
        .with_app_id("asr-gateway".into())
}

/// An AMQP short string, cut at a char boundary if longer than 255 bytes. Inputs that long
/// cannot come from validated call ids; this only keeps a corrupt journal line from panicking.
fn short(mut s: String) -> ShortString {
    if s.len() > SHORT_MAX {
        let mut end = SHORT_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    ShortString::try_new(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_key_has_one_word_per_call() {
        assert_eq!(
            routing_key("asr", "call-1", "asr.speech.started"),
            "asr.call-1.asr.speech.started"
        );
        assert_eq!(
            routing_key("asr", "1712345678.42", "asr.error"),
            "asr.1712345678_42.asr.error"
        );
        assert_eq!(routing_key("", "c", "asr.error"), "c.asr.error");
    }

    #[test]
    fn short_strings_are_cut_at_char_boundaries() {
        assert_eq!(short("abc".into()).as_str(), "abc");
        let long = "é".repeat(200);
        let cut = short(long);
        assert!(cut.as_str().len() <= SHORT_MAX);
        assert_eq!(cut.as_str().chars().count(), 127);
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: RabbitConfig = toml::from_str("exchange = \"x\"").unwrap();
        assert_eq!(c.exchange, "x");
        assert_eq!(c.url.expose(), "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(c.routing_prefix, "asr");
        assert_eq!(c.confirm_timeout_ms, 5_000);
        assert!(toml::from_str::<RabbitConfig>("exchnage = \"x\"").is_err());
    }

    #[test]
    fn connect_validates_without_network() {
        assert!(RabbitSink::connect(RabbitConfig::default()).is_ok());
        let bad_url = RabbitConfig {
            url: "http://nope".into(),
            ..RabbitConfig::default()
        };
        assert!(matches!(
            RabbitSink::connect(bad_url),
            Err(SinkError::Unavailable { .. })
        ));
        let long_prefix = RabbitConfig {
            routing_prefix: "p".repeat(PREFIX_MAX + 1),
            ..RabbitConfig::default()
        };
        assert!(RabbitSink::connect(long_prefix).is_err());
        let no_exchange = RabbitConfig {
            exchange: String::new(),
            ..RabbitConfig::default()
        };
        assert!(RabbitSink::connect(no_exchange).is_err());
    }
}
