//! The NATS JetStream sink and command consumer against the real nats-server on 127.0.0.1:4222.
//!
//! Every test uses its own stream, subjects and durable. One test restarts the server: it holds
//! `SERVER` for writing, the others for reading, so none runs while the server is down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use tokio::sync::RwLock;

use asr_gateway::control::commands::{CommandFuture, CommandHandler, CommandOutcome};
use asr_gateway::control::nats::{ensure_consumer, run, NatsCommandsConfig};
use asr_gateway::events::model::{Event, EventBody, SessionEvent};
use asr_gateway::events::nats::{NatsConfig, NatsSink};
use asr_gateway::events::outgoing::OutgoingEvent;
use asr_gateway::events::sink::{Sink, SinkError};

const URL: &str = "nats://127.0.0.1:4222";
const NATS_ADDR: &str = "127.0.0.1:4222";
const DAEMON: &str = "/usr/sbin/nats-server";

static SERVER: LazyLock<RwLock<()>> = LazyLock::new(|| RwLock::new(()));

/// A name no other test (or earlier run) uses: `<tag><pid>x<nanos>x<n>`, no dots.
fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    format!(
        "{tag}{}x{nanos}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn sink_config(tag: &str) -> NatsConfig {
    NatsConfig {
        url: URL.into(),
        stream: unique(&format!("T_{tag}_")),
        subject_prefix: unique("t"),
        ..NatsConfig::default()
    }
}

/// `per_call` events for each of `calls` calls, interleaved across calls; the `utterance` field
/// numbers the events of a call.
fn make_events(calls: usize, per_call: usize, first_seq: usize) -> Vec<OutgoingEvent> {
    let mut out = Vec::with_capacity(calls * per_call);
    for seq in first_seq..first_seq + per_call {
        for call in 0..calls {
            let body = match seq % 3 {
                0 => EventBody::SpeechStarted {
                    utterance: seq as u32,
                    start_ms: seq as u64 * 100,
                },
                1 => EventBody::TranscriptPartial {
                    utterance: seq as u32,
                    text: format!("partial words of utterance {seq}"),
                    confidence: 0.5,
                    start_ms: seq as u64 * 100,
                    end_ms: seq as u64 * 100 + 50,
                },
                _ => EventBody::Error {
                    code: "test",
                    message: format!("event {seq}"),
                    utterance: Some(seq as u32),
                },
            };
            let event = Event::stamp(
                "/asr-gateway/test".into(),
                format!("s-{call}").into(),
                // A dot, as in Asterisk unique ids: the subject token must not split on it.
                format!("1700000000.{call}").into(),
                SessionEvent {
                    offset_ms: seq as u64,
                    body,
                },
                chrono::Utc::now(),
            );
            out.push(OutgoingEvent::from(&event));
        }
    }
    out
}

async fn js_client() -> jetstream::Context {
    let client = async_nats::connect(URL)
        .await
        .expect("nats-server reachable");
    jetstream::new(client)
}

async fn wait_for<F: FnMut() -> bool>(what: &str, deadline: Duration, mut done: F) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    let mut s = js.get_stream(stream).await.expect("stream exists");
    s.info().await.expect("stream info").state.messages
}

