//! Command consumer over RabbitMQ: competing consumers, ack after handling, nack/dead-letter on rejection.
//!
//! Topology, declared (idempotently) on every (re)connect, all durable:
//! fanout exchange `dead_letter_exchange` → queue `<queue>.dead`; queue `queue` with
//! `x-dead-letter-exchange = dead_letter_exchange`. Every gateway process consumes `queue`
//! with manual acks, so several processes share the commands (competing consumers).
//!
//! Delivery is at least once: a delivery is acked only after the handler returns `Accepted`
//! (or nacked without requeue, i.e. dead-lettered, after `Rejected`). A consumer that dies
//! before settling leaves the command to be redelivered to another consumer, so handlers
//! must tolerate seeing a command twice. Commands are handled one at a time per consumer,
//! in delivery order; `prefetch` only bounds how many wait unacked in this process.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties, Consumer, ExchangeKind};

use crate::control::commands::{CommandHandler, CommandOutcome};

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Bound on TCP connect + handshake + topology declaration.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitCommandsConfig {
    /// AMQP URI with credentials and vhost (`%2f` is `/`); `amqps://` for TLS.
    pub url: crate::secret::SecretUrl,
    /// Durable queue the commands arrive on; its dead-letter queue is `<queue>.dead`.
    pub queue: String,
    /// Fanout exchange rejected commands are dead-lettered to.
    pub dead_letter_exchange: String,
    /// Most unacked deliveries held by this process at once (1..=65535).
    pub prefetch: u16,
    /// CA and client certificate for an `amqps://` url.
    pub tls: crate::tls::TlsSettings,
}

impl Default for RabbitCommandsConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            queue: "asr.commands".into(),
            dead_letter_exchange: "asr.commands.dlx".into(),
            prefetch: 16,
            tls: crate::tls::TlsSettings::default(),
        }
    }
}

