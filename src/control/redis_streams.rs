//! Command consumer over Redis Streams: competing consumers in one group, ack after handling,
//! dead-letter on rejection, XAUTOCLAIM of entries a dead consumer left pending.
//!
//! Protocol: call logic XADDs to `stream` an entry whose `payload` field (see
//! `payload_field`) holds the command JSON. Every gateway instance reads with XREADGROUP in
//! `group` under its own consumer name, hands the payload to the `CommandHandler`, then:
//! `Accepted` → XACK; `Rejected` → XADD to `dead_letter_stream` (fields `payload`, `reason`,
//! `stream`, `entry_id`, `group`, `consumer`), then XACK. An entry without the payload field
//! is dead-lettered the same way.
//!
//! Delivery is at-least-once: an entry is acked only after it was handled, so a crash (or a
//! lost connection) between handling and XACK redelivers it. Redelivery happens (a) to the
//! same consumer name when it reconnects (its own pending entries are read first) and (b) to
//! any live instance via XAUTOCLAIM once the entry has been idle `claim_idle_ms`. So
//! `claim_idle_ms` must exceed the longest handling time, or a slow entry is handled twice.
//!
//! The group is created from id `0` (MKSTREAM; BUSYGROUP ignored), so commands XADDed before
//! the group existed (first deployment, or after a Redis restart without persistence wiped
//! the group) are still handled. On any Redis error the connection is dropped and rebuilt
//! with exponential backoff (200 ms → 5 s); a missing group (NOGROUP) is recreated then.
//!
//! Shutdown: an XREADGROUP in flight is allowed to finish (≤ `block_ms`) and what it
//! returned is handled and acked, so a clean stop leaves nothing pending; then, if this
//! consumer owns no pending entries, it deletes itself from the group.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Value};

use crate::control::commands::{CommandHandler, CommandOutcome};

/// Approximate cap on the dead-letter stream, so a flood of junk cannot exhaust Redis memory.
const DEAD_LETTER_MAXLEN: usize = 100_000;
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisCommandsConfig {
    pub url: crate::secret::SecretUrl,
    pub stream: String,
    pub group: String,
    /// Consumer name in the group; `<hostname>-<pid>` when unset. Set a stable name to
    /// have a restarted instance pick up its own pending entries at once.
    pub consumer: Option<String>,
    /// Entries pending longer than this (ms) on any consumer are claimed and handled here.
    pub claim_idle_ms: u64,
    pub dead_letter_stream: String,
    /// XREADGROUP BLOCK (ms); also the most a shutdown waits for a read in flight.
    pub block_ms: u64,
    /// Most entries per XREADGROUP / XAUTOCLAIM.
    pub read_count: usize,
    /// The entry field holding the command JSON.
    pub payload_field: String,
    /// Bound on connecting and on each non-blocking Redis reply (ms).
    pub timeout_ms: u64,
    /// CA and client certificate for a `rediss://` url.
    pub tls: crate::tls::TlsSettings,
}

impl Default for RedisCommandsConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            stream: "asr:commands".into(),
            group: "asr-gateway".into(),
            consumer: None,
            claim_idle_ms: 30_000,
            dead_letter_stream: "asr:commands:dead".into(),
            block_ms: 2_000,
            read_count: 16,
            payload_field: "payload".into(),
            timeout_ms: 5_000,
            tls: crate::tls::TlsSettings::default(),
        }
    }
}

impl RedisCommandsConfig {
    /// `consumer`, or `<hostname>-<pid>`.
    pub fn consumer_name(&self) -> String {
        if let Some(name) = &self.consumer {
            return name.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "asr-gateway".into());
        format!("{host}-{}", std::process::id())
    }

