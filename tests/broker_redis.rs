//! Redis Streams sink and command consumer against a real Redis: 127.0.0.1:6379 for most
//! tests, and a private redis-server on a spare port (6390+) for the restart test.

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asr_gateway::control::commands::{CommandFuture, CommandHandler, CommandOutcome};
use asr_gateway::control::redis_streams::{self as commands, RedisCommandsConfig};
use asr_gateway::events::outgoing::OutgoingEvent;
use asr_gateway::events::redis_streams::{RedisConfig, RedisSink, StreamPer};
use asr_gateway::events::sink::Sink;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamRangeReply;
use redis::Value;
use uuid::Uuid;

const SHARED_URL: &str = "redis://127.0.0.1:6379";
/// Generous bound for anything that waits on Redis or a consumer; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);

/// A ~400-byte CloudEvents-like JSON event, `seq`-th of call `call`.
fn event(call: &str, seq: usize) -> OutgoingEvent {
    let id = Uuid::new_v4();
    let json = format!(
        "{{\"specversion\":\"1.0\",\"id\":\"{id}\",\"source\":\"/asr-gateway/test\",\
         \"type\":\"asr.transcript.final\",\"subject\":\"{call}\",\"time\":\"2025-01-01T00:00:00Z\",\
         \"datacontenttype\":\"application/json\",\"data\":{{\"seq\":{seq},\"utterance\":1,\
         \"text\":\"the quick brown fox jumps over the lazy dog and keeps on running far away\",\
         \"confidence\":0.93,\"start_ms\":1200,\"end_ms\":3400,\"offset_ms\":3420}}}}"
    );
    OutgoingEvent {
        id,
        kind: "asr.transcript.final".into(),
        call_id: call.into(),
        json: Bytes::from(json),
    }
}

/// `calls` × `per_call` events, interleaved across calls the way live calls produce them.
fn interleaved(prefix: &str, calls: usize, per_call: usize) -> Vec<OutgoingEvent> {
    (0..per_call)
        .flat_map(|seq| (0..calls).map(move |c| (c, seq)))
        .map(|(c, seq)| event(&format!("{prefix}-call-{c}"), seq))
        .collect()
}

async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("these tests need Redis at {url}: {e}"))
}

async fn xrange(conn: &mut MultiplexedConnection, key: &str) -> StreamRangeReply {
    redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap()
}

async fn xlen(conn: &mut MultiplexedConnection, key: &str) -> usize {
    redis::cmd("XLEN").arg(key).query_async(conn).await.unwrap()
}

async fn del(conn: &mut MultiplexedConnection, keys: &[String]) {
    let _: Result<Value, _> = redis::cmd("DEL").arg(keys).query_async(conn).await;
}