/// Configuration errors; broker and connection errors are retried, not returned.
#[derive(Debug, thiserror::Error)]
pub enum RabbitCommandsError {
    #[error("rabbitmq commands: invalid url: {0}")]
    InvalidUrl(String),
    #[error("rabbitmq commands: {field} is {len} bytes; AMQP names hold at most 255")]
    NameTooLong { field: &'static str, len: usize },
    #[error("rabbitmq commands: {field} must not be empty")]
    EmptyName { field: &'static str },
    #[error("rabbitmq commands: prefetch must be at least 1")]
    ZeroPrefetch,
    #[error("rabbitmq commands: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Validated names, ready for the wire.
struct Target {
    uri: AMQPUri,
    /// Holds the client key, if any: never logged or printed.
    tls: lapin::tcp::OwnedTLSConfig,
    endpoint: String,
    queue: ShortString,
    dead_queue: ShortString,
    dlx: ShortString,
    prefetch: u16,
}

/// Why one connection's consuming ended.
enum Stop {
    Shutdown,
    Lost(String),
}

/// A live connection with its consumer; dropping it closes the connection.
struct Link {
    connection: Connection,
    consumer: Consumer,
}

/// Consume commands until `shutdown` completes, reconnecting with backoff (200 ms doubling
/// to 10 s) whenever the broker is unreachable or the connection drops. Returns `Err` only
/// for an invalid configuration, at once; otherwise `Ok` after shutdown.
pub async fn run(
    config: RabbitCommandsConfig,
    handler: Arc<dyn CommandHandler>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RabbitCommandsError> {
    let target = Target::new(&config)?;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = BACKOFF_MIN;
    loop {
        let opened = tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            opened = tokio::time::timeout(CONNECT_TIMEOUT, target.open()) => opened,
        };
        let reason = match opened {
            Ok(Ok(mut link)) => {
                backoff = BACKOFF_MIN;
                tracing::info!(endpoint = %target.endpoint, queue = %target.queue,
                    prefetch = target.prefetch, "rabbitmq commands: consuming");
                match consume(&mut link.consumer, handler.as_ref(), shutdown.as_mut()).await {
                    Stop::Shutdown => {
                        // Closing hands unacked prefetched deliveries back to the queue.
                        let _ = link.connection.close(200, "shutdown".into()).await;
                        return Ok(());
                    }
                    Stop::Lost(reason) => reason,
                }
            }
            Ok(Err(e)) => format!("connect or declare failed: {e}"),
            Err(_) => format!(
                "connect or declare: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        };
        tracing::error!(endpoint = %target.endpoint, queue = %target.queue,
            retry_in_ms = backoff.as_millis() as u64, "rabbitmq commands: {reason}");
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Handle deliveries one at a time until shutdown or the connection/consumer ends.
async fn consume<F: Future<Output = ()>>(
    consumer: &mut Consumer,
    handler: &dyn CommandHandler,
    mut shutdown: Pin<&mut F>,
) -> Stop {
    loop {
        // Shutdown is only observed between commands: a command being handled is always
        // settled (or left unacked for redelivery if the connection is gone).
        let next = tokio::select! {
            biased;
            () = &mut shutdown => return Stop::Shutdown,
            next = consumer.next() => next,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => return Stop::Lost(format!("connection lost: {e}")),
            None => return Stop::Lost("consumer cancelled by the broker".into()),
        };
        let settled = match handler.handle(&delivery.data).await {
            CommandOutcome::Accepted => delivery.acker.ack(BasicAckOptions::default()).await,
            CommandOutcome::Rejected { reason } => {
                tracing::warn!(reason = %reason, redelivered = delivery.redelivered,
                    "rabbitmq commands: command rejected; dead-lettering it");
                let no_requeue = BasicNackOptions {
                    multiple: false,
                    requeue: false,
                };
                delivery.acker.nack(no_requeue).await
            }
        };
        if let Err(e) = settled {
            return Stop::Lost(format!(
                "could not settle a handled command ({e}); the broker will redeliver it"
            ));
        }
    }
}

impl Target {
    fn new(config: &RabbitCommandsConfig) -> Result<Self, RabbitCommandsError> {
        let uri: AMQPUri = config
            .url
            .expose()
            .parse()
            .map_err(|e: String| RabbitCommandsError::InvalidUrl(e))?;
        let name = |field: &'static str, value: String| {
            if value.is_empty() {
                return Err(RabbitCommandsError::EmptyName { field });
            }
            let len = value.len();
            ShortString::try_new(value).map_err(|_| RabbitCommandsError::NameTooLong { field, len })
        };
        if config.prefetch == 0 {
            return Err(RabbitCommandsError::ZeroPrefetch);
        }
        Ok(Self {
            endpoint: format!(
                "{}:{} (vhost {})",
                uri.authority.host, uri.authority.port, uri.vhost
            ),
            uri,
            tls: crate::events::rabbitmq::amqp_tls(&config.tls.load("commands.rabbitmq.tls")?),
            queue: name("queue", config.queue.clone())?,
            dead_queue: name("queue", format!("{}.dead", config.queue))?,
            dlx: name("dead_letter_exchange", config.dead_letter_exchange.clone())?,
            prefetch: config.prefetch,
        })
    }

    async fn open(&self) -> Result<Link, lapin::Error> {
        let props =
            ConnectionProperties::default().with_connection_name("asr-gateway commands".into());
        let connection = Connection::connect_uri_with_config(
            self.uri.clone(),
            props,
            self.tls.clone(),
            lapin::runtime::default_runtime()?,
        )
        .await?;
        let channel = connection.create_channel().await?;
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.dlx.clone(),
                ExchangeKind::Fanout,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                self.dead_queue.clone(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                self.dead_queue.clone(),
                self.dlx.clone(),
                ShortString::default(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                self.queue.clone(),
                QueueDeclareOptions::durable(),
                queue_arguments(self.dlx.as_str()),
            )
            .await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let tag = format!(
            "asr-gateway-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        );
        let consumer = channel
            .basic_consume(
                self.queue.clone(),
                ShortString::try_new(tag).unwrap_or_default(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Link {
            connection,
            consumer,
        })
    }
}

/// Arguments of the command queue. Anyone else declaring it must pass the same ones.
pub fn queue_arguments(dead_letter_exchange: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dead_letter_exchange.into()),
    );
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let c: RabbitCommandsConfig = toml::from_str("prefetch = 4").unwrap();
        assert_eq!(c.prefetch, 4);
        assert_eq!(c.queue, "asr.commands");
        assert_eq!(c.dead_letter_exchange, "asr.commands.dlx");
        assert!(toml::from_str::<RabbitCommandsConfig>("prefech = 4").is_err());

        let t = Target::new(&RabbitCommandsConfig::default()).unwrap();
        assert_eq!(t.dead_queue.as_str(), "asr.commands.dead");
        assert!(matches!(
            Target::new(&RabbitCommandsConfig {
                prefetch: 0,
                ..Default::default()
            }),
            Err(RabbitCommandsError::ZeroPrefetch)
        ));
        assert!(matches!(
            Target::new(&RabbitCommandsConfig {
                queue: "q".repeat(252),
                ..Default::default()
            }),
            Err(RabbitCommandsError::NameTooLong { .. })
        ));
        assert!(matches!(
            Target::new(&RabbitCommandsConfig {
                dead_letter_exchange: String::new(),
                ..Default::default()
            }),
            Err(RabbitCommandsError::EmptyName { .. })
        ));
        assert!(matches!(
            Target::new(&RabbitCommandsConfig {
                url: "nope://x".into(),
                ..Default::default()
            }),
            Err(RabbitCommandsError::InvalidUrl(_))
        ));
    }
}
