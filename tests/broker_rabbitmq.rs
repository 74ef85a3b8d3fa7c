//! RabbitMQ sink and command consumer against the real broker (127.0.0.1:5672, or `AMQP_URL`).
//!
//! Each test uses its own exchange and queue names. The broker-restart test takes the write
//! half of `BROKER` so no other test of this file runs while the broker is down.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asr_gateway::control::commands::{CommandFuture, CommandHandler, CommandOutcome};
use asr_gateway::control::rabbitmq::{self as commands, RabbitCommandsConfig};
use asr_gateway::events::model::{Event, EventBody, SessionEvent};
use asr_gateway::events::outgoing::OutgoingEvent;
use asr_gateway::events::rabbitmq::{RabbitConfig, RabbitSink};
use asr_gateway::events::sink::{Sink, SinkError};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{oneshot, RwLock};

/// Read: a test that needs the broker up. Write: the test that restarts it.
static BROKER: RwLock<()> = RwLock::const_new(());

/// Gateway logs, shown for failing tests (or with `--nocapture`).
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("asr_gateway=debug")
        .try_init();
}

fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn unique(what: &str) -> String {
    format!("test.{what}.{}", uuid::Uuid::new_v4().simple())
}

async fn raw_connection() -> Connection {
    Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("test connection to RabbitMQ (is it running?)")
}

/// Event number `seq` of `call`; `offset_ms` carries `seq` so order can be checked.
fn event(call: &str, seq: u64) -> OutgoingEvent {
    let body = if seq.is_multiple_of(2) {
        EventBody::SpeechStarted {
            utterance: seq as u32,
            start_ms: seq * 20,
        }
    } else {
        EventBody::TranscriptPartial {
            utterance: seq as u32,
            text: "hello there".into(),
            confidence: 0.9,
            start_ms: seq * 20,
            end_ms: seq * 20 + 400,
        }
    };
    let event = Event::stamp(
        "/asr-gateway/test".into(),
        format!("session-{call}").into(),
        call.into(),
        SessionEvent {
            offset_ms: seq,
            body,
        },
        chrono::Utc::now(),
    );
    OutgoingEvent::from(&event)
}

/// `calls` × `per_call` events, interleaved across calls.
fn events(calls: usize, per_call: u64) -> Vec<OutgoingEvent> {
    let names: Vec<String> = (0..calls).map(|c| format!("call-{c:02}")).collect();
    (0..per_call)
        .flat_map(|seq| names.iter().map(move |c| event(c, seq)))
        .collect()
}

async fn declare_topic(channel: &Channel, exchange: &str) {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
}

/// Consumers and ready messages of `queue`, or None if it does not exist.
async fn queue_state(conn: &Connection, queue: &str) -> Option<(u32, u32)> {
    let channel = conn.create_channel().await.ok()?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .ok()?;
    let _ = channel.close(200, "ok".into()).await;
    Some((q.consumer_count(), q.message_count()))
}