    /// How often pending entries are swept for claiming: half the idle bound, 100 ms – 30 s.
    fn claim_interval(&self) -> Duration {
        Duration::from_millis((self.claim_idle_ms / 2).clamp(100, 30_000))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandsError {
    #[error("redis commands: invalid url {url:?}: {source}")]
    Url {
        url: crate::secret::SecretUrl,
        #[source]
        source: RedisError,
    },
    #[error("redis commands: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Why one connection's session ended; all are retried after a backoff.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("unexpected reply to {0}")]
    Reply(&'static str),
}

/// Consume commands until `shutdown` resolves. Returns an error only for a bad URL; Redis
/// being down or going away is retried forever (logged), never returned.
pub async fn run(
    config: RedisCommandsConfig,
    handler: Arc<dyn CommandHandler>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CommandsError> {
    let tls = config.tls.load("commands.redis.tls")?;
    let client =
        crate::events::redis_streams::open_client(config.url.expose(), &tls).map_err(|source| {
            CommandsError::Url {
                url: config.url.clone(),
                source,
            }
        })?;
    let consumer = config.consumer_name();
    tracing::info!(stream = %config.stream, group = %config.group, %consumer,
        "redis command consumer starting");
    let connection_config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(config.timeout_ms.max(1))))
        // A blocked XREADGROUP answers after up to `block_ms`: the reply bound must cover it.
        .set_response_timeout(Some(Duration::from_millis(
            config.block_ms + config.timeout_ms.max(1),
        )));
    let mut shutdown = std::pin::pin!(shutdown);
    // Invariant: once `stopping`, `shutdown` has completed and is never polled again.
    let mut stopping = false;
    let mut backoff = BACKOFF_INITIAL;
    while !stopping {
        let connect = client.get_multiplexed_async_connection_with_config(&connection_config);
        let connected = tokio::select! {
            c = connect => c,
            () = shutdown.as_mut() => break,
        };
        let mut worker = match connected {
            Ok(conn) => Worker {
                conn,
                config: &config,
                consumer: &consumer,
                handler: handler.as_ref(),
            },
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "redis commands: cannot connect");
                if sleep_or_stop(&mut backoff, shutdown.as_mut()).await {
                    break;
                }
                continue;
            }
        };
        match worker
            .serve(shutdown.as_mut(), &mut stopping, &mut backoff)
            .await
        {
            Ok(()) => worker.leave_group_if_idle().await,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "redis commands: connection lost");
                if sleep_or_stop(&mut backoff, shutdown.as_mut()).await {
                    break;
                }
            }
        }
    }
    tracing::info!(%consumer, "redis command consumer stopped");
    Ok(())
}

/// Sleep the current backoff (jittered) and double it. True when shutdown came first.
async fn sleep_or_stop<F: Future<Output = ()> + ?Sized>(
    backoff: &mut Duration,
    shutdown: Pin<&mut F>,
) -> bool {
    let wait = backoff.mul_f64(rand::rng().random_range(0.5..=1.0));
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = shutdown => true,
    }
}

/// One connection's worth of consuming.
struct Worker<'a> {
    conn: MultiplexedConnection,
    config: &'a RedisCommandsConfig,
    consumer: &'a str,
    handler: &'a dyn CommandHandler,
}