/// Entries of `key` as (event id, call id, data.seq), checking each entry's fields agree
/// with the event JSON it carries.
async fn entries(conn: &mut MultiplexedConnection, key: &str) -> Vec<(Uuid, String, u64)> {
    xrange(conn, key)
        .await
        .ids
        .iter()
        .map(|e| {
            let id: String = e.get("id").unwrap();
            let call: String = e.get("call_id").unwrap();
            let kind: String = e.get("type").unwrap();
            let json: Vec<u8> = e.get("event").unwrap();
            let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(v["id"].as_str(), Some(id.as_str()));
            assert_eq!(v["subject"].as_str(), Some(call.as_str()));
            assert_eq!(v["type"].as_str(), Some(kind.as_str()));
            (
                id.parse().unwrap(),
                call,
                v["data"]["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Every sent event present exactly once, and in send order within each call.
fn assert_exactly_once_in_order(sent: &[OutgoingEvent], got: &[(Uuid, String, u64)]) {
    assert_eq!(got.len(), sent.len(), "entry count");
    let got_ids: BTreeSet<Uuid> = got.iter().map(|g| g.0).collect();
    assert_eq!(got_ids.len(), got.len(), "an event id appears twice");
    assert_eq!(got_ids, sent.iter().map(|e| e.id).collect::<BTreeSet<_>>());
    let mut per_call: HashMap<&str, Vec<u64>> = HashMap::new();
    for (_, call, seq) in got {
        per_call.entry(call).or_default().push(*seq);
    }
    for (call, seqs) in per_call {
        assert!(
            seqs.windows(2).all(|w| w[0] + 1 == w[1]),
            "{call} out of order: {seqs:?}"
        );
        assert_eq!(seqs[0], 0, "{call}");
    }
}

#[tokio::test]
async fn per_app_stream_gets_each_event_once_in_order() {
    let key = format!("test:asr:events:{}", Uuid::new_v4());
    let sink = RedisSink::new(RedisConfig {
        stream: key.clone(),
        ..RedisConfig::default()
    })
    .unwrap();
    let sent = interleaved("app", 20, 100);
    // 137 does not divide 2000: batches cut calls at odd places and the last one is short.
    for batch in sent.chunks(137) {
        sink.publish(batch).await.unwrap();
    }
    let mut conn = connect(SHARED_URL).await;
    let got = entries(&mut conn, &key).await;
    assert_exactly_once_in_order(&sent, &got);
    del(&mut conn, &[key]).await;
}

#[tokio::test]
async fn per_call_streams_get_each_event_once_in_order() {
    let prefix = format!("test:asr:events:{}", Uuid::new_v4());
    let sink = RedisSink::new(RedisConfig {
        stream: prefix.clone(),
        stream_per: StreamPer::Call,
        ..RedisConfig::default()
    })
    .unwrap();
    let sent = interleaved("pc", 20, 100);
    for batch in sent.chunks(137) {
        sink.publish(batch).await.unwrap();
    }
    let mut conn = connect(SHARED_URL).await;
    let mut keys = Vec::new();
    for c in 0..20 {
        let call = format!("pc-call-{c}");
        let key = format!("{prefix}:{call}");
        let got = entries(&mut conn, &key).await;
        assert!(
            got.iter().all(|g| g.1 == call),
            "{key} holds another call's event"
        );
        let mine: Vec<OutgoingEvent> = sent.iter().filter(|e| e.call_id == call).cloned().collect();
        assert_exactly_once_in_order(&mine, &got);
        keys.push(key);
    }
    del(&mut conn, &keys).await;
}

#[tokio::test]
async fn maxlen_caps_app_and_call_streams_approximately() {
    const MAXLEN: usize = 100;
    // `MAXLEN ~` trims whole radix-tree nodes (100 entries by default): allow two nodes over.
    const SLACK: usize = 200;
    let mut conn = connect(SHARED_URL).await;
    let prefix = format!("test:asr:events:{}", Uuid::new_v4());
    for per in [StreamPer::App, StreamPer::Call] {
        let sink = RedisSink::new(RedisConfig {
            stream: prefix.clone(),
            stream_per: per,
            maxlen: MAXLEN,
            ..RedisConfig::default()
        })
        .unwrap();
        let sent = interleaved("cap", 2, 2_500);
        for batch in sent.chunks(500) {
            sink.publish(batch).await.unwrap();
        }
        let keys: Vec<String> = match per {
            StreamPer::App => vec![prefix.clone()],
            StreamPer::Call => (0..2).map(|c| format!("{prefix}:cap-call-{c}")).collect(),
        };
        for key in &keys {
            let len = xlen(&mut conn, key).await;
            assert!(
                (MAXLEN..=MAXLEN + SLACK).contains(&len),
                "{per:?} {key}: XLEN {len}"
            );
            // What survives trimming is the newest tail, still in order.
            let seqs: Vec<u64> = entries(&mut conn, key).await.iter().map(|g| g.2).collect();
            assert_eq!(*seqs.last().unwrap(), 2_499, "{key}");
        }
        del(&mut conn, &keys).await;
    }
}

/// A private redis-server (no persistence) on a spare port; killed on drop.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn new() -> Self {
        let port = (6390..6490)
            .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .expect("a free port in 6390..6490");
        Self { port, child: None }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--dir", "/tmp", "--logfile", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        let until = Instant::now() + DEADLINE;
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            assert!(Instant::now() < until, "own redis-server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kill it (like a crash; with no persistence every key is gone) and reap it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the outbox does: retry the same batch until the sink confirms it. Returns the
/// number of failed attempts.
async fn publish_until_ok(sink: &RedisSink, batch: &[OutgoingEvent]) -> usize {
    let until = Instant::now() + DEADLINE;
    let mut failures = 0;
    loop {
        match sink.publish(batch).await {
            Ok(()) => return failures,
            Err(e) => {
                failures += 1;
                assert!(Instant::now() < until, "sink never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn sink_starts_with_redis_down_and_recovers_after_restart() {
    let mut server = OwnRedis::new();
    let key = "asr:events:restart".to_owned();
    let sink = RedisSink::new(RedisConfig {
        url: server.url().into(),
        stream: key.clone(),
        timeout_ms: 1_000,
        ..RedisConfig::default()
    })
    .expect("building the sink needs no Redis");
    let sent = interleaved("rs", 10, 100);
    let batches: Vec<&[OutgoingEvent]> = sent.chunks(20).collect();

    // Lazy connect: nothing listens yet, so publishing fails (reported, not a panic).
    assert!(sink.publish(batches[0]).await.is_err());
    server.start().await;
    for batch in &batches[..20] {
        publish_until_ok(&sink, batch).await;
    }

    server.stop();
    for attempt in 0..3 {
        match sink.publish(batches[20]).await {
            Err(e) => eprintln!("restart: outage attempt {attempt}: {e}"),
            Ok(()) => panic!("attempt {attempt} reported success with Redis down"),
        }
    }
    server.start().await;
    let mut failures_after_restart = 0;
    for batch in &batches[20..] {
        failures_after_restart += publish_until_ok(&sink, batch).await;
    }

    let mut conn = connect(&server.url()).await;
    let got = entries(&mut conn, &key).await;
    let got_ids: BTreeSet<Uuid> = got.iter().map(|g| g.0).collect();
    let confirmed_after: Vec<&OutgoingEvent> =
        batches[20..].iter().flat_map(|b| b.iter()).collect();
    for e in &confirmed_after {
        assert!(
            got_ids.contains(&e.id),
            "event {} confirmed after the restart is missing",
            e.id
        );
    }
    // The restart wiped what came before (no persistence): proof it really happened.
    assert!(batches[..20]
        .iter()
        .flat_map(|b| b.iter())
        .all(|e| !got_ids.contains(&e.id)));
    // Per call, first occurrences are still in send order.
    let mut seen = BTreeSet::new();
    let mut per_call: HashMap<String, Vec<u64>> = HashMap::new();
    for (id, call, seq) in got {
        if seen.insert(id) {
            per_call.entry(call).or_default().push(seq);
        }
    }
    for (call, seqs) in per_call {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{call}: {seqs:?}");
    }
    eprintln!(
        "restart: {} events confirmed after restart, {} entries, {failures_after_restart} failed attempts while recovering",
        confirmed_after.len(),
        seen.len()
    );
    server.stop();
}

/// Records accepted payloads; rejects payloads containing `reject`.
struct Recorder {
    seen: Mutex<Vec<String>>,
    delay: Duration,
}

impl Recorder {
    fn new(delay_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            seen: Mutex::new(Vec::new()),
            delay: Duration::from_millis(delay_ms),
        })
    }
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl CommandHandler for Recorder {
    fn handle<'a>(&'a self, payload: &'a [u8]) -> CommandFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            let text = String::from_utf8_lossy(payload).into_owned();
            if text.contains("reject") {
                return CommandOutcome::Rejected {
                    reason: "test handler refuses it".into(),
                };
            }
            self.seen.lock().unwrap().push(text);
            CommandOutcome::Accepted
        })
    }
}

fn command_config(stream: &str, consumer: &str) -> RedisCommandsConfig {
    RedisCommandsConfig {
        stream: stream.into(),
        group: "gw".into(),
        consumer: Some(consumer.into()),
        dead_letter_stream: format!("{stream}:dead"),
        block_ms: 200,
        read_count: 5,
        ..RedisCommandsConfig::default()
    }
}

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), commands::CommandsError>>,
}

fn start(config: RedisCommandsConfig, handler: Arc<dyn CommandHandler>) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(commands::run(config, handler, async move {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("consumer stops on shutdown")
            .unwrap()
            .unwrap();
    }
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < until, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn xadd(conn: &mut MultiplexedConnection, stream: &str, field: &str, value: &str) {
    let _: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg(field)
        .arg(value)
        .query_async(conn)
        .await
        .unwrap();
}

/// Entries delivered to the group and not yet acked (XPENDING summary count).
async fn pending(conn: &mut MultiplexedConnection, stream: &str, group: &str) -> i64 {
    let v: Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await
        .unwrap();
    match v {
        Value::Array(items) => match items.first() {
            Some(Value::Int(n)) => *n,
            other => panic!("XPENDING count: {other:?}"),
        },
        other => panic!("XPENDING: {other:?}"),
    }
}

async fn consumers(conn: &mut MultiplexedConnection, stream: &str, group: &str) -> usize {
    let v: Result<Value, _> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await;
    match v {
        Ok(Value::Array(items)) => items.len(),
        _ => 0,
    }
}

#[tokio::test]
async fn two_consumers_share_the_commands() {
    let stream = format!("test:asr:commands:{}", Uuid::new_v4());
    let mut conn = connect(SHARED_URL).await;
    let (one, two) = (Recorder::new(2), Recorder::new(2));
    let a = start(command_config(&stream, "gw-a"), one.clone());
    let b = start(command_config(&stream, "gw-b"), two.clone());
    // Both must be blocked in XREADGROUP before the commands arrive, or one takes them all.
    wait_until("both consumers joined", || {
        let (mut c, s) = (conn.clone(), stream.clone());
        async move { consumers(&mut c, &s, "gw").await == 2 }
    })
    .await;
    for n in 0..200 {
        xadd(&mut conn, &stream, "payload", &format!("{{\"n\":{n}}}")).await;
    }
    wait_until("200 commands handled", || {
        let (one, two) = (one.clone(), two.clone());
        async move { one.seen().len() + two.seen().len() >= 200 }
    })
    .await;
    wait_until("every command acked", || {
        let (mut c, s) = (conn.clone(), stream.clone());
        async move { pending(&mut c, &s, "gw").await == 0 }
    })
    .await;
    a.stop().await;
    b.stop().await;

    let (seen_a, seen_b) = (one.seen(), two.seen());
    assert!(
        !seen_a.is_empty() && !seen_b.is_empty(),
        "a {} b {}",
        seen_a.len(),
        seen_b.len()
    );
    assert_eq!(
        seen_a.len() + seen_b.len(),
        200,
        "a command was handled twice"
    );
    let all: BTreeSet<String> = seen_a.iter().chain(&seen_b).cloned().collect();
    let want: BTreeSet<String> = (0..200).map(|n| format!("{{\"n\":{n}}}")).collect();
    assert_eq!(all, want);
    // A clean stop with nothing pending leaves the group.
    assert_eq!(consumers(&mut conn, &stream, "gw").await, 0);
    eprintln!("shared: gw-a {} gw-b {}", seen_a.len(), seen_b.len());
    del(&mut conn, &[stream.clone(), format!("{stream}:dead")]).await;
}

#[tokio::test]
async fn command_left_by_a_dead_consumer_is_claimed() {
    let stream = format!("test:asr:commands:{}", Uuid::new_v4());
    let mut conn = connect(SHARED_URL).await;
    let _: Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("gw")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    xadd(&mut conn, &stream, "payload", "{\"n\":\"orphan\"}").await;
    // The doomed instance reads it and dies without XACK.
    let taken: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("gw")
        .arg("dead-instance")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        matches!(taken, Value::Array(ref s) if !s.is_empty()),
        "{taken:?}"
    );
    assert_eq!(pending(&mut conn, &stream, "gw").await, 1);

    let live = Recorder::new(0);
    let mut config = command_config(&stream, "gw-live");
    config.claim_idle_ms = 1_000;
    let running = start(config, live.clone());
    wait_until("orphan handled by the live consumer", || {
        let live = live.clone();
        async move { !live.seen().is_empty() }
    })
    .await;
    wait_until("orphan acked", || {
        let (mut c, s) = (conn.clone(), stream.clone());
        async move { pending(&mut c, &s, "gw").await == 0 }
    })
    .await;
    running.stop().await;
    assert_eq!(live.seen(), vec!["{\"n\":\"orphan\"}".to_owned()]);
    del(&mut conn, &[stream]).await;
}

#[tokio::test]
async fn rejected_command_is_dead_lettered_and_acked() {
    let stream = format!("test:asr:commands:{}", Uuid::new_v4());
    let dead = format!("{stream}:dead");
    let mut conn = connect(SHARED_URL).await;
    let handler = Recorder::new(0);
    let running = start(command_config(&stream, "gw-r"), handler.clone());
    wait_until("consumer joined", || {
        let (mut c, s) = (conn.clone(), stream.clone());
        async move { consumers(&mut c, &s, "gw").await == 1 }
    })
    .await;
    xadd(&mut conn, &stream, "payload", "{\"reject\":true}").await;
    xadd(&mut conn, &stream, "command", "{\"n\":1}").await; // wrong field name
    xadd(&mut conn, &stream, "payload", "{\"n\":2}").await;
    wait_until("two dead letters", || {
        let (mut c, d) = (conn.clone(), dead.clone());
        async move { xlen(&mut c, &d).await == 2 }
    })
    .await;
    wait_until("all acked", || {
        let (mut c, s) = (conn.clone(), stream.clone());
        async move { pending(&mut c, &s, "gw").await == 0 }
    })
    .await;
    running.stop().await;

    let letters = xrange(&mut conn, &dead).await.ids;
    let field = |i: usize, f: &str| letters[i].get::<String>(f).unwrap();
    assert_eq!(field(0, "payload"), "{\"reject\":true}");
    assert_eq!(field(0, "reason"), "test handler refuses it");
    assert_eq!(field(0, "stream"), stream);
    assert_eq!(field(0, "consumer"), "gw-r");
    assert_eq!(field(1, "payload"), "");
    assert!(
        field(1, "reason").contains("payload"),
        "{}",
        field(1, "reason")
    );
    assert_eq!(handler.seen(), vec!["{\"n\":2}".to_owned()]);
    del(&mut conn, &[stream, dead]).await;
}

#[tokio::test]
async fn consumer_reconnects_and_recreates_its_group_after_a_restart() {
    let mut server = OwnRedis::new();
    server.start().await;
    let stream = "asr:commands:restart";
    let mut config = command_config(stream, "gw-restart");
    config.url = server.url().into();
    let handler = Recorder::new(0);
    let running = start(config, handler.clone());
    let mut conn = connect(&server.url()).await;
    xadd(&mut conn, stream, "payload", "{\"n\":\"before\"}").await;
    wait_until("command before the restart handled", || {
        let h = handler.clone();
        async move { h.seen().len() == 1 }
    })
    .await;

    // The restart wipes the stream and the group; the consumer must rebuild both.
    server.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.start().await;
    let mut conn = connect(&server.url()).await;
    // XADD right away, possibly before the group is back: created from id 0, it still sees it.
    xadd(&mut conn, stream, "payload", "{\"n\":\"after\"}").await;
    wait_until("command after the restart handled", || {
        let h = handler.clone();
        async move { h.seen().len() == 2 }
    })
    .await;
    running.stop().await;
    assert_eq!(
        handler.seen(),
        vec!["{\"n\":\"before\"}", "{\"n\":\"after\"}"]
    );
    server.stop();
}