async fn wait_for_consumers(conn: &Connection, queue: &str, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue_state(conn, queue).await.map(|s| s.0) != Some(n) {
        assert!(
            Instant::now() < deadline,
            "{queue}: never had {n} consumers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn delete(conn: &Connection, queues: &[&str], exchanges: &[&str]) {
    let Ok(channel) = conn.create_channel().await else {
        return;
    };
    for q in queues {
        let _ = channel
            .queue_delete((*q).into(), QueueDeleteOptions::default())
            .await;
    }
    for x in exchanges {
        let _ = channel
            .exchange_delete((*x).into(), ExchangeDeleteOptions::default())
            .await;
    }
}

/// One received event, as the test consumer saw it.
struct Received {
    id: String,
    call: String,
    seq: u64,
    routing_key: String,
    props: BasicProperties,
}

fn parse(data: &[u8], routing_key: &str, props: BasicProperties) -> Received {
    let v: serde_json::Value = serde_json::from_slice(data).expect("body is JSON");
    Received {
        id: v["id"].as_str().unwrap().to_owned(),
        call: v["subject"].as_str().unwrap().to_owned(),
        seq: v["data"]["offset_ms"].as_u64().unwrap(),
        routing_key: routing_key.to_owned(),
        props,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_delivers_every_event_once_in_order_per_call() {
    logs();
    let _broker = BROKER.read().await;
    let exchange = unique("events");
    let queue = unique("events.q");
    let conn = raw_connection().await;
    let channel = conn.create_channel().await.unwrap();
    declare_topic(&channel, &exchange).await;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::exclusive().auto_delete(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    bind(&channel, &queue, &exchange, "asr.#").await;
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "test".into(),
            no_ack,
            FieldTable::default(),
        )
        .await
        .unwrap();

    let sink = RabbitSink::connect(RabbitConfig {
        url: url().into(),
        exchange: exchange.clone(),
        ..RabbitConfig::default()
    })
    .unwrap();
    let sent = events(20, 100);
    assert_eq!(sent.len(), 2000);
    for batch in sent.chunks(137) {
        sink.publish(batch).await.expect("batch confirmed");
    }

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < sent.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = tokio::time::timeout(left, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {} arrived", got.len(), sent.len()))
            .unwrap()
            .unwrap();
        got.push(parse(&d.data, d.routing_key.as_str(), d.properties));
    }
    // Grace period for unexpected extra copies.
    let extra = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
    assert!(extra.is_err(), "a message arrived beyond the events sent");

    let by_id: HashMap<String, &OutgoingEvent> =
        sent.iter().map(|e| (e.id.to_string(), e)).collect();
    let mut seen = HashSet::new();
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    for r in &got {
        assert!(seen.insert(r.id.clone()), "event {} delivered twice", r.id);
        let e = by_id.get(&r.id).expect("only events we sent");
        assert_eq!(r.props.message_id().as_ref().unwrap().as_str(), r.id);
        assert_eq!(r.props.kind().as_ref().unwrap().as_str(), e.kind);
        assert_eq!(r.props.delivery_mode(), &Some(2));
        assert_eq!(
            r.props.content_type().as_ref().unwrap().as_str(),
            "application/cloudevents+json"
        );
        assert_eq!(r.routing_key, format!("asr.{}.{}", e.call_id, e.kind));
        let next = last_seq.get(&r.call).map_or(0, |s| s + 1);
        assert_eq!(r.seq, next, "call {} out of order", r.call);
        last_seq.insert(r.call.clone(), r.seq);
    }
    assert_eq!(last_seq.len(), 20);
    assert!(last_seq.values().all(|&s| s == 99));

    sink.close().await;
    delete(&conn, &[&queue], &[&exchange]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_batch_is_rejected_and_link_stays_usable() {
    logs();
    let _broker = BROKER.read().await;
    let exchange = unique("unroutable");
    let queue = unique("unroutable.q");
    let sink = RabbitSink::connect(RabbitConfig {
        url: url().into(),
        exchange: exchange.clone(),
        mandatory: true,
        ..RabbitConfig::default()
    })
    .unwrap();
    let batch = events(2, 3);
    match sink.publish(&batch).await {
        Err(SinkError::Rejected { detail, .. }) => assert!(detail.contains("unroutable")),
        other => panic!("expected Rejected, got {other:?}"),
    }
    // Once a queue is bound the same batch goes through.
    let conn = raw_connection().await;
    let channel = conn.create_channel().await.unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::exclusive().auto_delete(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    bind(&channel, &queue, &exchange, "asr.#").await;
    sink.publish(&batch).await.expect("routable now");
    sink.close().await;
    delete(&conn, &[&queue], &[&exchange]).await;
}

/// Starts the broker again if a test stopped it and then failed.
struct StartAppOnDrop {
    stopped: bool,
}

impl Drop for StartAppOnDrop {
    fn drop(&mut self) {
        if self.stopped {
            let _ = std::process::Command::new("rabbitmqctl")
                .arg("start_app")
                .status();
        }
    }
}

async fn rabbitmqctl(arg: &'static str) {
    let status = tokio::process::Command::new("rabbitmqctl")
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {arg} failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_and_consumer_survive_a_broker_restart() {
    logs();
    let _broker = BROKER.write().await;
    let exchange = unique("restart");
    let queue = unique("restart.q");
    let (cmd_queue, dlx) = (unique("restart.cmds"), unique("restart.cmds.dlx"));
    let seen = Seen::default();
    let (stop, consumer_task) = spawn_consumer(&commands_config(&cmd_queue, &dlx), "c", &seen);
    {
        let conn = raw_connection().await;
        let channel = conn.create_channel().await.unwrap();
        declare_topic(&channel, &exchange).await;
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        bind(&channel, &queue, &exchange, "asr.#").await;
        wait_for_consumers(&conn, &cmd_queue, 1).await;
        let _ = conn.close(200, "ok".into()).await;
    }

    let sink = Arc::new(
        RabbitSink::connect(RabbitConfig {
            url: url().into(),
            exchange: exchange.clone(),
            connect_timeout_ms: 2_000,
            confirm_timeout_ms: 5_000,
            ..RabbitConfig::default()
        })
        .unwrap(),
    );
    let confirmed = Arc::new(AtomicUsize::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    // Mimics the outbox: retry the same batch until it is confirmed; keep publishing new
    // batches until 20 batches after the restart, so publishing spans the outage.
    let publisher = {
        let (sink, confirmed, restarted) = (sink.clone(), confirmed.clone(), restarted.clone());
        tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut failures = 0usize;
            let mut after_restart = 0;
            let deadline = Instant::now() + Duration::from_secs(180);
            let mut seq = 0;
            while after_restart < 20 {
                let batch: Vec<OutgoingEvent> = (0..10)
                    .flat_map(|c| (0..5).map(move |k| (c, k)))
                    .map(|(c, k)| event(&format!("call-{c}"), seq * 5 + k))
                    .collect();
                seq += 1;
                while let Err(e) = sink.publish(&batch).await {
                    assert!(
                        !matches!(e, SinkError::Rejected { .. }),
                        "batch rejected: {e}"
                    );
                    failures += 1;
                    assert!(Instant::now() < deadline, "never recovered: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                confirmed.fetch_add(batch.len(), Ordering::SeqCst);
                sent.extend(batch);
                if restarted.load(Ordering::SeqCst) {
                    after_restart += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (sent, failures)
        })
    };

    let deadline = Instant::now() + Duration::from_secs(60);
    while confirmed.load(Ordering::SeqCst) < 500 {
        assert!(Instant::now() < deadline, "publishing never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut guard = StartAppOnDrop { stopped: true };
    rabbitmqctl("stop_app").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbitmqctl("start_app").await;
    rabbitmqctl("await_startup").await;
    guard.stopped = false;
    restarted.store(true, Ordering::SeqCst);

    let (sent, failures) = publisher.await.expect("publisher task");
    assert!(failures > 0, "the outage was not seen by the publisher");

    // The command consumer reconnected on its own and consumes again.
    let conn = raw_connection().await;
    wait_for_consumers(&conn, &cmd_queue, 1).await;
    send_commands(&conn, &cmd_queue, &["after-restart".to_owned()]).await;
    wait_seen(&seen, 1).await;
    assert_eq!(seen.lock().unwrap()[0].1, "after-restart");
    stop_consumer(stop, consumer_task).await;

    let channel = conn.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "drain".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let wanted: HashSet<String> = sent.iter().map(|e| e.id.to_string()).collect();
    let mut copies: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while copies.len() < wanted.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = tokio::time::timeout(left, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {} event ids arrived", copies.len(), wanted.len()))
            .unwrap()
            .unwrap();
        let r = parse(&d.data, d.routing_key.as_str(), d.properties);
        assert!(wanted.contains(&r.id), "unknown event {}", r.id);
        assert_eq!(r.props.message_id().as_ref().unwrap().as_str(), r.id);
        *copies.entry(r.id).or_default() += 1;
    }
    let duplicates: usize = copies.values().map(|n| n - 1).sum();
    eprintln!(
        "restart: {} events, {} failed publish attempts, {duplicates} duplicate deliveries (same id)",
        sent.len(),
        failures
    );
    sink.close().await;
    delete(
        &conn,
        &[&queue, &cmd_queue, &format!("{cmd_queue}.dead")],
        &[&exchange, &dlx],
    )
    .await;
}

/// Records every payload it is handed; rejects payloads starting with `bad`.
struct Recorder {
    name: &'static str,
    seen: Arc<Mutex<Vec<(&'static str, String)>>>,
}

impl CommandHandler for Recorder {
    fn handle<'a>(&'a self, payload: &'a [u8]) -> CommandFuture<'a> {
        Box::pin(async move {
            let text = String::from_utf8_lossy(payload).into_owned();
            // A little work per command, so deliveries spread over both consumers.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let bad = text.starts_with("bad");
            self.seen.lock().unwrap().push((self.name, text));
            if bad {
                CommandOutcome::Rejected {
                    reason: "test rejects bad-*".into(),
                }
            } else {
                CommandOutcome::Accepted
            }
        })
    }
}

type Seen = Arc<Mutex<Vec<(&'static str, String)>>>;

/// A `run` task with its own connection; send on the returned sender to stop it.
fn spawn_consumer(
    config: &RabbitCommandsConfig,
    name: &'static str,
    seen: &Seen,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), commands::RabbitCommandsError>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let handler = Arc::new(Recorder {
        name,
        seen: seen.clone(),
    });
    let task = tokio::spawn(commands::run(config.clone(), handler, async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

async fn stop_consumer(
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), commands::RabbitCommandsError>>,
) {
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("consumer stops on shutdown")
        .expect("consumer task")
        .expect("consumer ends Ok");
}

async fn send_commands(conn: &Connection, queue: &str, payloads: &[String]) {
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for p in payloads {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                p.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        drop(confirm);
    }
    channel.wait_for_confirms().await.unwrap();
}

async fn wait_seen(seen: &Seen, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "handled {} of {n}",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Grace period for unexpected redeliveries.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn commands_config(queue: &str, dlx: &str) -> RabbitCommandsConfig {
    RabbitCommandsConfig {
        url: url().into(),
        queue: queue.into(),
        dead_letter_exchange: dlx.into(),
        prefetch: 4,
        ..RabbitCommandsConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_share_the_commands() {
    logs();
    let _broker = BROKER.read().await;
    let (queue, dlx) = (unique("cmds"), unique("cmds.dlx"));
    let config = commands_config(&queue, &dlx);
    let seen = Seen::default();
    let (stop_a, a) = spawn_consumer(&config, "a", &seen);
    let (stop_b, b) = spawn_consumer(&config, "b", &seen);
    let conn = raw_connection().await;
    wait_for_consumers(&conn, &queue, 2).await;

    let payloads: Vec<String> = (0..200).map(|i| format!("{{\"n\":{i}}}")).collect();
    send_commands(&conn, &queue, &payloads).await;
    wait_seen(&seen, payloads.len()).await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 200, "each command handled exactly once");
    let by_a = seen.iter().filter(|(who, _)| *who == "a").count();
    assert!(by_a > 0 && by_a < 200, "a handled {by_a} of 200");
    let handled: HashSet<&str> = seen.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(handled, payloads.iter().map(String::as_str).collect());

    stop_consumer(stop_a, a).await;
    stop_consumer(stop_b, b).await;
    assert_eq!(queue_state(&conn, &queue).await, Some((0, 0)));
    delete(&conn, &[&queue, &format!("{queue}.dead")], &[&dlx]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_of_a_consumer_that_dies_unacked_goes_to_another() {
    logs();
    let _broker = BROKER.read().await;
    let (queue, dlx) = (unique("cmds.redeliver"), unique("cmds.redeliver.dlx"));
    let config = commands_config(&queue, &dlx);
    let conn = raw_connection().await;

    // A raw consumer takes the command and never acks it.
    let doomed = raw_connection().await;
    let channel = doomed.create_channel().await.unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            commands::queue_arguments(&dlx),
        )
        .await
        .unwrap();
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut doomed_consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "doomed".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    send_commands(&conn, &queue, &["cmd-x".to_owned()]).await;
    let taken = tokio::time::timeout(Duration::from_secs(30), doomed_consumer.next())
        .await
        .expect("doomed consumer gets the command")
        .unwrap()
        .unwrap();
    assert_eq!(taken.data, b"cmd-x");
    assert!(!taken.redelivered);

    let seen = Seen::default();
    let (stop, task) = spawn_consumer(&config, "survivor", &seen);
    wait_for_consumers(&conn, &queue, 2).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "command is still held unacked"
    );
    // The doomed consumer's connection goes away without an ack.
    drop(doomed_consumer);
    let _ = doomed.close(200, "dies".into()).await;

    wait_seen(&seen, 1).await;
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![("survivor", "cmd-x".to_owned())]
    );
    stop_consumer(stop, task).await;
    assert_eq!(queue_state(&conn, &queue).await, Some((0, 0)));
    delete(&conn, &[&queue, &format!("{queue}.dead")], &[&dlx]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_command_is_dead_lettered_not_redelivered() {
    logs();
    let _broker = BROKER.read().await;
    let (queue, dlx) = (unique("cmds.reject"), unique("cmds.reject.dlx"));
    let dead = format!("{queue}.dead");
    let config = commands_config(&queue, &dlx);
    let seen = Seen::default();
    let (stop, task) = spawn_consumer(&config, "c", &seen);
    let conn = raw_connection().await;
    wait_for_consumers(&conn, &queue, 1).await;

    send_commands(&conn, &queue, &["bad-1".to_owned(), "good-1".to_owned()]).await;
    wait_seen(&seen, 2).await;

    let channel = conn.create_channel().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead_letter = loop {
        if let Some(m) = channel
            .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            break m;
        }
        assert!(Instant::now() < deadline, "nothing reached {dead}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead_letter.delivery.data, b"bad-1");
    let headers = dead_letter.delivery.properties.headers().clone().unwrap();
    assert!(
        matches!(
            headers.inner().get("x-death"),
            Some(AMQPValue::FieldArray(_))
        ),
        "dead letter carries x-death"
    );
    let mut handled: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p)| p.clone())
        .collect();
    handled.sort();
    assert_eq!(
        handled,
        ["bad-1", "good-1"],
        "the rejected command came back"
    );

    stop_consumer(stop, task).await;
    assert_eq!(queue_state(&conn, &queue).await, Some((0, 0)));
    assert_eq!(queue_state(&conn, &dead).await, Some((0, 0)));
    delete(&conn, &[&queue, &dead], &[&dlx]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_is_unavailable_not_a_panic() {
    logs();
    // Port 1 on loopback: connection refused. No broker state is touched.
    let bad = "amqp://guest:guest@127.0.0.1:1/%2f".to_owned();
    let sink = RabbitSink::connect(RabbitConfig {
        url: bad.clone().into(),
        connect_timeout_ms: 2_000,
        ..RabbitConfig::default()
    })
    .expect("connect does not need the broker");
    let batch = events(1, 3);
    for _ in 0..2 {
        let result = tokio::time::timeout(Duration::from_secs(30), sink.publish(&batch))
            .await
            .expect("publish returns");
        assert!(
            matches!(result, Err(SinkError::Unavailable { .. })),
            "{result:?}"
        );
    }
    assert!(matches!(
        sink.ensure_connected().await,
        Err(SinkError::Unavailable { .. })
    ));

    let seen = Seen::default();
    let config = RabbitCommandsConfig {
        url: bad.into(),
        ..RabbitCommandsConfig::default()
    };
    let (stop, task) = spawn_consumer(&config, "nobody", &seen);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_consumer(stop, task).await;
    assert!(seen.lock().unwrap().is_empty());
}