impl Worker<'_> {
    /// Ok when stopped by shutdown; Err on any Redis trouble (the caller reconnects).
    async fn serve<F: Future<Output = ()> + ?Sized>(
        &mut self,
        mut shutdown: Pin<&mut F>,
        stopping: &mut bool,
        backoff: &mut Duration,
    ) -> Result<(), SessionError> {
        self.ensure_group().await?;
        *backoff = BACKOFF_INITIAL;
        self.drain_own_pending().await?;
        let interval = self.config.claim_interval();
        let mut next_claim = Instant::now();
        while !*stopping {
            if Instant::now() >= next_claim {
                self.claim_sweep().await?;
                next_claim = Instant::now() + interval;
            }
            // BLOCK 0 would mean "forever": keep it ≥ 1 ms, and short enough for the next sweep.
            let until_sweep = next_claim.saturating_duration_since(Instant::now());
            let block = Duration::from_millis(self.config.block_ms)
                .min(until_sweep)
                .max(Duration::from_millis(1));
            let mut read = std::pin::pin!(read_group(
                self.conn.clone(),
                self.config,
                self.consumer,
                ">",
                Some(block)
            ));
            let entries = tokio::select! {
                r = read.as_mut() => r?,
                () = shutdown.as_mut() => {
                    *stopping = true;
                    // Entries this read returns are already ours: handle them before stopping.
                    read.await?
                }
            };
            for entry in entries {
                self.process(entry).await?;
            }
        }
        Ok(())
    }

    async fn ensure_group(&mut self) -> Result<(), SessionError> {
        let created: Result<Value, RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn)
            .await;
        match created {
            Ok(_) => {
                tracing::info!(stream = %self.config.stream, group = %self.config.group,
                    "created consumer group");
                Ok(())
            }
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Entries delivered to this consumer name earlier and never acked (a previous run or
    /// connection): handle them first. The cursor moves past each, so this ends.
    async fn drain_own_pending(&mut self) -> Result<(), SessionError> {
        let mut cursor = "0".to_owned();
        loop {
            let entries =
                read_group(self.conn.clone(), self.config, self.consumer, &cursor, None).await?;
            let Some(last) = entries.last() else {
                return Ok(());
            };
            cursor = last.id.clone();
            for entry in entries {
                self.process(entry).await?;
            }
        }
    }

    /// XAUTOCLAIM everything idle past `claim_idle_ms` (left by dead consumers) and handle it.
    async fn claim_sweep(&mut self) -> Result<(), SessionError> {
        let mut start = "0-0".to_owned();
        loop {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(self.consumer)
                .arg(self.config.claim_idle_ms)
                .arg(&start)
                .arg("COUNT")
                .arg(self.config.read_count.max(1))
                .query_async(&mut self.conn)
                .await?;
            let (next, entries) =
                parse_autoclaim(reply).ok_or(SessionError::Reply("XAUTOCLAIM"))?;
            if !entries.is_empty() {
                tracing::info!(
                    claimed = entries.len(),
                    consumer = self.consumer,
                    "claimed commands left pending by another consumer"
                );
            }
            for entry in entries {
                self.process(entry).await?;
            }
            if next == "0-0" {
                return Ok(());
            }
            start = next;
        }
    }

    async fn process(&mut self, entry: Entry) -> Result<(), SessionError> {
        let Some(fields) = entry.fields else {
            // Trimmed from the stream while pending: nothing left to handle.
            return self.ack(&entry.id).await;
        };
        let payload = fields
            .iter()
            .find(|(name, _)| name.as_slice() == self.config.payload_field.as_bytes())
            .map(|(_, value)| value.as_slice());
        let outcome = match payload {
            Some(payload) => self.handler.handle(payload).await,
            None => CommandOutcome::Rejected {
                reason: format!("entry has no `{}` field", self.config.payload_field),
            },
        };
        if let CommandOutcome::Rejected { reason } = outcome {
            tracing::warn!(entry_id = %entry.id, %reason, "command rejected: dead-lettered");
            // XADD first, XACK only after it succeeded: a failure leaves the entry pending.
            let _: Value = redis::cmd("XADD")
                .arg(&self.config.dead_letter_stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(DEAD_LETTER_MAXLEN)
                .arg("*")
                .arg("payload")
                .arg(payload.unwrap_or_default())
                .arg("reason")
                .arg(reason)
                .arg("stream")
                .arg(&self.config.stream)
                .arg("entry_id")
                .arg(&entry.id)
                .arg("group")
                .arg(&self.config.group)
                .arg("consumer")
                .arg(self.consumer)
                .query_async(&mut self.conn)
                .await?;
        }
        self.ack(&entry.id).await
    }

    async fn ack(&mut self, id: &str) -> Result<(), SessionError> {
        let _: Value = redis::cmd("XACK")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(id)
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }

    /// On a clean stop, remove this consumer from the group unless it still owns entries
    /// (DELCONSUMER would drop those). Best effort.
    async fn leave_group_if_idle(&mut self) {
        let pending: Result<Value, RedisError> = redis::cmd("XPENDING")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(self.consumer)
            .query_async(&mut self.conn)
            .await;
        if !matches!(&pending, Ok(Value::Array(items)) if items.is_empty()) {
            return;
        }
        let deleted: Result<Value, RedisError> = redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(self.consumer)
            .query_async(&mut self.conn)
            .await;
        if let Err(e) = deleted {
            tracing::debug!(error = %e, "redis commands: could not remove consumer from group");
        }
    }
}

/// XREADGROUP from `id` (`>` = new entries; otherwise this consumer's pending after `id`).
/// Owns its connection clone so a shutdown can await it while the worker stays borrowable.
async fn read_group(
    mut conn: MultiplexedConnection,
    config: &RedisCommandsConfig,
    consumer: &str,
    id: &str,
    block: Option<Duration>,
) -> Result<Vec<Entry>, SessionError> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(&config.group)
        .arg(consumer)
        .arg("COUNT")
        .arg(config.read_count.max(1));
    if let Some(block) = block {
        cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
    }
    cmd.arg("STREAMS").arg(&config.stream).arg(id);
    let reply: Value = cmd.query_async(&mut conn).await?;
    parse_read(reply).ok_or(SessionError::Reply("XREADGROUP"))
}

/// A stream entry; `fields` is None when the entry was deleted while pending.
#[derive(Debug, PartialEq)]
struct Entry {
    id: String,
    fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

fn parse_entry(v: Value) -> Option<Entry> {
    let Value::Array(mut parts) = v else {
        return None;
    };
    let fields = parts.pop();
    let id = String::from_utf8(bytes(parts.pop()?)?).ok()?;
    let fields = match fields {
        Some(Value::Array(flat)) => {
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((bytes(k)?, bytes(v)?));
            }
            Some(pairs)
        }
        Some(Value::Map(map)) => Some(
            map.into_iter()
                .map(|(k, v)| Some((bytes(k)?, bytes(v)?)))
                .collect::<Option<Vec<_>>>()?,
        ),
        Some(Value::Nil) | None => None,
        Some(_) => return None,
    };
    Some(Entry { id, fields })
}

fn parse_entries(v: Value) -> Option<Vec<Entry>> {
    match v {
        Value::Array(items) => items.into_iter().map(parse_entry).collect(),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

/// XREADGROUP over one stream: nil on timeout, else `[[key, entries]]` (RESP2) or a map.
fn parse_read(v: Value) -> Option<Vec<Entry>> {
    match v {
        Value::Nil => Some(Vec::new()),
        Value::Array(streams) => {
            let mut all = Vec::new();
            for stream in streams {
                let Value::Array(mut pair) = stream else {
                    return None;
                };
                all.extend(parse_entries(pair.pop()?)?);
            }
            Some(all)
        }
        Value::Map(streams) => {
            let mut all = Vec::new();
            for (_, entries) in streams {
                all.extend(parse_entries(entries)?);
            }
            Some(all)
        }
        _ => None,
    }
}

/// XAUTOCLAIM: `[next start, entries, deleted ids (Redis ≥ 7)]`.
fn parse_autoclaim(v: Value) -> Option<(String, Vec<Entry>)> {
    let Value::Array(parts) = v else {
        return None;
    };
    let mut parts = parts.into_iter();
    let next = String::from_utf8(bytes(parts.next()?)?).ok()?;
    let entries = parse_entries(parts.next()?)?;
    Some((next, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_read_and_autoclaim_replies() {
        let entry = Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("payload"), bulk("{}")]),
        ]);
        let gone = Value::Array(vec![bulk("2-0"), Value::Nil]);
        let read = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![entry.clone(), gone]),
        ])]);
        let got = parse_read(read).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "1-0");
        assert_eq!(
            got[0].fields.as_ref().unwrap()[0],
            (b"payload".to_vec(), b"{}".to_vec())
        );
        assert_eq!(got[1].fields, None);
        assert!(parse_read(Value::Nil).unwrap().is_empty());
        let claim = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![entry]),
            Value::Array(vec![]),
        ]);
        let (next, entries) = parse_autoclaim(claim).unwrap();
        assert_eq!((next.as_str(), entries.len()), ("0-0", 1));
        assert!(parse_read(Value::Int(3)).is_none());
    }

    #[test]
    fn config_defaults() {
        let c = RedisCommandsConfig::default();
        assert_eq!(
            (
                c.stream.as_str(),
                c.group.as_str(),
                c.claim_idle_ms,
                c.dead_letter_stream.as_str()
            ),
            ("asr:commands", "asr-gateway", 30_000, "asr:commands:dead")
        );
        let name = c.consumer_name();
        assert!(
            name.ends_with(&format!("-{}", std::process::id())),
            "{name}"
        );
        let named = RedisCommandsConfig {
            consumer: Some("gw-1".into()),
            ..c.clone()
        };
        assert_eq!(named.consumer_name(), "gw-1");
        assert_eq!(c.claim_interval(), Duration::from_millis(15_000));
        assert!(toml::from_str::<RedisCommandsConfig>("groups = \"x\"").is_err());
    }
}