/// (subject, Nats-Msg-Id, JSON id) of every message in the stream, via an ordered consumer.
async fn read_stream(
    js: &jetstream::Context,
    stream: &str,
    prefix: &str,
) -> Vec<(String, String, String)> {
    let total = stream_messages(js, stream).await as usize;
    let s = js.get_stream(stream).await.unwrap();
    let consumer = s
        .create_consumer(pull::OrderedConfig {
            filter_subject: format!("{prefix}.>"),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let m = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .expect("stream message within 30 s")
            .expect("ordered stream open")
            .expect("message");
        out.push(describe(&m));
    }
    out
}

fn describe(m: &async_nats::Message) -> (String, String, String) {
    let msg_id = m
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(&m.payload).expect("JSON body");
    (
        m.subject.to_string(),
        msg_id,
        json["id"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_delivers_each_event_once_in_order_per_call() {
    let _server = SERVER.read().await;
    let config = sink_config("order");
    let sink = NatsSink::connect(config.clone()).await.unwrap();
    let events = make_events(20, 100, 0);
    assert_eq!(events.len(), 2000);

    for batch in events.chunks(128) {
        sink.publish(batch).await.expect("batch acked");
    }

    // What the stream stored is what every JetStream consumer will see. (A core subscription
    // beside it is at-most-once and may miss messages, so it cannot prove delivery.)
    let js = sink.jetstream();
    assert_eq!(stream_messages(js, &config.stream).await, 2000);
    let got = read_stream(js, &config.stream, &config.subject_prefix).await;

    let mut sent_per_call: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut subject_of: HashMap<String, String> = HashMap::new();
    for e in &events {
        sent_per_call
            .entry(&e.call_id)
            .or_default()
            .push(e.id.to_string());
        let call_token = e.call_id.replace('.', "_");
        subject_of.insert(
            e.id.to_string(),
            format!("{}.{call_token}.{}", config.subject_prefix, e.kind),
        );
    }
    let mut got_per_call: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (subject, msg_id, json_id) in &got {
        assert_eq!(msg_id, json_id, "Nats-Msg-Id is the event id");
        assert_eq!(&subject_of[json_id], subject);
        let call = events
            .iter()
            .find(|e| e.id.to_string() == *json_id)
            .map(|e| e.call_id.as_str())
            .unwrap();
        got_per_call.entry(call).or_default().push(json_id.clone());
    }
    assert_eq!(got_per_call.len(), 20);
    assert_eq!(got_per_call, sent_per_call, "each once, in order per call");
    js.delete_stream(&config.stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_same_batch_twice_is_stored_once() {
    let _server = SERVER.read().await;
    let config = sink_config("dedup");
    let sink = NatsSink::connect(config.clone()).await.unwrap();
    let events = make_events(5, 40, 0);
    sink.publish(&events).await.unwrap();
    sink.publish(&events).await.unwrap();
    sink.publish(&events[50..120]).await.unwrap();
    let js = sink.jetstream();
    assert_eq!(
        stream_messages(js, &config.stream).await,
        events.len() as u64
    );
    let stored = read_stream(js, &config.stream, &config.subject_prefix).await;
    let ids: Vec<String> = stored.into_iter().map(|(_, id, _)| id).collect();
    let sent: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, sent);
    js.delete_stream(&config.stream).await.unwrap();
}

fn daemon(action: &[&str]) {
    let status = Command::new("start-stop-daemon")
        .args(action)
        .status()
        .expect("start-stop-daemon runs");
    assert!(status.success(), "start-stop-daemon {action:?}: {status}");
}

fn start_nats() {
    daemon(&[
        "--start",
        "--oknodo",
        "--background",
        "--exec",
        DAEMON,
        "--",
        "-a",
        "127.0.0.1",
        "-p",
        "4222",
        "-js",
        "-sd",
        "/var/lib/nats-server",
        "-l",
        "/var/log/nats-server.log",
    ]);
}

fn wait_port(open: bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(NATS_ADDR).is_ok() != open {
        assert!(Instant::now() < until, "port 4222 never became open={open}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts nats-server again if a test ends (or panics) while it is stopped.
struct StartOnDrop;

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        start_nats();
        wait_port(true);
    }
}

/// Stop nats-server (waiting for it to exit), keep it down `outage`, start it again.
fn restart_nats(outage: Duration) {
    let _restart = StartOnDrop;
    daemon(&["--stop", "--oknodo", "--retry", "30", "--exec", DAEMON]);
    wait_port(false);
    std::thread::sleep(outage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_survives_server_restart_without_loss_or_duplicates() {
    let _server = SERVER.write().await;
    let config = NatsConfig {
        ack_timeout_ms: 2_000,
        ..sink_config("restart")
    };
    let sink = Arc::new(NatsSink::connect(config.clone()).await.unwrap());
    let restarted = Arc::new(AtomicBool::new(false));
    let batches_done = Arc::new(AtomicUsize::new(0));

    // Mimics the outbox: on error wait and retry the same batch; keep publishing until 20
    // batches went through after the restart.
    let publisher = tokio::spawn({
        let (sink, restarted, batches_done) =
            (sink.clone(), restarted.clone(), batches_done.clone());
        async move {
            let mut sent: Vec<OutgoingEvent> = Vec::new();
            let mut errors: Vec<String> = Vec::new();
            let mut after_restart = 0;
            let mut seq = 0;
            while after_restart < 20 {
                let batch = make_events(10, 5, seq);
                seq += 5;
                loop {
                    match sink.publish(&batch).await {
                        Ok(()) => break,
                        Err(err) => {
                            errors.push(err.to_string());
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                sent.extend(batch);
                batches_done.fetch_add(1, Ordering::Relaxed);
                if restarted.load(Ordering::Relaxed) {
                    after_restart += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (sent, errors)
        }
    });

    wait_for(
        "20 batches before the restart",
        Duration::from_secs(60),
        || batches_done.load(Ordering::Relaxed) >= 20,
    )
    .await;
    tokio::task::spawn_blocking(|| restart_nats(Duration::from_secs(2)))
        .await
        .unwrap();
    restarted.store(true, Ordering::Relaxed);

    let (sent, errors) = tokio::time::timeout(Duration::from_secs(180), publisher)
        .await
        .expect("publisher finishes after the restart")
        .unwrap();
    assert!(
        !errors.is_empty(),
        "publishes during the outage must fail, not hang or succeed"
    );
    eprintln!(
        "{} events in {} batches; {} failed attempts, e.g. {:?}",
        sent.len(),
        sent.len() / 50,
        errors.len(),
        errors.first()
    );

    let js = js_client().await;
    let stored = read_stream(&js, &config.stream, &config.subject_prefix).await;
    let mut seen = HashSet::new();
    for (_, msg_id, json_id) in &stored {
        assert_eq!(msg_id, json_id);
        assert!(seen.insert(json_id.clone()), "stored twice: {json_id}");
    }
    let sent_ids: HashSet<String> = sent.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(seen, sent_ids, "every event id stored exactly once");
    assert_eq!(stored.len(), sent.len());
    js.delete_stream(&config.stream).await.unwrap();
}

#[tokio::test]
async fn unreachable_server_fails_publish_quickly_without_panic() {
    let config = NatsConfig {
        url: "nats://127.0.0.1:1".into(),
        ..sink_config("down")
    };
    let sink = NatsSink::connect(config)
        .await
        .expect("a down server is not fatal");
    let events = make_events(1, 3, 0);
    for _ in 0..2 {
        let result = tokio::time::timeout(Duration::from_secs(30), sink.publish(&events))
            .await
            .expect("publish returns instead of hanging");
        assert!(
            matches!(result, Err(SinkError::Unavailable { sink: "nats", .. })),
            "{result:?}"
        );
    }

    // The command consumer waits for the server and still stops on shutdown.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(
        NatsCommandsConfig {
            url: "nats://127.0.0.1:1".into(),
            ..NatsCommandsConfig::default()
        },
        Arc::new(Recorder::default()),
        async move {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("run stops on shutdown")
        .unwrap()
        .unwrap();
}

/// Records every payload handled; rejects those starting with `bad`.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<String>>,
}

impl Recorder {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl CommandHandler for Recorder {
    fn handle<'a>(&'a self, payload: &'a [u8]) -> CommandFuture<'a> {
        Box::pin(async move {
            let text = String::from_utf8_lossy(payload).into_owned();
            // A little work, so that one consumer cannot drain the queue alone.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let outcome = if text.starts_with("bad") {
                CommandOutcome::Rejected {
                    reason: "test rejects it".into(),
                }
            } else {
                CommandOutcome::Accepted
            };
            self.seen.lock().unwrap().push(text);
            outcome
        })
    }
}

fn commands_config(tag: &str, ack_wait_s: u64) -> NatsCommandsConfig {
    NatsCommandsConfig {
        url: URL.into(),
        stream: unique(&format!("TC_{tag}_")),
        subject: format!("{}.commands", unique("t")),
        durable: unique("d"),
        ack_wait_s,
        ..NatsCommandsConfig::default()
    }
}

/// A `run` task and the sender that stops it.
fn spawn_run(
    config: &NatsCommandsConfig,
    handler: Arc<Recorder>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), asr_gateway::control::nats::CommandsError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(config.clone(), handler, async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

async fn consumer_info(
    js: &jetstream::Context,
    config: &NatsCommandsConfig,
) -> jetstream::consumer::Info {
    let stream = js.get_stream(&config.stream).await.unwrap();
    stream.consumer_info(&config.durable).await.unwrap()
}

async fn wait_consumer<F: Fn(&jetstream::consumer::Info) -> bool>(
    js: &jetstream::Context,
    config: &NatsCommandsConfig,
    what: &str,
    done: F,
) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(stream) = js.get_stream(&config.stream).await {
            if let Ok(info) = stream.consumer_info(&config.durable).await {
                if done(&info) {
                    return;
                }
            }
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_shared_by_competing_consumers() {
    let _server = SERVER.read().await;
    let config = commands_config("share", 30);
    let js = js_client().await;
    let (a, b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let (stop_a, task_a) = spawn_run(&config, a.clone());
    let (stop_b, task_b) = spawn_run(&config, b.clone());
    // Both processes have a pull request waiting before any command is sent.
    wait_consumer(&js, &config, "two waiting pulls", |i| i.num_waiting >= 2).await;

    let mut acks = Vec::new();
    for n in 0..200 {
        acks.push(
            js.publish(config.subject.clone(), format!("cmd-{n}").into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    wait_for("200 commands handled", Duration::from_secs(60), || {
        a.seen().len() + b.seen().len() >= 200
    })
    .await;
    wait_consumer(&js, &config, "no ack pending", |i| i.num_ack_pending == 0).await;

    let (seen_a, seen_b) = (a.seen(), b.seen());
    assert!(
        !seen_a.is_empty() && !seen_b.is_empty(),
        "both consumers get work: {} / {}",
        seen_a.len(),
        seen_b.len()
    );
    assert_eq!(seen_a.len() + seen_b.len(), 200, "no command handled twice");
    let all: HashSet<String> = seen_a.into_iter().chain(seen_b).collect();
    let expected: HashSet<String> = (0..200).map(|n| format!("cmd-{n}")).collect();
    assert_eq!(all, expected);
    eprintln!("split: {} / {}", a.seen().len(), b.seen().len());

    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    task_a.await.unwrap().unwrap();
    task_b.await.unwrap().unwrap();
    js.delete_stream(&config.stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_command_is_redelivered_to_another_consumer() {
    let _server = SERVER.read().await;
    let config = commands_config("redeliver", 2);
    let js = js_client().await;

    // The consumer that dies: its own connection, fetches the command and never acks it.
    {
        let dying = js_client().await;
        let consumer = ensure_consumer(&dying, &config).await.unwrap();
        dying
            .publish(config.subject.clone(), "cmd-orphan".into())
            .await
            .unwrap()
            .await
            .unwrap();
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .unwrap();
        let m = batch.next().await.expect("one message").unwrap();
        assert_eq!(&m.payload[..], b"cmd-orphan");
        // Dropped here with its client: no ack.
    }

    let survivor = Arc::new(Recorder::default());
    let (stop, task) = spawn_run(&config, survivor.clone());
    wait_for(
        "the orphaned command redelivered",
        Duration::from_secs(60),
        || survivor.seen().contains(&"cmd-orphan".to_string()),
    )
    .await;
    wait_consumer(&js, &config, "no ack pending", |i| i.num_ack_pending == 0).await;
    assert_eq!(survivor.seen(), vec!["cmd-orphan".to_string()]);
    let info = consumer_info(&js, &config).await;
    assert!(info.delivered.stream_sequence >= 1);

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    js.delete_stream(&config.stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_command_is_not_redelivered() {
    let _server = SERVER.read().await;
    let config = commands_config("reject", 2);
    let js = js_client().await;
    let handler = Arc::new(Recorder::default());
    let (stop, task) = spawn_run(&config, handler.clone());
    wait_consumer(&js, &config, "a waiting pull", |i| i.num_waiting >= 1).await;

    for payload in ["bad-1", "good-1"] {
        js.publish(config.subject.clone(), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    wait_for("both handled", Duration::from_secs(60), || {
        handler.seen().len() >= 2
    })
    .await;
    // Three ack_wait periods: a redelivery, if any, would have come by now.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        handler.seen(),
        vec!["bad-1".to_string(), "good-1".to_string()]
    );
    let info = consumer_info(&js, &config).await;
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_redelivered, 0);

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    js.delete_stream(&config.stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_keep_flowing_across_server_restart() {
    let _server = SERVER.write().await;
    let config = commands_config("restart", 5);
    let js = js_client().await;
    let handler = Arc::new(Recorder::default());
    let (stop, task) = spawn_run(&config, handler.clone());
    wait_consumer(&js, &config, "a waiting pull", |i| i.num_waiting >= 1).await;

    // Retries until the server (and this test's client) is back.
    let send = |payload: String| {
        let (js, subject) = (js.clone(), config.subject.clone());
        async move {
            let until = Instant::now() + Duration::from_secs(120);
            loop {
                if let Ok(ack) = js.publish(subject.clone(), payload.clone().into()).await {
                    if ack.await.is_ok() {
                        return;
                    }
                }
                assert!(Instant::now() < until, "could not publish {payload}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    for n in 0..10 {
        send(format!("before-{n}")).await;
    }
    wait_for(
        "10 commands before the restart",
        Duration::from_secs(60),
        || handler.seen().len() >= 10,
    )
    .await;

    tokio::task::spawn_blocking(|| restart_nats(Duration::from_secs(2)))
        .await
        .unwrap();
    for n in 0..10 {
        send(format!("after-{n}")).await;
    }
    wait_for(
        "10 commands after the restart",
        Duration::from_secs(120),
        || {
            handler
                .seen()
                .iter()
                .filter(|s| s.starts_with("after"))
                .count()
                >= 10
        },
    )
    .await;
    let seen: HashSet<String> = handler.seen().into_iter().collect();
    let expected: HashSet<String> = (0..10)
        .flat_map(|n| [format!("before-{n}"), format!("after-{n}")])
        .collect();
    assert_eq!(seen, expected);
    eprintln!(
        "handled {} (20 distinct) across the restart",
        handler.seen().len()
    );

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    js.delete_stream(&config.stream).await.unwrap();
}
